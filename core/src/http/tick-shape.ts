/**
 * Keeps one of `process.nextTick`'s queue entries alive for the life of the process, so that its
 * hidden class is never collected (docs/adr/0014).
 *
 * Node (20, and 24 alike) builds each nextTick entry as an object literal with two computed symbol
 * keys. V8 finds the hidden class of each step (`{}` → async id → trigger id → callback → args)
 * through the transition tree, which holds those classes weakly. When a full garbage collection finds no entry alive, the
 * classes go, and the next call makes new ones. Each time that happens, the store ICs in
 * `nextTick` see one more class; after a few they are megamorphic for good, and every entry is then
 * built through the runtime. A process that collects often while it starts (the core does, about a
 * dozen full collections before it listens) pays that on every `nextTick` afterwards: about 0.4 µs
 * each, nine per HTTP request, 4 µs of a read request's 50.
 *
 * One entry kept alive keeps its whole chain of classes alive (a class holds its parent), so the
 * ICs stay monomorphic. The entry is taken with an async hook enabled for a single `nextTick` call.
 * It must run before the collections do: the core's entry point imports this module first.
 */
import { createHook } from 'node:async_hooks';

let kept: object | undefined;

/** Take one nextTick entry and keep it (once; later calls do nothing). True when one is kept. */
export function keepTickShape(): boolean {
  if (kept) return true;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && kept === undefined) kept = resource;
    },
  });
  hook.enable();
  try {
    process.nextTick(() => {});
  } finally {
    hook.disable();
  }
  return kept !== undefined;
}

keepTickShape();
