/**
 * Follow one operation (`GET /api/v1/operations/:id`: a plugin install, an import, …) from the
 * request that starts it to its end: its changes arrive on the `operations` stream topic
 * (subscribed only while one is followed), and it is also read back after a stream reset and every
 * few seconds, so a missed event or a lost connection never leaves a progress bar stuck.
 *
 * Only the state lives here; the following itself (operation-follow.ts) loads with the first
 * `start`, so the shell's first load does not carry it.
 */
import { computed, onScopeDispose, ref, shallowRef } from 'vue';
import type { Operation } from '../src/operations.ts';

export type { Operation, OperationState } from '../src/operations.ts';

/** What a start request may answer: the operation as first stored, or only its id. */
export type OperationStarted<R = unknown> = { operation: Partial<Operation<R>> & { id: string } } | { operationId: string };

export interface UseOperationOptions<R = unknown> {
  /** Called once when the followed operation ends (succeeded, failed or cancelled). */
  onFinished?: (operation: Operation<R>) => void;
  /** How often it is read back while running (ms; default 2500). */
  pollMs?: number;
}

/**
 * Follow an operation from the request that starts it to its end (see the module comment): call
 * `start(() => api.post(...))` with a request that answers `{ operationId }` or `{ operation }`,
 * then show `operation` (its latest state), `running`, `percent` (0–100) or `startError`; `reset()`
 * stops following. `onFinished` is called once when it ends. Stops with the calling component.
 */
export function useOperation<R = unknown>(options: UseOperationOptions<R> = {}) {
  /** The operation followed (its latest state), if any. */
  const operation = shallowRef<Operation<R>>();
  /** The start request is on its way. */
  const starting = ref(false);
  /** The start request was refused (the error as thrown). */
  const startError = shallowRef<unknown>();
  const running = computed(() => starting.value || operation.value?.state === 'running');
  const finished = computed(() => !!operation.value && operation.value.state !== 'running');
  /** Progress as a whole percentage (0–100). */
  const percent = computed(() => Math.min(100, Math.max(0, Math.round((operation.value?.progress ?? 0) * 100))));
  /** Stops following the current operation (or abandons the start request). */
  const state: { stop?: () => void } = {};

  /** Stop following (the operation itself goes on). */
  function reset() {
    state.stop?.();
    state.stop = undefined;
    operation.value = undefined;
    startError.value = undefined;
    starting.value = false;
  }

  /**
   * Send the request that starts the operation, then follow it. The request answers the operation
   * (`{ operation }`) or its id (`{ operationId }`). Resolves false when the request was refused.
   */
  async function start(request: () => Promise<OperationStarted<R>>): Promise<boolean> {
    reset();
    starting.value = true;
    let cancelled = false;
    state.stop = () => (cancelled = true);
    try {
      const [answer, { follow }] = await Promise.all([request(), import('./operation-follow.ts')]);
      if (cancelled) return false;
      state.stop = follow(answer, operation, options);
      return true;
    } catch (e) {
      if (!cancelled) startError.value = e;
      return false;
    } finally {
      if (!cancelled) starting.value = false;
    }
  }

  onScopeDispose(() => state.stop?.());

  return { operation, starting, startError, running, finished, percent, start, reset };
}
