import { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } from 'tapable';
import type { ExtensionPointRef, HookKind, HookRef, HookRegistry, TapFn, TapOptions } from '@aiplat/plugin-sdk';

// tapable compiles hooks for a fixed argument list; four covers every hook we define.
const ARGS = ['a0', 'a1', 'a2', 'a3'] as unknown as readonly string[] & { 0: string; length: 1 };

type AnyHook = {
  tap?: (options: { name: string; stage?: number }, fn: (...args: unknown[]) => unknown) => void;
  tapPromise?: (options: { name: string; stage?: number }, fn: (...args: unknown[]) => Promise<unknown>) => void;
  promise?: (...args: unknown[]) => Promise<unknown>;
  call?: (...args: unknown[]) => unknown;
  isUsed(): boolean;
};

function createHook(kind: HookKind): AnyHook {
  switch (kind) {
    case 'series':
      return new AsyncSeriesHook(ARGS) as unknown as AnyHook;
    case 'parallel':
      return new AsyncParallelHook(ARGS) as unknown as AnyHook;
    case 'waterfall':
      return new AsyncSeriesWaterfallHook(ARGS) as unknown as AnyHook;
    case 'bail':
      return new AsyncSeriesBailHook(ARGS) as unknown as AnyHook;
    case 'sync':
      return new SyncHook(ARGS) as unknown as AnyHook;
  }
}

interface DeclaredHook {
  owner: string;
  kind: HookKind;
  hook: AnyHook;
}

interface Contribution {
  owner: string;
  item: unknown;
  isCurrent: () => boolean;
}

/** Who is running: taps and contributions of owners that are not active are skipped. */
export type ActiveCheck = (owner: string) => boolean;

export class HookRegistryError extends Error {}

/**
 * Hooks and extension points over tapable. Each tap is guarded by its owner's state, because
 * tapable cannot untap: a disabled plugin's taps pass through from the moment it is disabled.
 */
export class KernelHooks implements HookRegistry {
  private readonly hooks = new Map<string, DeclaredHook>();
  private readonly points = new Map<string, { owner: string; items: Contribution[] }>();

  constructor(private readonly isActive: ActiveCheck) {}

  declareHook(ref: HookRef<any[], any>, owner: string): void {
    const existing = this.hooks.get(ref.id);
    // A plugin loaded again (an upgrade or a rollback) declares its hooks again: the hook, and
    // the taps other plugins made on it, stay.
    if (existing && existing.owner === owner && existing.kind === ref.kind) return;
    if (existing) throw new HookRegistryError(`hook "${ref.id}" is already declared by ${existing.owner}`);
    this.hooks.set(ref.id, Object.freeze({ owner, kind: ref.kind, hook: createHook(ref.kind) }));
  }

  declareExtensionPoint(ref: ExtensionPointRef<any>, owner: string): void {
    const existing = this.points.get(ref.id);
    if (existing && existing.owner === owner) return;
    if (existing) throw new HookRegistryError(`extension point "${ref.id}" is already declared by ${existing.owner}`);
    this.points.set(ref.id, { owner, items: [] });
  }

  hookOwner(id: string): string | undefined {
    return this.hooks.get(id)?.owner ?? this.points.get(id)?.owner;
  }

  /**
   * `isCurrent` tells whether the tap still belongs to the loaded version of its plugin: after an
   * upgrade or a rollback the earlier version's taps pass through even while the plugin runs.
   */
  tap<TArgs extends unknown[], TResult>(
    ref: HookRef<TArgs, TResult>,
    owner: string,
    fn: NoInfer<TapFn<TArgs, TResult>>,
    options: TapOptions = {},
    isCurrent: () => boolean = () => true,
  ): void {
    const declared = this.hooks.get(ref.id);
    if (!declared) throw new HookRegistryError(`hook "${ref.id}" is not declared: the plugin that owns it must be a dependency`);
    if (declared.kind !== ref.kind) throw new HookRegistryError(`hook "${ref.id}" is a ${declared.kind} hook, not ${ref.kind}`);
    const tapOptions = { name: options.name ?? owner, ...(options.stage === undefined ? {} : { stage: options.stage }) };
    const call = fn as (...args: unknown[]) => unknown;
    const { hook, kind } = declared;
    if (kind === 'sync') {
      hook.tap!(tapOptions, (...args) => {
        if (this.isActive(owner) && isCurrent()) call(...args);
      });
      return;
    }
    hook.tapPromise!(tapOptions, async (...args) => {
      if (!this.isActive(owner) || !isCurrent()) return kind === 'waterfall' ? args[0] : undefined;
      return call(...args);
    });
  }

  contribute<T>(ref: ExtensionPointRef<T>, owner: string, item: T, isCurrent: () => boolean = () => true): void {
    const point = this.points.get(ref.id);
    if (!point) throw new HookRegistryError(`extension point "${ref.id}" is not declared: the plugin that owns it must be a dependency`);
    point.items.push({ owner, item, isCurrent });
    // Items of a version that is no longer loaded are dropped here (they would never show again).
    point.items = point.items.filter((c) => c.isCurrent());
  }

  async call<TArgs extends unknown[], TResult>(ref: HookRef<TArgs, TResult>, ...args: TArgs): Promise<TResult> {
    const declared = this.hooks.get(ref.id);
    if (!declared) throw new HookRegistryError(`hook "${ref.id}" is not declared`);
    if (declared.kind === 'sync') {
      declared.hook.call!(...args);
      return undefined as TResult;
    }
    if (!declared.hook.isUsed()) return (declared.kind === 'waterfall' ? args[0] : undefined) as TResult;
    return (await declared.hook.promise!(...args)) as TResult;
  }

  callSync<TArgs extends unknown[]>(ref: HookRef<TArgs, void>, ...args: TArgs): void {
    const declared = this.hooks.get(ref.id);
    if (!declared || declared.kind !== 'sync') throw new HookRegistryError(`hook "${ref.id}" is not a declared sync hook`);
    if (declared.hook.isUsed()) declared.hook.call!(...args);
  }

  isUsed(ref: { id: string }): boolean {
    return this.hooks.get(ref.id)?.hook.isUsed() ?? false;
  }

  contributions<T>(ref: ExtensionPointRef<T>): T[] {
    const point = this.points.get(ref.id);
    if (!point) return [];
    return point.items.filter((c) => this.isActive(c.owner) && c.isCurrent()).map((c) => c.item as T);
  }

  /** Who contributed an item to an extension point (a plugin id, or `core`). */
  contributorOf<T>(ref: ExtensionPointRef<T>, item: T): string | undefined {
    return this.points.get(ref.id)?.items.find((c) => c.item === item)?.owner;
  }

  has(ref: { id: string }): boolean {
    return this.hooks.has(ref.id) || this.points.has(ref.id);
  }
}
