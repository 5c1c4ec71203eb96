/**
 * serving-vllm: contributes the `vllm` runtime to the serving plugin's `serving.runtimes` extension
 * point. vLLM speaks OpenAI's API itself (`/v1/chat/completions`, `/v1/completions`), so the `/v1`
 * alias forwards requests unchanged. Locally it runs `vllm serve` from a venv (`setup.sh` makes one
 * with vLLM's CPU build; a GPU node installs the CUDA build into it or names another interpreter in
 * the `python` setting); in docker the official `vllm/vllm-openai` image.
 */
import path from 'node:path';
import { definePlugin, pluginRootOf, type PluginManifest } from '@aiplat/plugin-sdk';
import { servingExtensionPoints, type ServingRuntime } from '@aiplat-plugins/serving/api';
import { dockerImage, localEngine } from './engine.js';
import { estimateGpuMemoryMiB, optionsSchema, problemOf, vllmLaunch } from './options.js';

export { estimateGpuMemoryMiB, optionsOf, optionsSchema, problemOf, vllmFlags, vllmLaunch, QUANTIZATIONS, CPU_QUANTIZATIONS, type VllmOptions } from './options.js';

/** This plugin's folder (runtime/launch.py, setup.sh). */
export const PLUGIN_DIR = pluginRootOf(import.meta.url);
export const DEFAULT_IMAGE = 'vllm/vllm-openai:v0.32.0';

export interface VllmSettings {
  /** The interpreter of a venv with vllm; empty: setup.sh's venv. */
  python: string;
  /** The image for the docker executor. */
  image: string;
}

/** setup.sh's venv: $AIPLAT_SERVE_VLLM_VENV, else node_modules/.cache/aiplat-serve-vllm-venv under the repository root. */
export function defaultPython(): string {
  const venv = process.env.AIPLAT_SERVE_VLLM_VENV || path.resolve(PLUGIN_DIR, '..', '..', 'node_modules', '.cache', 'aiplat-serve-vllm-venv');
  return path.join(venv, 'bin', 'python');
}

/** Each registration's settings (one process may run several cores: tests), found again at start. */
const registrations = new WeakMap<PluginManifest, { settings: Partial<VllmSettings> }>();

export function vllmRuntime(settings: () => Partial<VllmSettings>): ServingRuntime {
  const python = () => settings().python || defaultPython();
  const image = () => settings().image || DEFAULT_IMAGE;
  return {
    id: 'vllm',
    title: { en: 'vLLM', 'zh-CN': 'vLLM' },
    description: {
      en: 'vLLM\u2019s OpenAI-compatible server: paged attention, continuous batching, tensor parallelism across a node\u2019s GPUs, AWQ/GPTQ/FP8 quantization. On CPU-only nodes it runs vLLM\u2019s CPU build.',
      'zh-CN': 'vLLM 的 OpenAI 兼容服务：分页注意力、连续批处理、在单节点多 GPU 间张量并行、AWQ/GPTQ/FP8 量化。在仅有 CPU 的节点上运行 vLLM 的 CPU 版本。',
    },
    protocol: 'openai',
    gpu: 'optional',
    executors: ['local', 'docker'],
    optionsSchema,
    async engine(executor) {
      if (executor === 'docker') return dockerImage(image());
      if (executor !== 'local') return { available: false, version: null, reason: `the vllm runtime runs on the local or docker executor, not "${executor}"` };
      return localEngine(python(), settings().python ? 'pip install vllm in that venv' : `sh ${path.join(PLUGIN_DIR, 'setup.sh')}`);
    },
    check: (c) => problemOf(c),
    launch: (c) => vllmLaunch(c, { python: python(), image: image(), pluginDir: PLUGIN_DIR }),
    metricsPath: '/metrics',
    estimateGpuMemoryMiB,
  };
}

export default definePlugin<Partial<VllmSettings>>({
  register(env) {
    // The plugin's config is read when a replica launches; until start it has its defaults.
    const state: { settings: Partial<VllmSettings> } = { settings: {} };
    registrations.set(env.manifest, state);
    env.contribute(servingExtensionPoints.runtimes, vllmRuntime(() => state.settings));
  },
  start(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
});
