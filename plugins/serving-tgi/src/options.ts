/**
 * The tgi runtime's options, its refusals and the container's argv. Pure functions (no I/O):
 * `test/tgi.test.ts` covers them, and checks every flag against TGI's documented launcher options
 * (`test/fixtures/tgi-launcher-3.3.6.md`, TGI's `docs/source/reference/launcher.md`).
 */
import { CONTAINER_MODEL_PATH, type RuntimeContext, type RuntimeLaunch } from '@aiplat-plugins/serving/api';

/** `--quantize`'s possible values in TGI 3.3.6 (launcher.md), `none` for "do not pass the flag". */
export const QUANTIZE = [
  'none',
  'awq',
  'compressed-tensors',
  'eetq',
  'exl2',
  'gptq',
  'marlin',
  'bitsandbytes',
  'bitsandbytes-nf4',
  'bitsandbytes-fp4',
  'fp8',
] as const;
export type Quantize = (typeof QUANTIZE)[number];

/** `--dtype`'s possible values (`auto`: not passed; TGI takes the model's). It cannot be combined with `--quantize`. */
export const DTYPES = ['auto', 'float16', 'bfloat16'] as const;
export type Dtype = (typeof DTYPES)[number];

export interface TgiOptions {
  /** Empty: the replica's GPUs. */
  numShard?: number;
  maxInputTokens?: number;
  maxTotalTokens?: number;
  maxBatchPrefillTokens?: number;
  maxConcurrentRequests: number;
  quantize: Quantize;
  dtype: Dtype;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    numShard: {
      type: 'integer',
      minimum: 1,
      maximum: 64,
      title: 'Shards (--num-shard)',
      description: 'Tensor-parallel shards, one per GPU of the replica. Empty: the replica\u2019s GPUs.',
    },
    maxInputTokens: { type: 'integer', minimum: 1, title: 'Most prompt tokens (--max-input-tokens)', description: 'Empty: TGI\u2019s default (the model\u2019s context length − 1, within memory).' },
    maxTotalTokens: { type: 'integer', minimum: 2, title: 'Most prompt + output tokens (--max-total-tokens)', description: 'Empty: TGI\u2019s default (the model\u2019s context length, within memory).' },
    maxBatchPrefillTokens: { type: 'integer', minimum: 1, title: 'Most tokens in one prefill batch (--max-batch-prefill-tokens)' },
    maxConcurrentRequests: { type: 'integer', minimum: 1, maximum: 100_000, default: 128, title: 'Most concurrent requests (--max-concurrent-requests)' },
    quantize: { type: 'string', enum: [...QUANTIZE], default: 'none', title: 'Quantization (--quantize)', description: '`none`: read from the model\u2019s config (pre-quantized models), else none.' },
    dtype: { type: 'string', enum: [...DTYPES], default: 'auto', title: 'dtype (--dtype)', description: 'Cannot be combined with a quantization.' },
  },
} as const;

export function optionsOf(raw: Record<string, unknown>): TgiOptions {
  const o: TgiOptions = {
    maxConcurrentRequests: typeof raw.maxConcurrentRequests === 'number' ? raw.maxConcurrentRequests : 128,
    quantize: (typeof raw.quantize === 'string' ? raw.quantize : 'none') as Quantize,
    dtype: (typeof raw.dtype === 'string' ? raw.dtype : 'auto') as Dtype,
  };
  for (const k of ['numShard', 'maxInputTokens', 'maxTotalTokens', 'maxBatchPrefillTokens'] as const) {
    const v = raw[k];
    if (typeof v === 'number') o[k] = v;
  }
  return o;
}

export const LOCAL_REFUSAL = 'TGI runs only in its container: choose the docker executor';

/** Why the revision cannot run, for people; undefined when it can. Mirrors TGI's own launcher and router validation. */
export function problemOf(context: Pick<RuntimeContext, 'options' | 'resources' | 'model' | 'executor' | 'maxGpusPerNode'>): string | undefined {
  if (context.executor === 'local') return LOCAL_REFUSAL;
  if (context.executor !== 'docker') return `TGI runs only in its container on the docker executor, not on "${context.executor}"`;
  const o = optionsOf(context.options);
  const gpus = context.resources.gpus;
  if (o.numShard !== undefined) {
    if (gpus === 0 && o.numShard > 1) return `${o.numShard} shards need ${o.numShard} GPUs, but the replica has none: give it ${o.numShard} GPUs or leave shards empty`;
    if (gpus > 0 && o.numShard !== gpus) return `shards (${o.numShard}) must equal the replica's GPUs (${gpus}): TGI runs one shard per GPU`;
  }
  if (gpus > context.maxGpusPerNode) return `a replica with ${gpus} GPUs cannot run: the largest node has ${context.maxGpusPerNode}`;
  if (o.quantize !== 'none' && gpus === 0) return `quantization "${o.quantize}" needs a GPU (TGI's quantized kernels are GPU kernels), but the replica has none`;
  if (o.quantize === 'exl2' && gpus > 1) return 'exl2 quantization does not support sharding (TGI): use one GPU per replica';
  if (o.quantize !== 'none' && o.dtype !== 'auto') return `dtype ${o.dtype} cannot be combined with quantization "${o.quantize}" (TGI's --dtype excludes --quantize): set dtype to auto`;
  if (o.maxInputTokens !== undefined && o.maxTotalTokens !== undefined && o.maxInputTokens >= o.maxTotalTokens) {
    return `most prompt tokens (${o.maxInputTokens}) must be less than most prompt + output tokens (${o.maxTotalTokens})`;
  }
  const contextLength = typeof context.model.metadata.contextLength === 'number' ? context.model.metadata.contextLength : null;
  if (contextLength !== null && o.maxTotalTokens !== undefined && o.maxTotalTokens > contextLength) {
    return `most prompt + output tokens (${o.maxTotalTokens}) is above the model's context length (${contextLength} tokens): choose at most ${contextLength}`;
  }
  if (contextLength !== null && o.maxInputTokens !== undefined && o.maxTotalTokens === undefined && o.maxInputTokens >= contextLength) {
    return `most prompt tokens (${o.maxInputTokens}) must be less than the model's context length (${contextLength} tokens)`;
  }
  if (o.maxBatchPrefillTokens !== undefined && o.maxInputTokens !== undefined && o.maxBatchPrefillTokens < o.maxInputTokens) {
    return `most tokens in one prefill batch (${o.maxBatchPrefillTokens}) must be at least most prompt tokens (${o.maxInputTokens})`;
  }
  return undefined;
}

/** The port TGI listens on inside the container (the image's default, `--port 80`). */
export const CONTAINER_PORT = 80;

/** The launcher's flags for the options (after `--model-id`, `--port`, `--hostname`). */
export function tgiFlags(o: TgiOptions, gpus: number): string[] {
  const args: string[] = [];
  const shards = o.numShard ?? (gpus > 0 ? gpus : undefined);
  if (shards !== undefined) args.push('--num-shard', String(shards));
  if (o.maxInputTokens !== undefined) args.push('--max-input-tokens', String(o.maxInputTokens));
  if (o.maxTotalTokens !== undefined) args.push('--max-total-tokens', String(o.maxTotalTokens));
  if (o.maxBatchPrefillTokens !== undefined) args.push('--max-batch-prefill-tokens', String(o.maxBatchPrefillTokens));
  args.push('--max-concurrent-requests', String(o.maxConcurrentRequests));
  if (o.quantize !== 'none') args.push('--quantize', o.quantize);
  if (o.dtype !== 'auto') args.push('--dtype', o.dtype);
  return args;
}

/**
 * The container's argv. The docker executor runs `command` as the whole argv (the image's
 * ENTRYPOINT is not used), so it starts with the image's entrypoint, `/tgi-entrypoint.sh` (it
 * activates the image's venv and execs `text-generation-launcher "$@"`).
 */
export function tgiLaunch(context: RuntimeContext, image: string): RuntimeLaunch {
  const o = optionsOf(context.options);
  return {
    image,
    command: [
      '/tgi-entrypoint.sh',
      '--model-id',
      CONTAINER_MODEL_PATH,
      '--port',
      String(CONTAINER_PORT),
      '--hostname',
      '0.0.0.0',
      ...tgiFlags(o, context.resources.gpus),
      '--usage-stats',
      'off',
    ],
    env: { HF_HUB_OFFLINE: '1' },
    mounts: [{ source: context.model.path, target: CONTAINER_MODEL_PATH, readOnly: true }],
    containerPort: CONTAINER_PORT,
    // Sharded loading and warm-up take minutes on big models: 20 minutes to become ready.
    readiness: { path: '/health', initialDelaySeconds: 5, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 240 },
    // TGI answers `model` with its --model-id: the /v1 alias puts the served name back.
    upstreamModel: CONTAINER_MODEL_PATH,
  };
}

/** The OpenAI paths TGI answers itself (its Messages API and completions), which the /v1 alias forwards unchanged. */
export const OPENAI_PATHS = ['/v1/chat/completions', '/v1/completions', '/v1/models'];
