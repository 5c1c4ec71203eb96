/**
 * serving-triton: contributes the `triton` runtime to the serving plugin's `serving.runtimes`
 * extension point. A revision on it gets a Triton model repository in its folder (a Python-backend
 * model that runs transformers' generate behind BYTES text tensors; see runtime/model.py and
 * src/runtime.ts) and one tritonserver per replica speaking KServe v2 on the replica's port:
 * locally the tritonserver that nvidia-pytriton carries (runtime/launch.py prepares it), with the
 * docker executor the official Triton image's. The `/v1` alias reaches it through the OpenAI adapter.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { definePlugin, type PluginManifest } from '@aiplat/plugin-sdk';
import { modelPathIn, servingExtensionPoints, type EngineStatus, type RuntimeContext, type RuntimeLaunch, type ServingRuntime } from '@aiplat-plugins/serving/api';
import {
  CONTAINER_HTTP_PORT,
  CONTAINER_REPOSITORY,
  PLUGIN_DIR,
  REPOSITORY_DIR,
  RUNTIME_DIR,
  openaiAdapter,
  optionsSchema,
  problemOf,
  repositoryFiles,
} from './runtime.js';

export * from './runtime.js';

export interface TritonSettings {
  /** The venv's python (empty: setup.sh's venv). */
  python: string;
  /** A tritonserver binary (empty: the one nvidia-pytriton carries in that venv). */
  tritonserver: string;
  /** The docker executor's image. */
  image: string;
}

export const DEFAULT_IMAGE = 'nvcr.io/nvidia/tritonserver:25.11-py3';

/** The venv setup.sh makes: `AIPLAT_SERVE_TRITON_VENV`, else node_modules/.cache/aiplat-serve-triton-venv under the repository root. */
export function defaultVenv(): string {
  return process.env.AIPLAT_SERVE_TRITON_VENV || path.resolve(PLUGIN_DIR, '..', '..', 'node_modules', '.cache', 'aiplat-serve-triton-venv');
}

export function pythonOf(settings: Partial<TritonSettings>): string {
  return settings.python || path.join(defaultVenv(), 'bin', 'python');
}

function run(file: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (error && code === null ? error.message : '') });
    });
  });
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? '';
}

/** What `launch.py --check` found: tritonserver starts and answers, and the python side imports. */
export interface LocalEngineInfo {
  python: string;
  tritonserver: string;
  version: string;
  pytriton: string;
  torch: string;
  transformers: string;
  backends: string[];
}

const SUCCESS_TTL_MS = 10 * 60_000;
const FAILURE_TTL_MS = 15_000;
const engineCache = new Map<string, { at: number; ttl: number; status: Promise<EngineStatus & { info?: LocalEngineInfo }> }>();

function cached(key: string, probe: () => Promise<EngineStatus & { info?: LocalEngineInfo }>) {
  const hit = engineCache.get(key);
  if (hit && Date.now() - hit.at < hit.ttl) return hit.status;
  const entry = { at: Date.now(), ttl: SUCCESS_TTL_MS, status: probe() };
  entry.status.then((s) => {
    if (!s.available) entry.ttl = FAILURE_TTL_MS;
  });
  engineCache.set(key, entry);
  return entry.status;
}

/** Forget what the engine checks found (tests; after setup.sh ran). */
export function clearEngineCache(): void {
  engineCache.clear();
}

/** Local executor: the venv's python and the tritonserver exist, and the server starts (`launch.py --check`). */
export function localEngine(settings: Partial<TritonSettings>): Promise<EngineStatus & { info?: LocalEngineInfo }> {
  const python = pythonOf(settings);
  return cached(`local\0${python}\0${settings.tritonserver ?? ''}`, async () => {
    const setup = 'run plugins/serving-triton/setup.sh';
    try {
      fs.accessSync(python, fs.constants.X_OK);
    } catch {
      return {
        available: false,
        version: null,
        reason: settings.python ? `the configured python ${python} does not exist or is not executable` : `the Triton venv is missing: no ${python} (${setup})`,
      };
    }
    if (settings.tritonserver) {
      try {
        fs.accessSync(settings.tritonserver, fs.constants.X_OK);
      } catch {
        return { available: false, version: null, reason: `the configured tritonserver ${settings.tritonserver} does not exist or is not executable` };
      }
    }
    const args = [path.join(RUNTIME_DIR, 'launch.py'), '--check', ...(settings.tritonserver ? ['--tritonserver', settings.tritonserver] : [])];
    const result = await run(python, args, 90_000);
    if (result.code !== 0) {
      const why = lastLine(result.stderr) || `exit status ${result.code}`;
      return { available: false, version: null, reason: `tritonserver does not run with ${python}: ${why} (${setup})` };
    }
    try {
      const info = JSON.parse(lastLine(result.stdout)) as LocalEngineInfo;
      if (!info.backends.includes('python')) {
        return { available: false, version: info.version, reason: `${info.tritonserver} has no python backend` };
      }
      return { available: true, version: `tritonserver ${info.version} (nvidia-pytriton ${info.pytriton}, torch ${info.torch}, transformers ${info.transformers})`, reason: null, info };
    } catch {
      return { available: false, version: null, reason: `launch.py --check answered no JSON: ${lastLine(result.stdout) || lastLine(result.stderr)}` };
    }
  });
}

/** Docker executor: the image must be on the engine (checked with the docker CLI when there is one). */
export function dockerEngine(settings: Partial<TritonSettings>): Promise<EngineStatus> {
  const image = settings.image || DEFAULT_IMAGE;
  const needs = `it needs tritonserver with the python backend plus torch and transformers (see plugins/serving-triton/runtime/Dockerfile)`;
  return cached(`docker\0${image}`, async () => {
    const result = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', image], 10_000);
    if (result.code === 0) return { available: true, version: image, reason: null };
    if (result.code === null && /ENOENT/.test(result.stderr)) {
      return { available: false, version: null, reason: `the docker CLI is not installed here, so the image ${image} cannot be checked; ${needs}` };
    }
    if (/no such image/i.test(result.stderr)) {
      return { available: false, version: null, reason: `the image ${image} is not present: pull or build it first (docker pull ${image}); ${needs}` };
    }
    return { available: false, version: null, reason: `cannot check the image ${image}: ${lastLine(result.stderr) || `docker exit status ${result.code}`}` };
  });
}

/** How one replica starts. */
export function launchOf(context: RuntimeContext, settings: Partial<TritonSettings>): RuntimeLaunch {
  const files = repositoryFiles(context, modelPathIn(context));
  const readiness = { path: '/v2/health/ready', initialDelaySeconds: 2, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 };
  if (context.executor === 'local') {
    const command = [pythonOf(settings), path.join(RUNTIME_DIR, 'launch.py')];
    if (settings.tritonserver) command.push('--tritonserver', settings.tritonserver);
    command.push('--model-repository', path.join(context.revisionDir, REPOSITORY_DIR));
    return {
      command,
      env: { PYTHONUNBUFFERED: '1', TOKENIZERS_PARALLELISM: 'false' },
      workingDir: context.revisionDir,
      readiness,
      files,
    };
  }
  return {
    image: settings.image || DEFAULT_IMAGE,
    command: [
      'tritonserver',
      `--model-repository=${CONTAINER_REPOSITORY}`,
      `--http-port=${CONTAINER_HTTP_PORT}`,
      '--allow-grpc=false',
      '--allow-sagemaker=false',
      '--allow-vertex-ai=false',
      '--allow-metrics=true',
      '--metrics-port=8002',
      '--strict-readiness=true',
      '--exit-on-error=true',
      '--exit-timeout-secs=10',
    ],
    env: { PYTHONUNBUFFERED: '1', TOKENIZERS_PARALLELISM: 'false' },
    mounts: [{ source: path.join(context.revisionDir, REPOSITORY_DIR), target: CONTAINER_REPOSITORY, readOnly: true }],
    containerPort: CONTAINER_HTTP_PORT,
    readiness,
    files,
  };
}

/** The runtime, for the given settings (read at call time: the plugin's config can change). */
export function tritonRuntime(settings: () => Partial<TritonSettings>): ServingRuntime {
  return {
    id: 'triton',
    title: { en: 'NVIDIA Triton Inference Server', 'zh-CN': 'NVIDIA Triton 推理服务器' },
    description: {
      en: 'Triton with a generated Python-backend model (transformers generate): instance groups on CPU or GPU, dynamic batching, KServe v2 API; OpenAI chat/completions through the /v1 alias.',
      'zh-CN': 'Triton 推理服务器，自动生成 Python 后端模型（transformers 生成）：CPU 或 GPU 实例组、动态批处理、KServe v2 接口；通过 /v1 别名支持 OpenAI chat/completions。',
    },
    protocol: 'kserve-v2',
    gpu: 'optional',
    executors: ['local', 'docker'],
    optionsSchema,
    engine: (executor) => {
      if (executor === 'local') return localEngine(settings()).then(({ available, version, reason }) => ({ available, version, reason }));
      if (executor === 'docker') return dockerEngine(settings());
      return Promise.resolve({ available: false, version: null, reason: `the Triton runtime runs on the local and docker executors, not on ${executor}` });
    },
    check: (context) => problemOf(context),
    launch: (context) => launchOf(context, settings()),
    openai: openaiAdapter,
  };
}

/** Each registration's settings (one process may run several cores: tests), found again at start. */
const registrations = new WeakMap<PluginManifest, { settings: Partial<TritonSettings> }>();

export default definePlugin<Partial<TritonSettings>>({
  register(env) {
    // The plugin's config is read when a revision launches; until start it has its defaults.
    const state: { settings: Partial<TritonSettings> } = { settings: {} };
    registrations.set(env.manifest, state);
    env.contribute(servingExtensionPoints.runtimes, tritonRuntime(() => state.settings));
  },
  start(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
  configChanged(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
    clearEngineCache();
  },
});
