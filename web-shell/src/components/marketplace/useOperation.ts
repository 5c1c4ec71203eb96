/**
 * Follow one operation from the request that starts it to its end: its changes arrive on the
 * `operations` stream topic (subscribed only while one is followed), and the operation is also
 * read back (`GET /operations/:id`) when the stream was reset and every few seconds, so a missed
 * event or a lost connection never leaves the progress bar stuck.
 */
import { computed, onScopeDispose, ref, shallowRef } from 'vue';
import { useStream, type StreamEvent } from '@aiplat/plugin-sdk/web';
import { getOperation, type Operation } from './shared.ts';

const POLL_MS = 2500;

export function useOperation(options: { onFinished?: (op: Operation) => void } = {}) {
  const operation = shallowRef<Operation>();
  /** The start request is on its way. */
  const starting = ref(false);
  /** The start request was refused (the error as thrown). */
  const startError = shallowRef<unknown>();
  const running = computed(() => starting.value || operation.value?.state === 'running');
  const finished = computed(() => !!operation.value && operation.value.state !== 'running');
  const percent = computed(() => Math.min(100, Math.max(0, Math.round((operation.value?.progress ?? 0) * 100))));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let generation = 0;

  function apply(op: Operation) {
    const current = operation.value;
    if (!current || op.id !== current.id) return;
    // Once finished it stays finished; an older running snapshot never goes back in time.
    if (current.state !== 'running') return;
    if (op.state === 'running' && op.updatedAt < current.updatedAt) return;
    operation.value = { ...current, ...op, progress: Math.max(current.progress ?? 0, op.progress ?? 0) };
    if (op.state !== 'running') {
      clearTimeout(timer);
      options.onFinished?.(operation.value);
    }
  }

  async function poll() {
    const current = operation.value;
    if (!current || current.state !== 'running') return;
    const mine = generation;
    try {
      const op = await getOperation(current.id);
      if (mine === generation) apply(op);
    } catch {
      /* the stream may still bring it; try again */
    }
    if (mine === generation && operation.value?.state === 'running') {
      clearTimeout(timer);
      timer = setTimeout(() => void poll(), POLL_MS);
    }
  }

  const topic = computed(() => (operation.value?.state === 'running' ? 'operations' : null));
  useStream<Operation>(
    topic,
    (event: StreamEvent<Operation>) => {
      if (event.payload?.id) apply(event.payload);
    },
    { onReset: () => void poll() },
  );

  /** Send the request that starts the operation, then follow it. Resolves false when the request was refused. */
  async function start(request: () => Promise<{ operation: Operation }>): Promise<boolean> {
    reset();
    starting.value = true;
    const mine = generation;
    try {
      const { operation: op } = await request();
      if (mine !== generation) return false;
      operation.value = op;
      if (op.state !== 'running') options.onFinished?.(op);
      // It may have moved on (or finished) before the subscription started: read it back soon.
      else timer = setTimeout(() => void poll(), 600);
      return true;
    } catch (e) {
      if (mine === generation) startError.value = e;
      return false;
    } finally {
      if (mine === generation) starting.value = false;
    }
  }

  /** Stop following (the operation itself goes on). */
  function reset() {
    generation++;
    clearTimeout(timer);
    operation.value = undefined;
    startError.value = undefined;
    starting.value = false;
  }

  onScopeDispose(() => {
    generation++;
    clearTimeout(timer);
  });

  return { operation, starting, startError, running, finished, percent, start, reset };
}
