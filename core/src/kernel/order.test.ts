import { describe, expect, it } from 'vitest';
import { dependentsClosure, planStartOrder, type PlanNode } from './order.js';

const node = (id: string, requires: Record<string, string> = {}, optional: Record<string, string> = {}, version = '1.0.0'): PlanNode => ({
  id,
  version,
  requires,
  optional,
});

describe('planStartOrder', () => {
  it('starts every plugin after its dependencies', () => {
    const plan = planStartOrder([node('c', { b: '^1' }), node('b', { a: '^1' }), node('a')]);
    expect(plan.order).toEqual(['a', 'b', 'c']);
    expect(plan.failed.size).toBe(0);
  });

  it('orders after present optional dependencies and ignores absent ones', () => {
    const plan = planStartOrder([node('a', {}, { z: '^1', b: '^1' }), node('b')]);
    expect(plan.order).toEqual(['b', 'a']);
  });

  it('fails a plugin with a missing dependency, naming it and the range', () => {
    const plan = planStartOrder([node('a', { ghost: '^2.0.0' }), node('b')]);
    expect(plan.failed.get('a')).toBe('missing dependency "ghost" (needs ^2.0.0)');
    expect(plan.order).toEqual(['b']);
  });

  it('fails a plugin whose dependency has an incompatible version', () => {
    const plan = planStartOrder([node('a', { b: '^2.0.0' }), node('b', {}, {}, '1.4.0')]);
    expect(plan.failed.get('a')).toBe('needs "b" ^2.0.0, but b 1.4.0 is installed');
  });

  it('names every member of a cycle and fails what depends on it', () => {
    const plan = planStartOrder([node('a', { b: '^1' }), node('b', { c: '^1' }), node('c', { a: '^1' }), node('d', { a: '^1' }), node('e')]);
    expect(plan.failed.get('a')).toBe('dependency cycle: a → b → c → a');
    expect(plan.failed.get('b')).toBe('dependency cycle: a → b → c → a');
    expect(plan.failed.get('c')).toBe('dependency cycle: a → b → c → a');
    expect(plan.failed.get('d')).toBe('depends on failed plugin "a"');
    expect(plan.order).toEqual(['e']);
  });

  it('propagates failure through chains of dependents', () => {
    const plan = planStartOrder([node('a', { ghost: '^1' }), node('b', { a: '^1' }), node('c', { b: '^1' })]);
    expect(plan.failed.get('b')).toBe('depends on failed plugin "a"');
    expect(plan.failed.get('c')).toBe('depends on failed plugin "b"');
  });
});

describe('dependentsClosure', () => {
  it('lists transitive dependents, deepest first', () => {
    const requires: Record<string, string[]> = { a: [], b: ['a'], c: ['b'], d: [] };
    expect(dependentsClosure('a', (id) => requires[id]!, Object.keys(requires))).toEqual(['c', 'b']);
  });
});
