/**
 * The DeepSpeed config (`ds_config.json`) of a run, from the wizard's strategy options and the run's
 * hyper-parameters. Pure, so the tests can hand what it makes to DeepSpeed's own config classes.
 *
 * The worker owns the fields that must agree with the run (micro-batch, accumulation, clipping,
 * precision) and refuses a config that contradicts them; they are written here too, so the file
 * is complete and readable on its own (`deepspeed --deepspeed_config ds_config.json` takes it).
 */

export interface DeepSpeedOptions {
  /** ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also the parameters. */
  stage: 1 | 2 | 3;
  /** Optimizer state (and its step) in CPU memory: ZeRO-Offload. Stages 1-3. */
  offloadOptimizer: boolean;
  /** Parameters in CPU memory between uses: ZeRO-Infinity's offload. Stage 3 only. */
  offloadParameters: boolean;
  /** Overlap gradient reduction with the backward pass. */
  overlapComm: boolean;
}

/** JSON Schema of the options, shown by the wizard and checked by the training plugin. */
export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    stage: { type: 'integer', enum: [1, 2, 3], default: 2, title: 'ZeRO stage', description: '1: optimizer state sharded; 2: and gradients; 3: and parameters' },
    offloadOptimizer: { type: 'boolean', default: false, title: 'Offload optimizer state to CPU memory' },
    offloadParameters: { type: 'boolean', default: false, title: 'Offload parameters to CPU memory (stage 3)' },
    overlapComm: { type: 'boolean', default: true, title: 'Overlap gradient reduction with the backward pass' },
  },
} as const;

export const DEFAULT_OPTIONS: DeepSpeedOptions = { stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true };

export function optionsOf(raw: Record<string, unknown>): DeepSpeedOptions {
  return { ...DEFAULT_OPTIONS, ...(raw as Partial<DeepSpeedOptions>) };
}

/** Why these options cannot run (shown to the user), or undefined. */
export function problemOf(options: DeepSpeedOptions, hyper: Record<string, unknown>, gpusPerNode: number): string | undefined {
  if (options.offloadParameters && options.stage !== 3) return 'Offloading parameters needs ZeRO stage 3: choose stage 3, or offload the optimizer state only';
  if (options.stage === 3 && (hyper.method ?? 'full') !== 'full') return 'ZeRO-3 partitions the weights, which LoRA needs whole to merge: choose stage 1 or 2 for LoRA';
  if (hyper.method === 'qlora') return 'QLoRA is not trained under DeepSpeed here: choose DDP for QLoRA, or LoRA under DeepSpeed';
  if (gpusPerNode === 0 && (options.offloadOptimizer || options.offloadParameters)) return 'Offloading to CPU memory only helps GPU runs: turn offload off for a CPU run';
  if (gpusPerNode === 0 && hyper.precision === 'fp16') return 'fp16 needs GPUs: choose bf16 or fp32 for a CPU run';
  return undefined;
}

export interface DeepSpeedSettings {
  /** Elements per reduction bucket (the plugin's config). */
  reduceBucketSize: number;
}

export function deepspeedConfig(options: DeepSpeedOptions, hyper: Record<string, unknown>, settings: DeepSpeedSettings = { reduceBucketSize: 200_000_000 }): Record<string, unknown> {
  const precision = String(hyper.precision ?? 'fp32');
  const zero: Record<string, unknown> = {
    stage: options.stage,
    overlap_comm: options.overlapComm,
    contiguous_gradients: true,
    reduce_bucket_size: settings.reduceBucketSize,
  };
  if (options.offloadOptimizer) zero.offload_optimizer = { device: 'cpu', pin_memory: true };
  if (options.stage === 3) {
    if (options.offloadParameters) zero.offload_param = { device: 'cpu', pin_memory: true };
    // The final model and checkpoints are saved whole from the partitions.
    zero.stage3_gather_16bit_weights_on_model_save = true;
  }
  return {
    train_micro_batch_size_per_gpu: Number(hyper.batchSize ?? 8),
    gradient_accumulation_steps: Number(hyper.gradientAccumulation ?? 1),
    gradient_clipping: Number(hyper.maxGradNorm ?? 1.0),
    zero_optimization: zero,
    bf16: { enabled: precision === 'bf16' },
    // Dynamic loss scaling (loss_scale 0) from 2^16, as DeepSpeed recommends.
    fp16: precision === 'fp16' ? { enabled: true, loss_scale: 0, initial_scale_power: 16 } : { enabled: false },
    // The worker's optimizer is torch's AdamW (DeepSpeed's CPU Adam when the optimizer is offloaded).
    zero_allow_untested_optimizer: true,
    steps_per_print: 2_147_483_647,
    wall_clock_breakdown: false,
  };
}
