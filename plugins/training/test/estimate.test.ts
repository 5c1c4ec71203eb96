// The wizard's memory estimate (web/src/estimate.ts): parameters of a Llama, full fine-tuning and
// LoRA per device, FSDP's shards, and DeepSpeed ZeRO's stages and CPU offload.
import { describe, expect, it } from 'vitest';
import { estimateMemory, llamaParameters, loraParameters } from '../web/src/estimate.js';

const P = 1_000_000;
const A = 1_000;

describe('estimateMemory', () => {
  it('counts a Llama’s parameters and a LoRA adapter', () => {
    const s = { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, vocab: 259 };
    // embeddings + lm_head, per layer q/o (32×32), k/v (32×16), MLP 3×32×64 and two norms, a final norm.
    expect(llamaParameters(s)).toBe(2 * 259 * 32 + 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32);
    expect(loraParameters(s, 8, ['q_proj', 'v_proj'])).toBe(2 * (8 * (32 + 32) + 8 * (32 + 16)));
  });

  it('holds four float32 copies for full fine-tuning, divided by FSDP’s shards', () => {
    expect(estimateMemory(P, 'full', 0)).toEqual({ parameters: P, trainable: P, weights: 4 * P, gradients: 4 * P, optimizer: 8 * P, total: 16 * P, offloaded: 0 });
    expect(estimateMemory(P, 'full', 0, 4).total).toBe(4 * P);
  });

  it('holds the frozen weights once and four copies of the adapter for LoRA (4-bit for QLoRA)', () => {
    expect(estimateMemory(P, 'lora', A)).toMatchObject({ trainable: A, weights: 4 * P + 4 * A, gradients: 4 * A, optimizer: 8 * A, total: 4 * P + 16 * A });
    expect(estimateMemory(P, 'qlora', A).total).toBe(0.5 * P + 16 * A);
  });

  it('shards the optimizer state at ZeRO stage 1, the gradients too at 2, the weights too at 3', () => {
    const zero = (stage: 1 | 2 | 3, worldSize: number) => estimateMemory(P, 'full', 0, 1, { stage, worldSize });
    expect(zero(1, 4)).toMatchObject({ weights: 4 * P, gradients: 4 * P, optimizer: 2 * P, total: 10 * P, offloaded: 0 });
    expect(zero(2, 4)).toMatchObject({ weights: 4 * P, gradients: P, optimizer: 2 * P, total: 7 * P });
    expect(zero(3, 4)).toMatchObject({ weights: P, gradients: P, optimizer: 2 * P, total: 4 * P });
    // One process: nothing to shard, the same as unsharded training.
    for (const stage of [1, 2, 3] as const) expect(zero(stage, 1).total).toBe(estimateMemory(P, 'full', 0).total);
    // The world size is nodes × GPUs per node: 2 nodes of 4 GPUs shard by 8.
    expect(zero(3, 8).total).toBe(2 * P);
    // `shards` (FSDP's) does not apply under ZeRO.
    expect(estimateMemory(P, 'full', 0, 8, { stage: 1, worldSize: 2 }).total).toBe(4 * P + 4 * P + 4 * P);
  });

  it('moves offloaded optimizer state and (stage 3) parameters out of GPU memory', () => {
    const offOpt = estimateMemory(P, 'full', 0, 1, { stage: 2, worldSize: 4, offloadOptimizer: true });
    expect(offOpt).toMatchObject({ weights: 4 * P, gradients: P, optimizer: 0, total: 5 * P, offloaded: 2 * P });
    const offBoth = estimateMemory(P, 'full', 0, 1, { stage: 3, worldSize: 4, offloadOptimizer: true, offloadParameters: true });
    expect(offBoth).toMatchObject({ weights: 0, gradients: P, optimizer: 0, total: P, offloaded: 3 * P });
    // Parameters stay on the GPU below stage 3 (DeepSpeed refuses the combination).
    expect(estimateMemory(P, 'full', 0, 1, { stage: 2, worldSize: 4, offloadParameters: true })).toMatchObject({ weights: 4 * P, offloaded: 0 });
  });

  it('shards only LoRA’s adapter state below stage 3, the frozen base staying whole', () => {
    expect(estimateMemory(P, 'lora', A, 1, { stage: 2, worldSize: 2 })).toMatchObject({ trainable: A, weights: 4 * P + 4 * A, gradients: 2 * A, optimizer: 4 * A, total: 4 * P + 10 * A });
    expect(estimateMemory(P, 'lora', A, 1, { stage: 1, worldSize: 2, offloadOptimizer: true })).toMatchObject({ optimizer: 0, offloaded: 4 * A, total: 4 * P + 8 * A });
  });
});
