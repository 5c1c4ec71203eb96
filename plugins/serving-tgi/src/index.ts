/**
 * serving-tgi: contributes the `tgi` runtime (Hugging Face Text Generation Inference) to the serving
 * plugin's `serving.runtimes` extension point. TGI ships as a container (or a Rust build), so it runs
 * only on the docker executor, from the official image. Its protocol is `tgi` (`/generate`,
 * `/generate_stream`), and it also answers OpenAI's chat API itself (the Messages API,
 * `/v1/chat/completions`) and `/v1/completions`, which the `/v1` alias forwards unchanged.
 */
import { definePlugin, type PluginManifest } from '@aiplat/plugin-sdk';
import { servingExtensionPoints, type ServingRuntime } from '@aiplat-plugins/serving/api';
import { tgiEngine } from './engine.js';
import { optionsSchema, problemOf, tgiLaunch } from './options.js';

export { LOCAL_REFUSAL, OPENAI_PATHS, QUANTIZE, optionsOf, optionsSchema, problemOf, tgiFlags, tgiLaunch, type TgiOptions } from './options.js';
export { tgiEngine } from './engine.js';

export const DEFAULT_IMAGE = 'ghcr.io/huggingface/text-generation-inference:3.3.6';

export interface TgiSettings {
  image: string;
}

const registrations = new WeakMap<PluginManifest, { settings: Partial<TgiSettings> }>();

export function tgiRuntime(settings: () => Partial<TgiSettings>): ServingRuntime {
  const image = () => settings().image || DEFAULT_IMAGE;
  return {
    id: 'tgi',
    title: { en: 'Text Generation Inference (TGI)', 'zh-CN': 'Text Generation Inference（TGI）' },
    description: {
      en: 'Hugging Face\u2019s Text Generation Inference in its official container: continuous batching, tensor parallelism over the replica\u2019s GPUs (shards), GPTQ/AWQ/EETQ/FP8/bitsandbytes quantization; /generate and OpenAI\u2019s chat API.',
      'zh-CN': 'Hugging Face 的 Text Generation Inference，运行于官方容器：连续批处理、在副本的 GPU 间张量并行（分片）、GPTQ/AWQ/EETQ/FP8/bitsandbytes 量化；提供 /generate 以及 OpenAI 聊天接口。',
    },
    protocol: 'tgi',
    gpu: 'optional',
    executors: ['docker'],
    optionsSchema,
    engine: (executor) => tgiEngine(executor, image()),
    check: (c) => problemOf(c),
    launch: (c) => tgiLaunch(c, image()),
    metricsPath: '/metrics',
  };
}

export default definePlugin<Partial<TgiSettings>>({
  register(env) {
    const state: { settings: Partial<TgiSettings> } = { settings: {} };
    registrations.set(env.manifest, state);
    env.contribute(servingExtensionPoints.runtimes, tgiRuntime(() => state.settings));
  },
  start(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
});
