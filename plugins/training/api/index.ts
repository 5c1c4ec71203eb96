/**
 * The contract of the training plugin: what other plugins import (`@aiplat-plugins/training/api`).
 *
 * - Hooks (series; a tap that throws is logged, not passed on): `training.runStarted` (the run's
 *   workload was submitted), `training.metricLogged` (metric points of rank 0 arrived),
 *   `training.checkpointSaved`, `training.runFinished` (with the registered model version when
 *   there is one). Tracking (MLflow) and alert plugins follow runs through them.
 * - Extension point `training.strategies`: how a distributed strategy launches the worker. The
 *   training plugin contributes `single`, `ddp` and `fsdp`; `plugins/trainer-deepspeed` adds
 *   DeepSpeed ZeRO stages.
 */
import { defineExtensionPoint, defineSeriesHook } from '@aiplat/plugin-sdk';

export * from './types.js';
import type { Checkpoint, MetricPoint, TrainingRun } from './types.js';

export const trainingHooks = {
  runStarted: defineSeriesHook<[{ run: TrainingRun }]>('training.runStarted'),
  metricLogged: defineSeriesHook<[{ run: TrainingRun; points: MetricPoint[] }]>('training.metricLogged'),
  checkpointSaved: defineSeriesHook<[{ run: TrainingRun; checkpoint: Checkpoint }]>('training.checkpointSaved'),
  runFinished: defineSeriesHook<[{ run: TrainingRun }]>('training.runFinished'),
};

/** What a strategy turns into: the worker's argv and files written beside the run spec. */
export interface StrategyLaunch {
  /** The argv after the Python interpreter, e.g. `['-m', 'torch.distributed.run', '--nproc_per_node', '2', TRAIN_PY, '--spec', SPEC]`. */
  args: string[];
  /** Files to write into the run folder (name → content), e.g. `ds_config.json`. */
  files?: Record<string, string>;
  /** Merged into the run spec's `strategy` object the worker reads (e.g. `{ deepspeedConfig: '<run folder>/ds_config.json' }`). */
  spec?: Record<string, unknown>;
}

export interface StrategyContext {
  /** The worker's entry script and the run spec file, absolute. */
  trainPy: string;
  specFile: string;
  /** The run's folder, where `files` are written. */
  runDir: string;
  /** Processes per node (GPUs per node, or CPU processes when no GPU is asked for). */
  processesPerNode: number;
  gpusPerNode: number;
  /** Nodes of the run: replicas of one gang-placed workload. */
  nodes: number;
  /** The request's strategy options (e.g. `{ stage: 2 }`). */
  options: Record<string, unknown>;
  /** The hyper-parameters, for strategies that derive their config from them. */
  hyper: Record<string, unknown>;
}

/** A distributed strategy, contributed to `training.strategies`. */
export interface TrainingStrategy {
  /** `single`, `ddp`, `fsdp`, `deepspeed`… */
  id: string;
  title: { en: string; 'zh-CN': string };
  /** Whether it runs without a GPU (DDP and FSDP do, with gloo). */
  cpu: boolean;
  /** JSON Schema of its options in the wizard (e.g. the ZeRO stage). */
  optionsSchema?: Record<string, unknown>;
  /** A reason to refuse the request (shown to the user), or undefined. */
  check?(context: StrategyContext): string | undefined;
  launch(context: StrategyContext): StrategyLaunch;
}

/**
 * The argv (after the Python interpreter) that starts the worker under torchrun on each node of a
 * run: the worker's launcher turns the scheduler's gang variables (`WORLD_SIZE` nodes, `RANK`,
 * `MASTER_ADDR`, `MASTER_PORT`) into torchrun's static rendezvous, or `--standalone` on one node.
 * Strategies that run one worker process per GPU (DDP, FSDP, DeepSpeed) launch with it.
 */
export function torchrunLaunch(c: Pick<StrategyContext, 'trainPy' | 'specFile' | 'processesPerNode'>): string[] {
  return ['-m', 'aiplat_train.launch', '--nproc-per-node', String(c.processesPerNode), '--', c.trainPy, '--spec', c.specFile];
}

export const trainingExtensionPoints = {
  strategies: defineExtensionPoint<TrainingStrategy>('training.strategies'),
};

/** The lineage node kind of a run. */
export const RUN_NODE = 'training.run';
