/**
 * serving-cpu: contributes the `cpu` runtime to the serving plugin's `serving.runtimes` extension
 * point. A replica is `transformers serve` (Hugging Face's OpenAI-compatible server) pinned to the
 * revision's model folder, started by this plugin's launcher `runtime/serve.py` with the python of
 * the venv `setup.sh` makes (or the plugin setting `python`). See docs/adr/0011-cpu-serving-runtime.md.
 *
 * Engine facts the runtime relies on (transformers 5.18.0):
 * - the model is preloaded before the port is bound, so `GET /health` answers 200 only when the
 *   model is in memory;
 * - a pinned server knows the model as `<folder>@main` and refuses any other `model` (400), so
 *   that name is the launch's `upstreamModel` (the `/v1` alias swaps it with the served name);
 * - no `/metrics`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { definePlugin, pluginRootOf, type PluginManifest } from '@aiplat/plugin-sdk';
import { servingExtensionPoints, type EngineStatus, type RuntimeContext, type RuntimeLaunch, type ServingRuntime } from '@aiplat-plugins/serving/api';

/** The plugin's settings (manifest `config`). */
export interface CpuRuntimeSettings {
  /** The runtime venv's interpreter; empty: the venv setup.sh makes. */
  python: string;
}

/** A revision's options (the runtime's `optionsSchema`, defaults filled in). */
export interface CpuRuntimeOptions {
  dtype: 'auto' | 'float32' | 'bfloat16';
  seed: number;
  threads: number;
}

const PLUGIN_DIR = pluginRootOf(import.meta.url);
const REPO_ROOT = path.resolve(PLUGIN_DIR, '../..');
/** The launcher every replica runs. */
export const SERVE_SCRIPT = path.join(PLUGIN_DIR, 'runtime', 'serve.py');
export const SETUP_SCRIPT = path.join(PLUGIN_DIR, 'setup.sh');
/** transformers serve answers `GET /health` once it listens, and it listens once the model is loaded. */
export const READINESS_PATH = '/health';

/** The venv's python setup.sh makes (`AIPLAT_SERVE_CPU_VENV` names another venv folder). */
export function defaultPython(): string {
  const venv = process.env.AIPLAT_SERVE_CPU_VENV || path.join(REPO_ROOT, 'node_modules', '.cache', 'aiplat-serve-cpu-venv');
  return path.join(venv, 'bin', 'python');
}

export function pythonOf(settings: Partial<CpuRuntimeSettings>): string {
  return settings.python?.trim() || defaultPython();
}

/** The name the engine knows a model folder by: a pinned `transformers serve` canonicalises ids to `id@revision`. */
export function upstreamModelOf(modelPath: string): string {
  return `${modelPath}@main`;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dtype: {
      type: 'string',
      enum: ['auto', 'float32', 'bfloat16'],
      default: 'auto',
      title: 'Weights dtype',
      description: "auto: the dtype the weights were saved in (config.json's dtype). bfloat16 halves the memory of float32 weights; it is fast only on CPUs with AVX-512 BF16 / AMX.",
    },
    seed: {
      type: 'integer',
      minimum: 0,
      maximum: 4294967295,
      default: 0,
      title: 'Random seed',
      description: 'Seeds sampling when the replica starts (a request with its own "seed" reseeds). Greedy decoding (temperature 0) needs none.',
    },
    threads: {
      type: 'integer',
      minimum: 0,
      maximum: 1024,
      default: 0,
      title: 'CPU threads per replica',
      description: "Threads torch computes with. 0: the replica's CPUs (resources.cpu) when given, else torch's default (all cores).",
    },
  },
} as const;

function optionsOf(options: Record<string, unknown>): CpuRuntimeOptions {
  return {
    dtype: (options.dtype as CpuRuntimeOptions['dtype'] | undefined) ?? 'auto',
    seed: typeof options.seed === 'number' ? options.seed : 0,
    threads: typeof options.threads === 'number' ? options.threads : 0,
  };
}

/** Why a revision cannot run on the CPU runtime, or undefined. */
export function problemOf(context: Pick<RuntimeContext, 'resources' | 'executor' | 'model' | 'options'>): string | undefined {
  const r = context.resources;
  if (r.gpus > 0 || r.gpuMemoryMiB) return 'The CPU runtime uses no GPU: set resources.gpus to 0 and leave out gpuMemoryMiB';
  if (context.executor !== 'local') return `The CPU runtime runs on the local executor only, not ${context.executor}`;
  if (context.model.path.includes('@')) {
    return `The model folder ${context.model.path} has an "@" in its path, which transformers serve reads as a revision: move the platform's data folder to a path without "@"`;
  }
  const o = optionsOf(context.options);
  if (r.cpu !== undefined && r.cpu > 0 && o.threads > Math.ceil(r.cpu)) {
    return `options.threads (${o.threads}) is more than the CPUs each replica asks for (resources.cpu ${r.cpu}): lower threads or ask for more CPUs`;
  }
  return undefined;
}

/** The argv and the rest of one replica's launch. */
export function launchOf(context: RuntimeContext, python: string): RuntimeLaunch {
  const o = optionsOf(context.options);
  const threads = o.threads > 0 ? o.threads : context.resources.cpu && context.resources.cpu > 0 ? Math.max(1, Math.floor(context.resources.cpu)) : 0;
  const name = upstreamModelOf(context.model.path);
  return {
    command: [
      python,
      SERVE_SCRIPT,
      '--model',
      context.model.path,
      '--name',
      name,
      '--state-dir',
      context.revisionDir,
      '--dtype',
      o.dtype,
      '--seed',
      String(o.seed),
      '--threads',
      String(threads),
    ],
    env: { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1' },
    workingDir: context.revisionDir,
    // The port opens only after the model is loaded (a big model on a busy CPU takes minutes):
    // readiness keeps probing; the serving plugin's own timeout decides when a start has failed.
    readiness: { path: READINESS_PATH, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 3 },
    upstreamModel: name,
  };
}

const ENGINE_PROBE = [
  'import json, transformers, fastapi, uvicorn, torch',
  'from transformers.cli.serve import Serve',
  'from transformers.cli.serving import server',
  "print(json.dumps({'transformers': transformers.__version__, 'torch': torch.__version__}))",
].join('\n');

const engineCache = new Map<string, { at: number; status: Promise<EngineStatus> }>();
/** An engine that is missing is asked again after this long (setup.sh may have run since). */
const RETRY_MISSING_MS = 30_000;

/** Whether `python` exists and imports transformers serve. Cached per interpreter. */
export function engineStatus(python: string): Promise<EngineStatus> {
  const cached = engineCache.get(python);
  if (cached && Date.now() - cached.at < RETRY_MISSING_MS) return cached.status;
  const status = probe(python).then((s) => {
    // A working engine stays working: keep it for good.
    if (s.available) engineCache.set(python, { at: Number.POSITIVE_INFINITY, status: Promise.resolve(s) });
    return s;
  });
  engineCache.set(python, { at: Date.now(), status });
  return status;
}

function probe(python: string): Promise<EngineStatus> {
  const fix = `run sh ${path.relative(process.cwd(), SETUP_SCRIPT) || SETUP_SCRIPT}`;
  if (!existsSync(python)) {
    return Promise.resolve({ available: false, version: null, reason: `the CPU runtime's Python ${python} does not exist (${fix}, or set the plugin's "python" setting)` });
  }
  return new Promise((resolve) => {
    execFile(python, ['-c', ENGINE_PROBE], { timeout: 60_000, env: { ...process.env, HF_HUB_OFFLINE: '1' } }, (err, stdout, stderr) => {
      if (err) {
        const last = stderr.trim().split('\n').pop() ?? err.message;
        resolve({ available: false, version: null, reason: `transformers serve does not import in ${python}: ${last} (${fix})` });
        return;
      }
      try {
        const v = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { transformers: string; torch: string };
        resolve({ available: true, version: `transformers ${v.transformers} (torch ${v.torch})`, reason: null });
      } catch {
        resolve({ available: false, version: null, reason: `${python} did not say which transformers it has: ${stdout.slice(0, 200)} (${fix})` });
      }
    });
  });
}

/** The `cpu` runtime, reading the plugin's settings when asked (they change at start and on configChanged). */
export function cpuRuntime(settings: () => Partial<CpuRuntimeSettings>): ServingRuntime {
  return {
    id: 'cpu',
    title: { en: 'CPU (transformers serve)', 'zh-CN': 'CPU（transformers serve）' },
    description: {
      en: "Runs the model with Hugging Face transformers on the node's CPUs, behind transformers serve's OpenAI-compatible API (/v1/chat/completions, streamed or not, and /v1/completions). No GPU; for small models, tests and development.",
      'zh-CN': '在节点的 CPU 上用 Hugging Face transformers 运行模型，通过 transformers serve 提供兼容 OpenAI 的 API（/v1/chat/completions，支持流式与非流式，以及 /v1/completions）。不使用 GPU；适合小模型、测试和开发。',
    },
    protocol: 'openai',
    gpu: 'none',
    executors: ['local'],
    optionsSchema,
    engine: async (executor) => {
      if (executor !== 'local') return { available: false, version: null, reason: `the CPU runtime runs on the local executor only, not ${executor}` };
      return engineStatus(pythonOf(settings()));
    },
    check: (context) => problemOf(context),
    launch: (context) => launchOf(context, pythonOf(settings())),
    estimateGpuMemoryMiB: () => 0,
  };
}

/** Each registration's settings (one process may run several cores: tests), found again at start. */
const registrations = new WeakMap<PluginManifest, { settings: Partial<CpuRuntimeSettings> }>();

export default definePlugin<Partial<CpuRuntimeSettings>>({
  register(env) {
    const state: { settings: Partial<CpuRuntimeSettings> } = { settings: {} };
    registrations.set(env.manifest, state);
    env.contribute(servingExtensionPoints.runtimes, cpuRuntime(() => state.settings));
  },
  start(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
  configChanged(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
});
