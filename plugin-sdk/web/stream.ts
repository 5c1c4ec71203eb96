/**
 * One WebSocket to `/api/v1/stream` for the whole page (shell and remotes), shared by every
 * subscription. It connects when the first subscription starts, reconnects with backoff after a
 * drop and resubscribes each topic with `since` = the last sequence number delivered, so nothing is
 * missed; on `gap` or `reset` the subscriber's `onReset` tells it to reload from the REST API.
 */
import { withBase } from './boot.ts';
import { coreApi } from './api.ts';
import { session } from './session.ts';

export interface StreamEvent<T = unknown> {
  topic: string;
  seq: number;
  at: string;
  payload: T;
}

export interface SubscribeOptions {
  /** Replay events after this sequence number first. */
  since?: number;
  /** Events were lost (a gap in the retention window, a reset): reload what you derive from the topic. */
  onReset?: () => void;
}

interface Subscriber {
  handler: (event: StreamEvent) => void;
  onReset?: () => void;
}

interface TopicState {
  subscribers: Set<Subscriber>;
  /** Highest seq delivered on this topic. */
  seq: number | undefined;
}

export type StreamStatus = 'idle' | 'connecting' | 'open' | 'reconnecting';

class StreamClient {
  private socket: WebSocket | null = null;
  private topics = new Map<string, TopicState>();
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private statusListeners = new Set<(status: StreamStatus) => void>();
  status: StreamStatus = 'idle';

  subscribe<T>(topic: string, handler: (event: StreamEvent<T>) => void, options: SubscribeOptions = {}): () => void {
    let state = this.topics.get(topic);
    const subscriber: Subscriber = { handler: handler as (event: StreamEvent) => void, onReset: options.onReset };
    if (!state) {
      state = { subscribers: new Set(), seq: options.since };
      this.topics.set(topic, state);
      state.subscribers.add(subscriber);
      this.send({ op: 'subscribe', topic, ...(options.since !== undefined ? { since: options.since } : {}) });
    } else {
      state.subscribers.add(subscriber);
    }
    this.ensureOpen();
    return () => {
      const current = this.topics.get(topic);
      if (!current) return;
      current.subscribers.delete(subscriber);
      if (current.subscribers.size === 0) {
        this.topics.delete(topic);
        this.send({ op: 'unsubscribe', topic });
        if (this.topics.size === 0) this.close();
      }
    };
  }

  onStatus(listener: (status: StreamStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Close the socket (sign-out); subscriptions made later open a new one. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, 'closed by client');
    this.setStatus('idle');
  }

  private setStatus(status: StreamStatus): void {
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  private send(message: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private connecting = false;

  private ensureOpen(): void {
    if (this.socket || this.timer || this.connecting || this.topics.size === 0 || !session.signedIn) return;
    void this.connect();
  }

  private async connect(): Promise<void> {
    // One connection attempt at a time: subscriptions made while the ticket is on its way join it.
    if (this.connecting) return;
    this.connecting = true;
    try {
      await this.open();
    } finally {
      this.connecting = false;
    }
  }

  private async open(): Promise<void> {
    this.setStatus(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let ticket: string;
    try {
      ({ ticket } = await coreApi.post<{ ticket: string }>('/stream/ticket'));
    } catch {
      this.retry();
      return;
    }
    if (this.topics.size === 0 || !session.signedIn) return this.setStatus('idle');
    const url = new URL(withBase('/api/v1/stream'), window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('ticket', ticket);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.setStatus('open');
      for (const [topic, state] of this.topics) socket.send(JSON.stringify({ op: 'subscribe', topic, ...(state.seq !== undefined ? { since: state.seq } : {}) }));
    };
    socket.onmessage = (message) => this.receive(String(message.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.retry();
    };
  }

  private retry(): void {
    if (this.topics.size === 0 || !session.signedIn) return this.setStatus('idle');
    this.setStatus('reconnecting');
    const delay = Math.min(10_000, 250 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }

  private receive(data: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return;
    }
    const topic = message.topic as string | undefined;
    const state = topic ? this.topics.get(topic) : undefined;
    if (!state) return;
    if (message.op === 'subscribed') {
      if (state.seq === undefined) state.seq = message.seq as number;
      return;
    }
    if (message.op === 'gap' || message.op === 'reset') {
      if (message.op === 'reset') state.seq = undefined;
      for (const subscriber of state.subscribers) subscriber.onReset?.();
      return;
    }
    if (message.op !== undefined || typeof message.seq !== 'number') return;
    if (state.seq !== undefined && message.seq <= state.seq) return;
    state.seq = message.seq;
    for (const subscriber of state.subscribers) {
      try {
        subscriber.handler(message as unknown as StreamEvent);
      } catch (error) {
        console.error(`[aiplat] a handler of stream topic "${topic}" threw`, error);
      }
    }
  }
}

/** The page's one stream connection. */
export const stream = new StreamClient();

session.onEnd(() => stream.close());
