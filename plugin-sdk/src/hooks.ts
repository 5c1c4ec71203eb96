/**
 * Hooks and extension points. Both are owned by exactly one party (the core or one plugin)
 * that declares them; others tap or contribute. Taps of a disabled plugin stop at once.
 *
 * - A hook is a typed tapable hook: `series` and `parallel` (async, no result), `waterfall`
 *   (async; each tap receives the previous value and returns the next), `bail` (async; the
 *   first tap returning something other than undefined wins), `sync` (synchronous, no result).
 * - An extension point is a collection: plugins contribute implementations (an executor,
 *   a device provider, a serving runtime) and the owner lists the contributions of enabled plugins.
 */

export type HookKind = 'series' | 'parallel' | 'waterfall' | 'bail' | 'sync';

export interface HookRef<TArgs extends unknown[], TResult> {
  readonly id: string;
  readonly kind: HookKind;
  readonly $args?: TArgs;
  readonly $result?: TResult;
}

export interface ExtensionPointRef<T> {
  readonly id: string;
  readonly $item?: T;
}

const OWNED_ID = /^[a-z][a-z0-9-]*(\.[a-zA-Z][a-zA-Z0-9-]*)+$/;

function checkId(kind: string, id: string): void {
  if (!OWNED_ID.test(id)) throw new Error(`${kind} id "${id}" must look like "<owner>.<name>", e.g. "hello.greeting"`);
}

export function defineSeriesHook<TArgs extends unknown[]>(id: string): HookRef<TArgs, void> {
  checkId('hook', id);
  return Object.freeze({ id, kind: 'series' as const });
}
export function defineParallelHook<TArgs extends unknown[]>(id: string): HookRef<TArgs, void> {
  checkId('hook', id);
  return Object.freeze({ id, kind: 'parallel' as const });
}
export function defineSyncHook<TArgs extends unknown[]>(id: string): HookRef<TArgs, void> {
  checkId('hook', id);
  return Object.freeze({ id, kind: 'sync' as const });
}
/** Each tap receives the current value (and the extra arguments) and returns the next value. */
export function defineWaterfallHook<TValue, TExtra extends unknown[] = []>(
  id: string,
): HookRef<[TValue, ...TExtra], TValue> {
  checkId('hook', id);
  return Object.freeze({ id, kind: 'waterfall' as const });
}
/** The first tap that returns something other than undefined decides. */
export function defineBailHook<TArgs extends unknown[], TResult>(id: string): HookRef<TArgs, TResult | undefined> {
  checkId('hook', id);
  return Object.freeze({ id, kind: 'bail' as const });
}

export function defineExtensionPoint<T>(id: string): ExtensionPointRef<T> {
  checkId('extension point', id);
  return Object.freeze({ id });
}

export type TapFn<TArgs extends unknown[], TResult> = (...args: TArgs) => TResult | Promise<TResult>;

export interface TapOptions {
  /** Shown in diagnostics; defaults to the tapping plugin's id. */
  name?: string;
  /** Lower stages run first (tapable semantics). */
  stage?: number;
}

/** The run-time view of hooks and extension points. */
export interface HookRegistry {
  /** Run a hook. Only its owner should call it. */
  call<TArgs extends unknown[], TResult>(ref: HookRef<TArgs, TResult>, ...args: TArgs): Promise<TResult>;
  /** Run a `sync` hook. */
  callSync<TArgs extends unknown[]>(ref: HookRef<TArgs, void>, ...args: TArgs): void;
  /** The contributions of enabled plugins (and the core) to an extension point, in start order. */
  contributions<T>(ref: ExtensionPointRef<T>): T[];
  /** Whether the hook or extension point has been declared. */
  has(ref: { id: string }): boolean;
}

export interface PluginLifecycleEvent {
  id: string;
  version: string;
}

export interface RequestFinishedEvent {
  method: string;
  /** The route template, e.g. `/api/plugins/hello/greeting`. */
  route: string;
  status: number;
  durationMs: number;
  plugin?: string;
  requestId: string;
}

/** Hooks the core owns. */
export const coreHooks = {
  pluginStarted: defineSeriesHook<[PluginLifecycleEvent]>('core.pluginStarted'),
  pluginStopped: defineSeriesHook<[PluginLifecycleEvent]>('core.pluginStopped'),
  requestFinished: defineSyncHook<[RequestFinishedEvent]>('core.requestFinished'),
} as const;
