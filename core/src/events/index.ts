import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';
import type { Logger } from '@aiplat/plugin-sdk';
import { EventHub } from './hub.js';
import { RedisTransport } from './redis-transport.js';
import { DEFAULT_RETENTION, MemoryTransport, type Retention } from './transport.js';

export { EventHub, ScopedEventBus, MAX_PAYLOAD_BYTES } from './hub.js';
export { StreamServer, STREAM_PATH, CLOSE_SLOW_CONSUMER, DEFAULT_STREAM_LIMITS, type StreamLimits } from './stream.js';
export { StreamTickets, TICKET_TTL_SECONDS } from './tickets.js';
export { streamRoutes } from './routes.js';
export { canSee } from './audience.js';
export { EventUsageError } from './topics.js';
export { DEFAULT_RETENTION, MemoryTransport, type Retention } from './transport.js';
export { RedisTransport } from './redis-transport.js';

/**
 * The installation's event namespace in Redis: made once and kept in the database, so every
 * core process of one installation shares it and installations sharing a Redis stay apart.
 */
export async function eventNamespace(db: Knex): Promise<string> {
  await db('settings')
    .insert({ key: 'events.namespace', value: JSON.stringify(randomBytes(6).toString('hex')) })
    .onConflict('key')
    .ignore();
  const row = (await db('settings').where({ key: 'events.namespace' }).first('value')) as { value: string };
  return typeof row.value === 'string' ? row.value : String(row.value);
}

/** The event hub: through Redis when the core has a connection to it, else in this process. */
export async function createEventHub(options: { db: Knex; redis?: Redis; logger: Logger; retention?: Partial<Retention> }): Promise<EventHub> {
  const retention = { ...DEFAULT_RETENTION, ...options.retention };
  if (!options.redis) return new EventHub(new MemoryTransport(retention), options.logger);
  const transport = new RedisTransport(options.redis, await eventNamespace(options.db), options.logger, retention);
  await transport.start();
  return new EventHub(transport, options.logger);
}
