/**
 * `coreServices.rateLimiter`: budgets per key and fixed window, counted by rate-limiter-flexible in
 * Redis when the core has `REDIS_URL` (every core process sees the same counts), in memory
 * otherwise. One counter per (window, key); the limit is the caller's to compare, so a budget whose
 * limit changes keeps its count.
 */
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';
import type { RateDecision, RateLimiter } from '@aiplat/plugin-sdk';

/** The count never refuses by itself: the decision compares it with the caller's limit. */
const UNBOUNDED = Number.MAX_SAFE_INTEGER;

export class RateLimits {
  private readonly counters = new Map<number, RateLimiterAbstract>();

  constructor(private readonly redis: Redis | undefined) {}

  get shared(): boolean {
    return this.redis !== undefined;
  }

  private counter(windowSeconds: number): RateLimiterAbstract {
    const window = Math.max(1, Math.round(windowSeconds));
    let counter = this.counters.get(window);
    if (!counter) {
      const options = { points: UNBOUNDED, duration: window, keyPrefix: `aiplat:rl:${window}` };
      counter = this.redis ? new RateLimiterRedis({ ...options, storeClient: this.redis }) : new RateLimiterMemory(options);
      this.counters.set(window, counter);
    }
    return counter;
  }

  /** The limiter a plugin gets: its keys under its own id. */
  forOwner(owner: string): RateLimiter {
    const key = (k: string) => `${owner}:${k}`;
    return {
      shared: this.shared,
      take: async (k, cost, limit, windowSeconds) => {
        const counter = this.counter(windowSeconds);
        const res = await counter.consume(key(k), cost).catch(rethrowStoreError);
        if (res.consumedPoints <= limit) return decision(res, limit, true);
        // Over: give it back, so a refused request costs nothing.
        const back = await counter.reward(key(k), cost);
        return decision(back, limit, false);
      },
      spend: async (k, cost, limit, windowSeconds) => {
        const res = await this.counter(windowSeconds).penalty(key(k), cost);
        return decision(res, limit, res.consumedPoints < limit);
      },
      peek: async (k, limit, windowSeconds) => {
        const res = await this.counter(windowSeconds).get(key(k));
        if (!res) return { allowed: limit > 0, used: 0, remaining: limit, resetMs: 0 };
        return decision(res, limit, res.consumedPoints < limit);
      },
    };
  }
}

function decision(res: RateLimiterRes, limit: number, allowed: boolean): RateDecision {
  const used = Math.max(0, res.consumedPoints);
  return { allowed, used, remaining: Math.max(0, limit - used), resetMs: Math.max(0, res.msBeforeNext) };
}

/** rate-limiter-flexible rejects with its result when points run out (never here) and with an Error when the store fails. */
function rethrowStoreError(err: unknown): never {
  if (err instanceof RateLimiterRes) throw new Error('rate limiter refused an unbounded budget');
  throw err;
}
