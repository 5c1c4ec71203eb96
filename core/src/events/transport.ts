import type { EventAudience } from '@aiplat/plugin-sdk';
import { BusEvent } from './event.js';

/** How long events are kept for replay. */
export interface Retention {
  /** Events kept per topic (the newest ones). */
  perTopic: number;
  /** In memory only: bytes kept across all topics; the topics published longest ago lose their oldest events first. */
  maxBytes: number;
  /** With Redis: seconds a topic's sequence and events are kept after its last publish. */
  idleSeconds: number;
}

export const DEFAULT_RETENTION: Retention = { perTopic: 10_000, maxBytes: 64 * 1024 * 1024, idleSeconds: 7 * 24 * 3600 };

export interface ReadResult {
  /** The topic's latest sequence number (0 when nothing was ever published, or it was forgotten). */
  latest: number;
  /** The oldest sequence number still kept (latest + 1 when none is). */
  first: number;
  /** Kept events after `since`, oldest first, at most `limit`. */
  events: BusEvent[];
}

/**
 * Where sequence numbers are assigned, events kept for replay and delivered live: this process
 * (memory) or Redis (shared by every core process).
 */
export interface Transport {
  readonly kind: 'memory' | 'redis';
  /** Assign the next sequence number, keep the event and deliver it; resolves with the number. */
  publish(topic: string, at: string, audience: EventAudience | undefined, payloadJson: string): Promise<number>;
  read(topic: string, since: number, limit: number): Promise<ReadResult>;
  /** Start receiving a topic's live events; resolves once nothing published later can be missed. */
  listen(topic: string): Promise<void>;
  unlisten(topic: string): void;
  /** `onEvent` gets live events in sequence order per topic; `onResync` when live delivery may have missed some. */
  connect(onEvent: (event: BusEvent) => void, onResync: () => void): void;
  close(): Promise<void>;
}

interface TopicLog {
  latest: number;
  events: BusEvent[];
  /** Index of the oldest kept event in `events` (the array is compacted now and then). */
  head: number;
}

/** Sequence numbers and replay in this process only: what a single core without REDIS_URL uses. */
export class MemoryTransport implements Transport {
  readonly kind = 'memory';
  private readonly logs = new Map<string, TopicLog>();
  private bytes = 0;
  private onEvent: (event: BusEvent) => void = () => undefined;

  constructor(private readonly retention: Retention = DEFAULT_RETENTION) {}

  connect(onEvent: (event: BusEvent) => void): void {
    this.onEvent = onEvent;
  }

  publish(topic: string, at: string, audience: EventAudience | undefined, payloadJson: string): Promise<number> {
    let log = this.logs.get(topic);
    if (log) {
      // Keep the map in order of last publish, for trimming across topics.
      this.logs.delete(topic);
    } else {
      log = { latest: 0, events: [], head: 0 };
    }
    this.logs.set(topic, log);
    const event = new BusEvent(topic, ++log.latest, at, audience, payloadJson);
    log.events.push(event);
    this.bytes += event.size;
    if (log.events.length - log.head > this.retention.perTopic) this.dropOldest(log, 1);
    if (this.bytes > this.retention.maxBytes) this.trimAcrossTopics(topic);
    this.onEvent(event);
    return Promise.resolve(event.seq);
  }

  private dropOldest(log: TopicLog, count: number): void {
    const end = Math.min(log.head + count, log.events.length);
    for (let i = log.head; i < end; i++) {
      this.bytes -= log.events[i]!.size;
      log.events[i] = undefined as unknown as BusEvent;
    }
    log.head = end;
    if (log.head > 1024 && log.head * 2 > log.events.length) {
      log.events = log.events.slice(log.head);
      log.head = 0;
    }
  }

  private trimAcrossTopics(current: string): void {
    for (const [topic, log] of this.logs) {
      if (this.bytes <= this.retention.maxBytes) return;
      if (topic === current) continue;
      while (log.head < log.events.length && this.bytes > this.retention.maxBytes) this.dropOldest(log, 1);
    }
    const log = this.logs.get(current)!;
    // The topic just published keeps at least its newest event.
    while (log.events.length - log.head > 1 && this.bytes > this.retention.maxBytes) this.dropOldest(log, 1);
  }

  read(topic: string, since: number, limit: number): Promise<ReadResult> {
    const log = this.logs.get(topic);
    if (!log) return Promise.resolve({ latest: 0, first: 1, events: [] });
    const kept = log.events.length - log.head;
    const first = log.latest - kept + 1;
    const start = log.head + Math.max(0, since + 1 - first);
    const end = Math.min(log.events.length, start + limit);
    return Promise.resolve({ latest: log.latest, first, events: start < end ? log.events.slice(start, end) : [] });
  }

  listen(): Promise<void> {
    return Promise.resolve();
  }

  unlisten(): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Bytes currently kept (for tests). */
  get retainedBytes(): number {
    return this.bytes;
  }
}
