// coreServices.rateLimiter in memory (no REDIS_URL): fixed-window budgets per plugin and key.
// The same cases against Redis, shared by two limiters as by two core processes: rate-limiter-redis.services.test.ts.
import { describe, expect, it } from 'vitest';
import { RateLimits } from '../src/limits/rate-limiter.js';
import { rateLimiterCases } from './helpers/rate-limiter-cases.js';

describe('rate limits in memory', () => {
  rateLimiterCases(() => [new RateLimits(undefined), undefined]);

  it('says it is not shared', () => {
    expect(new RateLimits(undefined).forOwner('p').shared).toBe(false);
  });
});
