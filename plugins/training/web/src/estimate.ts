/**
 * What the wizard estimates before a run starts: the parameter count of a Llama-style architecture
 * and the memory per GPU of training it. The worker keeps weights and AdamW's state in float32 (mixed
 * precision only changes the compute), so full fine-tuning holds weights + gradients + Adam's two
 * moments = 4 copies of every parameter; LoRA holds the frozen weights once (4-bit for QLoRA) and the
 * four copies of the small adapter only. Activations are not counted.
 *
 * Sharding divides that state over the world size (nodes × GPUs, or processes, per node): FSDP shards
 * all of full fine-tuning's state; DeepSpeed's ZeRO shards the optimizer state (stage 1), also the
 * gradients (stage 2), also the parameters (stage 3); what ZeRO offloads (optimizer state,
 * parameters at stage 3) leaves GPU memory for CPU memory (`offloaded`).
 */
export interface LlamaSizes {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
}

/** Parameters of a LlamaForCausalLM (untied embeddings, RMSNorm without bias). */
export function llamaParameters(s: LlamaSizes): number {
  const headDim = s.hidden / s.heads;
  const kv = s.kvHeads * headDim;
  const attention = 2 * s.hidden * s.hidden + 2 * s.hidden * kv;
  const mlp = 3 * s.hidden * s.intermediate;
  const norms = 2 * s.hidden;
  return 2 * s.vocab * s.hidden + s.layers * (attention + mlp + norms) + s.hidden;
}

/** LoRA's trainable parameters: r × (in + out) for each targeted projection of each layer. */
export function loraParameters(s: Pick<LlamaSizes, 'hidden' | 'layers' | 'heads' | 'kvHeads' | 'intermediate'>, r: number, modules: string[]): number {
  const kv = (s.kvHeads * s.hidden) / s.heads;
  const shapes: Record<string, [number, number]> = {
    q_proj: [s.hidden, s.hidden],
    k_proj: [s.hidden, kv],
    v_proj: [s.hidden, kv],
    o_proj: [s.hidden, s.hidden],
    gate_proj: [s.hidden, s.intermediate],
    up_proj: [s.hidden, s.intermediate],
    down_proj: [s.intermediate, s.hidden],
  };
  let n = 0;
  for (const m of modules) {
    const shape = shapes[m];
    if (shape) n += r * (shape[0] + shape[1]);
  }
  return n * s.layers;
}

export interface MemoryEstimate {
  parameters: number;
  trainable: number;
  /** Bytes per GPU (or per process on CPU). */
  weights: number;
  gradients: number;
  optimizer: number;
  total: number;
  /** Bytes per process moved to CPU memory by offloading (ZeRO), not in `total`. */
  offloaded: number;
}

/** DeepSpeed ZeRO's sharding and offload, over `worldSize` processes. */
export interface ZeroOptions {
  stage: 1 | 2 | 3;
  worldSize: number;
  offloadOptimizer?: boolean;
  /** Stage 3 only (ignored otherwise, as DeepSpeed refuses it). */
  offloadParameters?: boolean;
}

const FLOAT32 = 4;

/**
 * Memory per device: `shards` divides full fine-tuning's state under FSDP (1 otherwise); `zero`
 * shards and offloads as DeepSpeed's ZeRO does (`shards` is then ignored).
 */
export function estimateMemory(parameters: number, method: 'full' | 'lora' | 'qlora', adapter: number, shards = 1, zero?: ZeroOptions): MemoryEstimate {
  if (zero) return zeroMemory(parameters, method, adapter, zero);
  if (method === 'full') {
    const each = (parameters * FLOAT32) / Math.max(1, shards);
    return { parameters, trainable: parameters, weights: each, gradients: each, optimizer: 2 * each, total: 4 * each, offloaded: 0 };
  }
  const weights = method === 'qlora' ? parameters * 0.5 : parameters * FLOAT32;
  const a = adapter * FLOAT32;
  return { parameters, trainable: adapter, weights: weights + a, gradients: a, optimizer: 2 * a, total: weights + 4 * a, offloaded: 0 };
}

function zeroMemory(parameters: number, method: 'full' | 'lora' | 'qlora', adapter: number, zero: ZeroOptions): MemoryEstimate {
  const world = Math.max(1, Math.floor(zero.worldSize) || 1);
  const trainable = method === 'full' ? parameters : adapter;
  // The frozen base of LoRA stays whole on each process below stage 3 (4-bit for QLoRA).
  const frozen = method === 'full' ? 0 : method === 'qlora' ? parameters * 0.5 : parameters * FLOAT32;
  const t = trainable * FLOAT32;
  const optimizerShard = (2 * t) / world;
  const gradients = zero.stage >= 2 ? t / world : t;
  const weightsAll = zero.stage >= 3 ? (frozen + t) / world : frozen + t;
  const optimizer = zero.offloadOptimizer ? 0 : optimizerShard;
  const paramsOffloaded = zero.stage === 3 && !!zero.offloadParameters;
  const weights = paramsOffloaded ? 0 : weightsAll;
  const offloaded = (zero.offloadOptimizer ? optimizerShard : 0) + (paramsOffloaded ? weightsAll : 0);
  return { parameters, trainable, weights, gradients, optimizer, total: weights + gradients + optimizer, offloaded };
}
