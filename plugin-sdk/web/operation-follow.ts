/** The following half of {@link useOperation} (operations.ts), loaded with its first `start`. */
import type { ShallowRef } from 'vue';
import type { Operation } from '../src/operations.ts';
import { coreApi } from './api.ts';
import type { OperationStarted, UseOperationOptions } from './operations.ts';
import { stream } from './stream.ts';

/** Follow the operation `answer` names into `operation` until it ends; returns what stops following. */
export function follow<R>(answer: OperationStarted<R>, operation: ShallowRef<Operation<R> | undefined>, options: UseOperationOptions<R>): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let unsubscribe: (() => void) | undefined;

  const done = () => {
    clearTimeout(timer);
    unsubscribe?.();
    unsubscribe = undefined;
  };

  function apply(op: Operation<R>) {
    const current = operation.value;
    // Once finished it stays finished; an older running snapshot never goes back in time.
    if (stopped || !current || op.id !== current.id || current.state !== 'running') return;
    if (op.state === 'running' && op.updatedAt < current.updatedAt) return;
    operation.value = { ...current, ...op, progress: Math.max(current.progress ?? 0, op.progress ?? 0) };
    if (op.state !== 'running') {
      done();
      options.onFinished?.(operation.value);
    }
  }

  function later(ms: number) {
    clearTimeout(timer);
    timer = setTimeout(() => void poll(), ms);
  }

  async function poll() {
    const current = operation.value;
    if (stopped || current?.state !== 'running') return;
    try {
      apply(await coreApi.get<Operation<R>>(`/operations/${encodeURIComponent(current.id)}`));
    } catch {
      /* the stream may still bring it; try again */
    }
    if (!stopped && operation.value?.state === 'running') later(options.pollMs ?? 2500);
  }

  const first = 'operationId' in answer ? { id: answer.operationId } : answer.operation;
  const op = { title: '', state: 'running', progress: 0, message: null, result: null, error: null, updatedAt: '', ...first } as Operation<R>;
  operation.value = op;
  if (op.state !== 'running') options.onFinished?.(op);
  else {
    unsubscribe = stream.subscribe<Operation<R>>(
      'operations',
      (event) => {
        if (event.payload?.id) apply(event.payload);
      },
      { onReset: () => void poll() },
    );
    // It may have moved on (or finished) before the subscription started: read it back soon.
    later(500);
  }
  return () => {
    stopped = true;
    done();
  };
}
