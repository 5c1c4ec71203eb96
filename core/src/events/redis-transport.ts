import type { Redis } from 'ioredis';
import type { EventAudience, Logger } from '@aiplat/plugin-sdk';
import { decodeMessage, encodeBody, type BusEvent } from './event.js';
import { DEFAULT_RETENTION, type ReadResult, type Retention, type Transport } from './transport.js';

/**
 * INCR the topic's sequence, keep the event in its replay list (trimmed to the newest N), refresh
 * both keys' expiry and PUBLISH it, all in one script: Redis runs scripts one at a time, so the
 * order of sequence numbers is the order in which subscribers receive the events.
 * KEYS: sequence, list. ARGV: channel, body, kept per topic, idle seconds.
 */
const PUBLISH_SCRIPT = `
local seq = redis.call('INCR', KEYS[1])
local message = seq .. '\\n' .. ARGV[2]
redis.call('RPUSH', KEYS[2], message)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], message)
return seq
`;

/**
 * The latest sequence, the oldest kept one and up to `limit` kept events after `since`. Every
 * INCR comes with an RPUSH and trimming only removes the oldest, so the list holds consecutive
 * sequence numbers ending at the latest. KEYS: sequence, list. ARGV: since, limit.
 */
const READ_SCRIPT = `
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local kept = redis.call('LLEN', KEYS[2])
local first = latest - kept + 1
local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local items = {}
if limit > 0 and since < latest and kept > 0 then
  local start = since + 1 - first
  if start < 0 then start = 0 end
  items = redis.call('LRANGE', KEYS[2], start, start + limit - 1)
end
return {latest, first, items}
`;

type ScriptedRedis = Redis & {
  aiplatEventsPublish(seqKey: string, listKey: string, channel: string, body: string, perTopic: number, idleSeconds: number): Promise<number>;
  aiplatEventsRead(seqKey: string, listKey: string, since: number, limit: number): Promise<[number, number, string[]]>;
};

/**
 * Sequence numbers, replay and delivery through Redis, shared by every core process of one
 * installation: a subscriber on one process receives what another publishes. Pub/sub needs a
 * connection of its own, so this duplicates the core's connection for subscribing.
 */
export class RedisTransport implements Transport {
  readonly kind = 'redis';
  private readonly commands: ScriptedRedis;
  private readonly subscriber: Redis;
  private readonly channelPrefix: string;
  private onEvent: (event: BusEvent) => void = () => undefined;
  private onResync: () => void = () => undefined;
  private readyOnce = false;
  private closed = false;

  /**
   * @param redis the core's command connection (scripts are defined on it)
   * @param namespace keeps installations sharing one Redis apart (the installation's id)
   */
  constructor(
    redis: Redis,
    private readonly namespace: string,
    private readonly logger: Logger,
    private readonly retention: Retention = DEFAULT_RETENTION,
  ) {
    redis.defineCommand('aiplatEventsPublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    redis.defineCommand('aiplatEventsRead', { numberOfKeys: 2, lua: READ_SCRIPT });
    this.commands = redis as ScriptedRedis;
    this.channelPrefix = `aiplat:${namespace}:events:`;
    this.subscriber = redis.duplicate({ connectionName: 'aiplat-events', lazyConnect: true, maxRetriesPerRequest: null, autoResubscribe: true });
    this.subscriber.on('error', (error: Error) => this.logger.warn({ err: error.message }, 'redis event subscriber connection problem'));
    this.subscriber.on('message', (channel: string, message: string) => {
      if (!channel.startsWith(this.channelPrefix)) return;
      const topic = channel.slice(this.channelPrefix.length);
      const event = decodeMessage(topic, message);
      if (event) this.onEvent(event);
      else this.logger.warn({ topic }, 'ignored a malformed event message from redis');
    });
    // After a reconnect ioredis subscribes again; what was published meanwhile is read back from the lists.
    this.subscriber.on('ready', () => {
      if (this.readyOnce && !this.closed) {
        this.logger.info('redis event subscriber reconnected: catching up from the replay lists');
        this.onResync();
      }
      this.readyOnce = true;
    });
  }

  async start(): Promise<void> {
    await this.subscriber.connect();
  }

  private keys(topic: string): [string, string] {
    // One hash tag per topic keeps both keys in one slot on Redis Cluster.
    const base = `aiplat:${this.namespace}:ev:{${topic}}`;
    return [`${base}:seq`, `${base}:log`];
  }

  connect(onEvent: (event: BusEvent) => void, onResync: () => void): void {
    this.onEvent = onEvent;
    this.onResync = onResync;
  }

  async publish(topic: string, at: string, audience: EventAudience | undefined, payloadJson: string): Promise<number> {
    const [seqKey, listKey] = this.keys(topic);
    const seq = await this.commands.aiplatEventsPublish(
      seqKey,
      listKey,
      this.channelPrefix + topic,
      encodeBody(at, audience, payloadJson),
      this.retention.perTopic,
      this.retention.idleSeconds,
    );
    return Number(seq);
  }

  async read(topic: string, since: number, limit: number): Promise<ReadResult> {
    const [seqKey, listKey] = this.keys(topic);
    const [latest, first, items] = await this.commands.aiplatEventsRead(seqKey, listKey, since, limit);
    const events: BusEvent[] = [];
    for (const item of items) {
      const event = decodeMessage(topic, item);
      if (event) events.push(event);
    }
    return { latest: Number(latest), first: Number(first), events };
  }

  async listen(topic: string): Promise<void> {
    await this.subscriber.subscribe(this.channelPrefix + topic);
  }

  unlisten(topic: string): void {
    if (this.closed) return;
    this.subscriber.unsubscribe(this.channelPrefix + topic).catch((error: Error) => this.logger.warn({ err: error.message, topic }, 'redis unsubscribe failed'));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscriber.disconnect();
  }
}
