// coreServices.rateLimiter with REDIS_URL: the memory cases again, counted in Redis and shared by
// two limiters as by two core processes behind one load balancer. Needs Redis (TEST_REDIS_URL,
// else redis://127.0.0.1:6379): runs in the server pass of `npm test`, which provisions it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RateLimits } from '../src/limits/rate-limiter.js';
import { rateLimiterCases } from './helpers/rate-limiter-cases.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
let a: Redis;
let b: Redis;

describe('rate limits in Redis', () => {
  beforeAll(() => {
    a = new Redis(REDIS_URL);
    b = new Redis(REDIS_URL);
  });
  afterAll(() => {
    a.disconnect();
    b.disconnect();
  });

  rateLimiterCases(() => [new RateLimits(a), new RateLimits(b)]);

  it('says it is shared, and keeps its counts under aiplat:rl:', async () => {
    const limits = new RateLimits(a);
    expect(limits.forOwner('p').shared).toBe(true);
    await limits.forOwner('p').take('visible-key', 1, 5, 60);
    expect(await a.exists('aiplat:rl:60:p:visible-key')).toBe(1);
    await a.del('aiplat:rl:60:p:visible-key');
  });
});
