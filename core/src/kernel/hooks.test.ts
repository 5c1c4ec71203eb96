import { describe, expect, it } from 'vitest';
import { defineBailHook, defineExtensionPoint, defineSeriesHook, defineSyncHook, defineWaterfallHook } from '@aiplat/plugin-sdk';
import { KernelHooks } from './hooks.js';

describe('KernelHooks', () => {
  it('runs waterfall taps in order and skips taps of inactive owners at once', async () => {
    const active = new Set(['a', 'b']);
    const hooks = new KernelHooks((owner) => owner === 'core' || active.has(owner));
    const greeting = defineWaterfallHook<string, [{ name: string }]>('owner.greeting');
    hooks.declareHook(greeting, 'owner');
    hooks.tap(greeting, 'a', (value, ctx) => `${value}, ${ctx.name}`);
    hooks.tap(greeting, 'b', (value) => value.toUpperCase());
    expect(await hooks.call(greeting, 'Hello', { name: 'Ada' })).toBe('HELLO, ADA');
    active.delete('b');
    expect(await hooks.call(greeting, 'Hello', { name: 'Ada' })).toBe('Hello, Ada');
  });

  it('returns the first bail result and runs series taps by stage', async () => {
    const hooks = new KernelHooks(() => true);
    const pick = defineBailHook<[number], string>('core.pick');
    hooks.declareHook(pick, 'core');
    hooks.tap(pick, 'x', (n) => (n > 5 ? 'big' : undefined));
    hooks.tap(pick, 'y', () => 'fallback');
    expect(await hooks.call(pick, 9)).toBe('big');
    expect(await hooks.call(pick, 1)).toBe('fallback');

    const order: string[] = [];
    const series = defineSeriesHook<[]>('core.series');
    hooks.declareHook(series, 'core');
    hooks.tap(series, 'late', () => void order.push('late'), { stage: 10 });
    hooks.tap(series, 'early', () => void order.push('early'), { stage: -10 });
    await hooks.call(series);
    expect(order).toEqual(['early', 'late']);
  });

  it('refuses taps on undeclared hooks and double declarations, naming them', () => {
    const hooks = new KernelHooks(() => true);
    const ref = defineSyncHook<[string]>('other.thing');
    expect(() => hooks.tap(ref, 'x', () => undefined)).toThrow('hook "other.thing" is not declared: the plugin that owns it must be a dependency');
    hooks.declareHook(ref, 'other');
    expect(() => hooks.declareHook(ref, 'again')).toThrow('hook "other.thing" is already declared by other');
  });

  it('lists contributions of active owners only', () => {
    const active = new Set(['docker', 'k8s']);
    const hooks = new KernelHooks((owner) => active.has(owner));
    const executors = defineExtensionPoint<{ id: string }>('scheduler.executors');
    hooks.declareExtensionPoint(executors, 'core');
    hooks.contribute(executors, 'docker', { id: 'docker' });
    hooks.contribute(executors, 'k8s', { id: 'kubernetes' });
    expect(hooks.contributions(executors).map((e) => e.id)).toEqual(['docker', 'kubernetes']);
    active.delete('k8s');
    expect(hooks.contributions(executors).map((e) => e.id)).toEqual(['docker']);
  });

  it('after an upgrade, only the loaded version taps and contributes; its hooks may be declared again', async () => {
    let generation = 1;
    const hooks = new KernelHooks(() => true);
    const greeting = defineWaterfallHook<string, []>('notes.greeting');
    const points = defineExtensionPoint<{ v: number }>('notes.things');
    hooks.declareHook(greeting, 'notes');
    hooks.declareExtensionPoint(points, 'notes');
    const v1 = () => generation === 1;
    hooks.tap(greeting, 'notes', (value) => `${value} v1`, {}, v1);
    hooks.contribute(points, 'notes', { v: 1 }, v1);
    hooks.tap(greeting, 'other', (value) => `${value} other`);
    expect(await hooks.call(greeting, 'hi')).toBe('hi v1 other');

    generation = 2;
    const v2 = () => generation === 2;
    // The same owner declares again (the new version's register): no error, other plugins' taps stay.
    hooks.declareHook(greeting, 'notes');
    hooks.declareExtensionPoint(points, 'notes');
    hooks.tap(greeting, 'notes', (value) => `${value} v2`, {}, v2);
    hooks.contribute(points, 'notes', { v: 2 }, v2);
    expect(await hooks.call(greeting, 'hi')).toBe('hi other v2');
    expect(hooks.contributions(points)).toEqual([{ v: 2 }]);
    expect(() => hooks.declareHook(greeting, 'someone-else')).toThrow('already declared by notes');
  });
});
