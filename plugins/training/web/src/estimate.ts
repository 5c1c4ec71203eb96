/**
 * What the wizard estimates before a run starts: the parameter count of a Llama-style architecture
 * and the memory per GPU of training it. The worker keeps weights and AdamW's state in float32 (mixed
 * precision only changes the compute), so full fine-tuning holds weights + gradients + Adam's two
 * moments = 4 copies of every parameter; LoRA holds the frozen weights once (4-bit for QLoRA) and the
 * four copies of the small adapter only. Activations are not counted.
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
}

const FLOAT32 = 4;

/**
 * Memory per device: `shards` divides full fine-tuning's state under FSDP (1 otherwise).
 */
export function estimateMemory(parameters: number, method: 'full' | 'lora' | 'qlora', adapter: number, shards = 1): MemoryEstimate {
  if (method === 'full') {
    const each = (parameters * FLOAT32) / Math.max(1, shards);
    return { parameters, trainable: parameters, weights: each, gradients: each, optimizer: 2 * each, total: 4 * each };
  }
  const weights = method === 'qlora' ? parameters * 0.5 : parameters * FLOAT32;
  const a = adapter * FLOAT32;
  return { parameters, trainable: adapter, weights: weights + a, gradients: a, optimizer: 2 * a, total: weights + 4 * a };
}
