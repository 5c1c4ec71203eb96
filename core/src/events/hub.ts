import type { EventAudience, EventBus, EventGap, EventSubscription, Logger, StreamEvent } from '@aiplat/plugin-sdk';
import { normaliseAudience } from './audience.js';
import type { BusEvent } from './event.js';
import { checkPublishTopic, EventUsageError, topicProblem } from './topics.js';
import type { Transport } from './transport.js';

/** Largest payload accepted, as JSON: events are notifications; bulk data goes to storage with a reference in the event. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Events read from the replay store per round trip. */
const PAGE = 500;
/** Live events held for a subscriber while it replays; past this they are dropped and read from the store again. */
const PENDING_MAX = 2_000;

/** What a subscription tells its owner, in order: its start, then gaps and events as they come. */
export interface SubscriptionListener {
  /** Once, before anything else: the topic's latest sequence number when the subscription started. */
  onStart?(latest: number): void;
  onEvent(event: BusEvent): void;
  /** Events that can no longer be replayed (`gap`), or a cursor ahead of the topic (`reset`). */
  onGap?(gap: EventGap): void;
  /** The subscription could not start (e.g. Redis did not answer); it is over. */
  onError?(error: Error): void;
  /** Replay pauses while this says false, until `waitCapacity` resolves (slow WebSocket clients). */
  hasCapacity?(): boolean;
  waitCapacity?(): Promise<void>;
}

interface TopicEntry {
  subscriptions: Set<Subscription>;
  listening: Promise<void>;
}

/**
 * One subscriber of one topic. It delivers each event once, in sequence order, from `since` on:
 * first what the store still keeps (paused by the listener's capacity), then live events, which
 * are held while the replay runs. A live event that skips a number (a Redis reconnect) sends it
 * back to the store to fill the hole, or to report it as a gap.
 */
class Subscription {
  /** The last sequence number handled (delivered or reported as lost). */
  private last = 0;
  private mode: 'starting' | 'catching-up' | 'live' = 'starting';
  private pending: BusEvent[] = [];
  private overflowed = false;
  closed = false;

  constructor(
    private readonly hub: EventHub,
    readonly topic: string,
    private readonly listener: SubscriptionListener,
  ) {}

  async start(listening: Promise<void>, since: number | undefined): Promise<void> {
    try {
      await listening;
      if (this.closed) return;
      if (since === undefined) {
        const { latest } = await this.hub.transport.read(this.topic, 0, 0);
        if (this.closed) return;
        // Events that arrived since subscribe() was called were published after it: deliver them.
        const held = this.overflowed ? undefined : this.pending[0];
        this.last = held && held.seq - 1 < latest ? held.seq - 1 : latest;
        this.listener.onStart?.(this.last);
        this.goLive();
      } else {
        this.last = since;
        await this.catchUp(true);
      }
    } catch (error) {
      if (this.closed) return;
      this.hub.dropSubscription(this);
      this.closed = true;
      this.hub.reportError(this.topic, error as Error);
      this.listener.onError?.(error as Error);
    }
  }

  /** A live event from the hub. */
  deliver(event: BusEvent): void {
    if (this.closed) return;
    if (this.mode !== 'live') {
      if (this.pending.length >= PENDING_MAX) {
        this.pending = [];
        this.overflowed = true;
      }
      this.pending.push(event);
      return;
    }
    if (event.seq <= this.last) return;
    if (event.seq > this.last + 1) {
      this.pending = [event];
      this.resync();
      return;
    }
    this.last = event.seq;
    this.emit(event);
  }

  /** Read what was published since the last event handled (after a reconnect to Redis, or a hole). */
  resync(): void {
    if (this.closed || this.mode !== 'live') return;
    this.mode = 'catching-up';
    this.catchUp(false).catch((error: Error) => {
      if (this.closed) return;
      this.hub.reportError(this.topic, error);
      // Stay subscribed (events wait in `pending`) and try again in a second.
      setTimeout(() => {
        if (!this.closed) this.goLive();
      }, 1000).unref();
    });
  }

  private async catchUp(first: boolean): Promise<void> {
    this.mode = 'catching-up';
    for (;;) {
      this.overflowed = false;
      const page = await this.hub.transport.read(this.topic, this.last, PAGE);
      if (this.closed) return;
      if (first) {
        first = false;
        this.listener.onStart?.(page.latest);
      }
      if (this.last > page.latest) {
        // A cursor ahead of the topic: its numbering restarted (no Redis and the core restarted,
        // or the topic expired). Everything kept is new to this subscriber; the reset already says
        // that what came before is unknown, so no gap follows it.
        this.listener.onGap?.({ kind: 'reset', topic: this.topic, seq: page.latest });
        this.last = page.first - 1;
        continue;
      }
      if (page.latest > this.last && page.first > this.last + 1) {
        this.listener.onGap?.({ kind: 'gap', topic: this.topic, from: this.last + 1, to: page.first - 1 });
        this.last = page.first - 1;
      }
      const before = this.last;
      for (const event of page.events) {
        if (event.seq <= this.last) continue;
        if (this.listener.hasCapacity && !this.listener.hasCapacity()) {
          await this.listener.waitCapacity?.();
          if (this.closed) return;
        }
        this.last = event.seq;
        this.emit(event);
      }
      if (this.last === before && this.last < page.latest) {
        // Kept entries that cannot be read (written by something else): report them, do not spin.
        this.listener.onGap?.({ kind: 'gap', topic: this.topic, from: this.last + 1, to: page.latest });
        this.last = page.latest;
      }
      if (this.last >= page.latest && !this.overflowed) break;
    }
    this.goLive();
  }

  private goLive(): void {
    this.mode = 'live';
    const held = this.pending;
    this.pending = [];
    for (const event of held) this.deliver(event);
  }

  private emit(event: BusEvent): void {
    try {
      this.listener.onEvent(event);
    } catch (error) {
      this.hub.reportError(this.topic, error as Error);
    }
  }

  unsubscribe(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.hub.dropSubscription(this);
  }
}

export interface HubSubscription {
  readonly topic: string;
  unsubscribe(): void;
}

/** The EventBus a plugin (or the core) gets: publishes only to what it owns, subscribes to anything. */
export class ScopedEventBus implements EventBus {
  private readonly subscriptions = new Set<HubSubscription>();
  private released = false;

  constructor(
    private readonly hub: EventHub,
    readonly owner: string,
    private readonly logger: Logger,
    /** The core's own bus publishes to any topic. */
    private readonly anyTopic = false,
  ) {}

  publish<T>(topic: string, payload: T, audience?: EventAudience): Promise<number> {
    return this.hub.publish(this.owner, topic, payload, audience, this.anyTopic);
  }

  subscribe<T>(
    topic: string,
    handler: (event: StreamEvent<T>) => void,
    options: { since?: number; onGap?: (gap: EventGap) => void } = {},
  ): EventSubscription {
    const problem = topicProblem(topic);
    if (problem) throw new EventUsageError(`cannot subscribe: ${problem}`);
    if (typeof handler !== 'function') throw new EventUsageError('cannot subscribe: the handler must be a function');
    if (options.since !== undefined && !(Number.isSafeInteger(options.since) && options.since >= 0)) {
      throw new EventUsageError('cannot subscribe: since must be a sequence number (an integer >= 0)');
    }
    if (this.released) {
      this.logger.warn({ topic }, 'subscribe after the plugin stopped: ignored');
      return { unsubscribe: () => undefined };
    }
    const logFailure = (error: unknown) => this.logger.error({ err: error, topic, owner: this.owner }, 'event handler failed');
    const subscription = this.hub.subscribe(
      topic,
      {
        onEvent: (event) => {
          try {
            const result = handler(event.toStreamEvent<T>()) as unknown;
            if (result && typeof (result as Promise<unknown>).catch === 'function') (result as Promise<unknown>).catch(logFailure);
          } catch (error) {
            logFailure(error);
          }
        },
        onGap: options.onGap,
      },
      { since: options.since },
    );
    this.subscriptions.add(subscription);
    return {
      unsubscribe: () => {
        this.subscriptions.delete(subscription);
        subscription.unsubscribe();
      },
    };
  }

  /** End every subscription made through this bus (its plugin stopped). */
  release(): void {
    this.released = true;
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.subscriptions.clear();
  }
}

/**
 * The core's event hub: validates and publishes through the transport (memory or Redis), fans
 * live events out to this process's subscriptions (plugins and WebSocket connections) in order,
 * and hands out the per-plugin buses.
 */
export class EventHub {
  private readonly topics = new Map<string, TopicEntry>();
  private readonly buses = new Map<string, Set<ScopedEventBus>>();
  private readonly queue: BusEvent[] = [];
  private dispatching = false;
  private closed = false;
  /** Events handed to subscriptions in this process (each subscription counts). */
  delivered = 0;

  constructor(
    readonly transport: Transport,
    private readonly logger: Logger,
  ) {
    transport.connect(
      (event) => this.dispatch(event),
      () => this.resync(),
    );
  }

  /** Validate and publish; throws at once (EventUsageError) for a mistake of the caller. */
  publish(publisher: string, topic: string, payload: unknown, audience?: EventAudience, anyTopic = false): Promise<number> {
    checkPublishTopic(publisher, topic, anyTopic);
    let cleanAudience: EventAudience | undefined;
    try {
      cleanAudience = normaliseAudience(audience);
    } catch (error) {
      throw new EventUsageError(`cannot publish to "${topic}": ${(error as Error).message}`);
    }
    let payloadJson: string | undefined;
    try {
      payloadJson = JSON.stringify(payload === undefined ? null : payload);
    } catch (error) {
      throw new EventUsageError(`cannot publish to "${topic}": the payload is not JSON (${(error as Error).message})`);
    }
    if (payloadJson === undefined) throw new EventUsageError(`cannot publish to "${topic}": the payload is not JSON`);
    if (payloadJson.length > MAX_PAYLOAD_BYTES / 4 && Buffer.byteLength(payloadJson) > MAX_PAYLOAD_BYTES) {
      throw new EventUsageError(
        `cannot publish to "${topic}": the payload is ${Buffer.byteLength(payloadJson)} bytes as JSON, more than ${MAX_PAYLOAD_BYTES}; keep bulk data in storage and send a reference`,
      );
    }
    if (this.closed) return Promise.reject(new Error('the event bus is closed'));
    return this.transport.publish(topic, new Date().toISOString(), cleanAudience, payloadJson);
  }

  subscribe(topic: string, listener: SubscriptionListener, options: { since?: number } = {}): HubSubscription {
    const subscription = new Subscription(this, topic, listener);
    if (this.closed) {
      subscription.closed = true;
      return subscription;
    }
    let entry = this.topics.get(topic);
    if (!entry) {
      const listening = this.transport.listen(topic);
      listening.catch(() => undefined);
      entry = { subscriptions: new Set(), listening };
      this.topics.set(topic, entry);
    }
    entry.subscriptions.add(subscription);
    void subscription.start(entry.listening, options.since);
    return subscription;
  }

  /** @internal */
  dropSubscription(subscription: Subscription): void {
    const entry = this.topics.get(subscription.topic);
    if (!entry || !entry.subscriptions.delete(subscription)) return;
    if (entry.subscriptions.size === 0) {
      this.topics.delete(subscription.topic);
      this.transport.unlisten(subscription.topic);
    }
  }

  /** @internal */
  reportError(topic: string, error: Error): void {
    this.logger.error({ err: error, topic }, 'event delivery problem');
  }

  /** Live events, in order; a publish from inside a handler waits for the current event to reach everyone. */
  private dispatch(event: BusEvent): void {
    this.queue.push(event);
    if (this.dispatching) return;
    this.dispatching = true;
    try {
      for (let i = 0; i < this.queue.length; i++) {
        const next = this.queue[i]!;
        const entry = this.topics.get(next.topic);
        if (!entry) continue;
        for (const subscription of entry.subscriptions) {
          this.delivered++;
          subscription.deliver(next);
        }
      }
    } finally {
      this.queue.length = 0;
      this.dispatching = false;
    }
  }

  private resync(): void {
    for (const entry of this.topics.values()) for (const subscription of entry.subscriptions) subscription.resync();
  }

  /**
   * A plugin's bus: it publishes only to `<id>.<name>` topics. A new bus for a plugin means it
   * started again, so the subscriptions of its earlier run end.
   */
  bus(pluginId: string): ScopedEventBus {
    const bus = new ScopedEventBus(this, pluginId, this.logger.child({ plugin: pluginId }));
    this.release(pluginId);
    this.buses.set(pluginId, new Set([bus]));
    return bus;
  }

  /** The core's own bus: it publishes to any topic (`plugins`, `operations`, …). */
  coreBus(): ScopedEventBus {
    return new ScopedEventBus(this, 'core', this.logger, true);
  }

  /** End the subscriptions a plugin made (it stopped or failed). */
  release(owner: string): void {
    for (const bus of this.buses.get(owner) ?? []) bus.release();
    this.buses.delete(owner);
  }

  /** Number of topics with a subscriber in this process. */
  get topicCount(): number {
    return this.topics.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const owner of [...this.buses.keys()]) this.release(owner);
    for (const entry of this.topics.values()) for (const subscription of [...entry.subscriptions]) subscription.unsubscribe();
    await this.transport.close();
  }
}
