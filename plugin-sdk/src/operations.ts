/**
 * Long-running actions that are not GPU workloads (plugin installs, imports, commits of big
 * uploads): persisted, with monotonic progress streamed on the `operations` topic, cancellable,
 * and marked `failed` with error `interrupted` when the core restarts under them.
 */

export type OperationState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface Operation<TResult = unknown> {
  id: string;
  kind: string;
  /** The plugin that started it, or `core`. */
  owner: string;
  /** The user it runs for, when started from a request. */
  userId: string | null;
  title: string;
  state: OperationState;
  /** 0–1, never decreasing. */
  progress: number;
  message: string | null;
  result: TResult | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface OperationControl {
  readonly id: string;
  /** Aborted when someone cancels the operation (or the core stops). */
  readonly signal: AbortSignal;
  /** Report progress (0–1) with a message. A value below the last one is ignored. */
  progress(fraction: number, message?: string): void;
}

export interface StartOperationOptions {
  title?: string;
  /** The user the operation runs for (who may see and cancel it). */
  userId?: string;
}

export interface Operations {
  /** Start `run` in the background and return the operation as first stored. */
  start<TResult>(kind: string, run: (control: OperationControl) => Promise<TResult>, options?: StartOperationOptions): Promise<Operation<TResult>>;
  get(id: string): Promise<Operation | undefined>;
  cancel(id: string): Promise<Operation>;
  /** Resolves when the operation has finished (for tests and callers that must wait). */
  wait(id: string): Promise<Operation>;
}
