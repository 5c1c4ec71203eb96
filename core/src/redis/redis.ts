import { Redis } from 'ioredis';
import type { Logger } from '@aiplat/plugin-sdk';

/** Connect to REDIS_URL, failing the start with a clear message when it cannot be reached. */
export async function connectRedis(url: string, logger: Logger, name = 'aiplat'): Promise<Redis> {
  const redis = new Redis(url, { connectionName: name, maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', (error: Error) => logger.warn({ err: error.message }, 'redis connection problem'));
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref()),
    ]);
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:••••@')}: ${(error as Error).message}`, { cause: error });
  }
  return redis;
}
