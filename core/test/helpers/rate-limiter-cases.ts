import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import type { RateLimits } from '../../src/limits/rate-limiter.js';

/**
 * What a rate limiter must do, whatever counts: `make` answers one limiter and, where the counts
 * are shared (Redis), a second one standing for another core process (else undefined).
 */
export function rateLimiterCases(make: () => [RateLimits, RateLimits | undefined]): void {
  it('takes from a budget until it is spent, refuses without taking, and says when it refills', async () => {
    const limiter = make()[0].forOwner('serving');
    const key = `k-${randomUUID()}`;
    const taken = [];
    for (let i = 0; i < 4; i++) taken.push(await limiter.take(key, 1, 3, 60));
    expect(taken.map((t) => t.allowed)).toEqual([true, true, true, false]);
    expect(taken.map((t) => t.remaining)).toEqual([2, 1, 0, 0]);
    expect(taken[3]!.used).toBe(3);
    expect(taken[3]!.resetMs).toBeGreaterThan(55_000);
    expect(taken[3]!.resetMs).toBeLessThanOrEqual(60_000);
    // A refused take took nothing: a cost that fits still fits... none does here; peek agrees.
    expect(await limiter.peek(key, 3, 60)).toMatchObject({ allowed: false, used: 3, remaining: 0 });
    // A bigger budget under the same key sees the same count.
    expect(await limiter.take(key, 2, 5, 60)).toMatchObject({ allowed: true, used: 5, remaining: 0 });
  });

  it('counts costs known afterwards past the limit, and peeks without taking', async () => {
    const limiter = make()[0].forOwner('serving');
    const key = `t-${randomUUID()}`;
    expect(await limiter.peek(key, 20, 60)).toMatchObject({ allowed: true, used: 0, remaining: 20 });
    expect(await limiter.spend(key, 12, 20, 60)).toMatchObject({ allowed: true, used: 12, remaining: 8 });
    expect(await limiter.spend(key, 12, 20, 60)).toMatchObject({ allowed: false, used: 24, remaining: 0 });
    expect(await limiter.peek(key, 20, 60)).toMatchObject({ allowed: false, used: 24 });
    expect(await limiter.peek(key, 20, 60)).toMatchObject({ used: 24 });
  });

  it('keeps plugins’ keys apart and windows apart, and starts afresh when the window ends', async () => {
    const limits = make()[0];
    const key = `w-${randomUUID()}`;
    await limits.forOwner('a').take(key, 2, 2, 60);
    expect((await limits.forOwner('a').take(key, 1, 2, 60)).allowed).toBe(false);
    expect((await limits.forOwner('b').take(key, 1, 2, 60)).allowed).toBe(true);
    expect((await limits.forOwner('a').take(key, 1, 2, 1)).allowed).toBe(true);
    expect((await limits.forOwner('a').take(key, 1, 1, 1)).allowed).toBe(false);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await limits.forOwner('a').take(key, 1, 1, 1)).allowed).toBe(true);
  });

  it('shares the counts between processes when they share a store', async () => {
    const [one, two] = make();
    const key = `s-${randomUUID()}`;
    await one.forOwner('serving').take(key, 2, 3, 60);
    const other = await (two ?? one).forOwner('serving').take(key, 2, 3, 60);
    // Shared (Redis): the second process sees the first one's 2 → refused. In memory, one process only.
    expect(other).toMatchObject({ allowed: false, used: 2 });
  });
}
