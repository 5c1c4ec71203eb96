import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, Gauge, type Registry } from 'prom-client';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger, Principal } from '@aiplat/plugin-sdk';
import { canSee, type PermissionCheck } from './audience.js';
import type { BusEvent } from './event.js';
import type { EventHub, HubSubscription } from './hub.js';
import { topicProblem } from './topics.js';

export const STREAM_PATH = '/api/v1/stream';

/** Close code for a client that fell too far behind (4000–4999 is for applications). */
export const CLOSE_SLOW_CONSUMER = 4008;

export interface StreamLimits {
  /** Messages a connection may have waiting in the core (beyond the socket's buffer) before it is cut off. */
  maxQueuedMessages: number;
  /** Bytes a connection may have waiting, socket buffer included, before it is cut off. */
  maxBufferedBytes: number;
  /** Above this many bytes in the socket's buffer, messages wait in the connection's queue. */
  highWaterBytes: number;
  maxSubscriptions: number;
  /** Largest message a client may send. */
  maxMessageBytes: number;
  /** A ping every this many milliseconds; a connection that did not answer the previous one is dropped. */
  heartbeatMs: number;
  /** On shutdown, how long closing handshakes may take before sockets are destroyed. */
  closeGraceMs: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  maxQueuedMessages: 1000,
  maxBufferedBytes: 1024 * 1024,
  highWaterBytes: 256 * 1024,
  maxSubscriptions: 100,
  maxMessageBytes: 16 * 1024,
  heartbeatMs: 30_000,
  closeGraceMs: 2_000,
};

export interface StreamServerOptions {
  hub: EventHub;
  /** The caller a ticket was issued to; undefined when it is not valid (unknown, used or expired). */
  consumeTicket(ticket: string | null): Promise<Principal | undefined>;
  can: PermissionCheck;
  logger: Logger;
  /** PUBLIC_URL's path prefix ('' when none): the stream answers at `<base>/api/v1/stream` too. */
  basePath?: string;
  limits?: Partial<StreamLimits>;
  /** Where to register the stream's Prometheus metrics. */
  registry?: Registry;
}

const TEXT = { binary: false } as const;

interface TopicState {
  topic: string;
  /** The last sequence number handed to the socket (the cursor to resume from). */
  lastSent: number;
  subscription?: HubSubscription;
}

interface Queued {
  frame: Buffer;
  state: TopicState | undefined;
  seq: number;
}

/** One WebSocket client: its subscriptions, its bounded outgoing queue, its heartbeat. */
class StreamConnection {
  readonly topics = new Map<string, TopicState>();
  private readonly isAdmin: boolean;
  private queue: Queued[] = [];
  private head = 0;
  private queuedBytes = 0;
  /** Waiting for the socket to flush (it crossed the high-water mark). */
  private waiting = false;
  private capacityWaiters: (() => void)[] = [];
  private ended = false;
  /** The TCP socket under the WebSocket, corked while one tick's messages are written. */
  private readonly socket: Socket | undefined;
  private corked = false;
  alive = true;
  readonly closed: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    readonly principal: Principal,
    private readonly server: StreamServer,
  ) {
    this.isAdmin = principal.roles.includes('admin');
    // ws keeps its socket in a private field; without it messages are simply written one by one.
    const socket = (ws as unknown as { _socket?: Socket })._socket;
    this.socket = typeof socket?.cork === 'function' ? socket : undefined;
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('pong', () => (this.alive = true));
    ws.on('error', (error) => this.server.logger.debug({ err: error.message, user: principal.username }, 'stream connection error'));
    ws.once('close', () => this.end());
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.alive = true;
    if (this.ended) return;
    if (isBinary) return this.error('bad_message', 'Send messages as JSON text frames');
    let message: unknown;
    try {
      message = JSON.parse(data.toString());
    } catch {
      return this.error('invalid_json', 'The message is not valid JSON');
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      return this.error('bad_message', 'A message is a JSON object with an "op": subscribe, unsubscribe or ping');
    }
    const { op, topic, since } = message as { op?: unknown; topic?: unknown; since?: unknown };
    switch (op) {
      case 'subscribe': {
        const problem = topicProblem(topic);
        if (problem) return this.error('bad_topic', problem, topic);
        if (since !== undefined && since !== null && !(typeof since === 'number' && Number.isSafeInteger(since) && since >= 0)) {
          return this.error('bad_message', '"since" must be a sequence number (an integer >= 0)', topic);
        }
        if (!this.topics.has(topic as string) && this.topics.size >= this.server.limits.maxSubscriptions) {
          return this.error('too_many_subscriptions', `A connection may subscribe to at most ${this.server.limits.maxSubscriptions} topics`, topic);
        }
        return this.subscribe(topic as string, since ?? undefined);
      }
      case 'unsubscribe': {
        const problem = topicProblem(topic);
        if (problem) return this.error('bad_topic', problem, topic);
        this.unsubscribe(topic as string);
        return this.control({ op: 'unsubscribed', topic });
      }
      case 'ping':
        return this.control({ op: 'pong' });
      default:
        return this.error('unknown_op', `Unknown op ${JSON.stringify(op) ?? 'undefined'}: use subscribe, unsubscribe or ping`);
    }
  }

  private subscribe(topic: string, since: number | undefined): void {
    this.unsubscribe(topic);
    const state: TopicState = { topic, lastSent: since ?? 0 };
    this.topics.set(topic, state);
    state.subscription = this.server.hub.subscribe(
      topic,
      {
        onStart: (latest) => {
          if (since === undefined) state.lastSent = latest;
          this.control({ op: 'subscribed', topic, seq: latest });
        },
        onEvent: (event) => this.deliver(state, event),
        onGap: (gap) => this.control(gap.kind === 'gap' ? { op: 'gap', topic, from: gap.from, to: gap.to } : { op: 'reset', topic, seq: gap.seq }),
        onError: (error) => {
          if (this.topics.get(topic) === state) this.topics.delete(topic);
          this.error('unavailable', `Cannot subscribe to ${topic} now (${error.message}); try again`, topic);
        },
        hasCapacity: () => !this.waiting && this.head === this.queue.length,
        waitCapacity: () => (this.ended ? Promise.resolve() : new Promise<void>((resolve) => this.capacityWaiters.push(resolve))),
      },
      { since },
    );
  }

  private unsubscribe(topic: string): void {
    const state = this.topics.get(topic);
    if (!state) return;
    this.topics.delete(topic);
    state.subscription?.unsubscribe();
  }

  private deliver(state: TopicState, event: BusEvent): void {
    if (event.audience !== undefined && !this.isAdmin && !canSee(this.principal, event.audience, this.server.can)) return;
    this.push(event.frame, state, event.seq);
  }

  private control(message: Record<string, unknown>): void {
    this.push(Buffer.from(JSON.stringify(message)), undefined, 0);
  }

  private error(code: string, message: string, topic?: unknown): void {
    this.control(typeof topic === 'string' && topic.length <= 200 ? { op: 'error', code, message, topic } : { op: 'error', code, message });
  }

  /**
   * Send now while the socket's buffer is below the high-water mark; otherwise queue, and cut the
   * client off once the queue passes its bounds.
   */
  private push(frame: Buffer, state: TopicState | undefined, seq: number): void {
    if (this.ended) return;
    if (!this.waiting && this.head === this.queue.length) {
      this.write(frame, state, seq);
      return;
    }
    if (this.queue.length - this.head >= this.server.limits.maxQueuedMessages || this.queuedBytes + frame.length + this.ws.bufferedAmount > this.server.limits.maxBufferedBytes) {
      this.cutOff();
      return;
    }
    this.queue.push({ frame, state, seq });
    this.queuedBytes += frame.length;
  }

  private write(frame: Buffer, state: TopicState | undefined, seq: number): void {
    if (!this.corked && this.socket) {
      // Everything sent in this tick (a burst of events) leaves in one write instead of one per message.
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    if (this.ws.bufferedAmount + frame.length > this.server.limits.highWaterBytes) {
      // Hear when this frame (and everything before it) has left for the kernel.
      this.waiting = true;
      this.ws.send(frame, TEXT, this.flushed);
    } else {
      this.ws.send(frame, TEXT);
    }
    this.server.sent++;
    if (state) state.lastSent = seq;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket?.uncork();
  };

  private readonly flushed = (error?: Error): void => {
    this.waiting = false;
    if (error || this.ended) return;
    while (this.head < this.queue.length && !this.waiting) {
      const item = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Queued;
      this.queuedBytes -= item.frame.length;
      this.write(item.frame, item.state, item.seq);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      if (!this.waiting) this.wakeCapacityWaiters();
    } else if (this.head > 512) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  };

  private wakeCapacityWaiters(): void {
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private cutOff(): void {
    const behind = this.queue.length - this.head;
    const states = [...this.topics.values()];
    const reason =
      states.length === 1
        ? `slow consumer: ${behind} events behind; reconnect with since=${states[0]!.lastSent}`
        : `slow consumer: ${behind} events behind; resubscribe each topic with since=<last seq received>`;
    this.server.logger.warn(
      { user: this.principal.username, behind, bufferedBytes: this.ws.bufferedAmount + this.queuedBytes, topics: states.map((s) => `${s.topic}@${s.lastSent}`) },
      'stream client too slow: disconnected',
    );
    this.server.slowConsumers++;
    this.end();
    // The close frame follows what the socket already holds (at most the high-water mark); ws
    // destroys the socket if the client never completes the closing handshake.
    this.ws.close(CLOSE_SLOW_CONSUMER, reason);
  }

  /** Stop everything this connection receives and drop what it has waiting. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const state of this.topics.values()) state.subscription?.unsubscribe();
    this.topics.clear();
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.wakeCapacityWaiters();
    this.server.forget(this);
  }

  shutdown(): void {
    this.end();
    this.ws.close(1001, 'server shutting down');
  }
}

/**
 * The WebSocket endpoint `/api/v1/stream`: ticket check before the upgrade, then the subscribe
 * protocol over the event hub, with bounded per-connection buffers and a heartbeat.
 */
export class StreamServer {
  readonly hub: EventHub;
  readonly can: PermissionCheck;
  readonly logger: Logger;
  readonly limits: StreamLimits;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<StreamConnection>();
  private readonly paths: Set<string>;
  private readonly heartbeat: NodeJS.Timeout;
  private closing = false;
  /** Messages handed to sockets. */
  sent = 0;
  /** Clients cut off for being too slow. */
  slowConsumers = 0;

  constructor(private readonly options: StreamServerOptions) {
    this.hub = options.hub;
    this.can = options.can;
    this.logger = options.logger;
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...options.limits };
    this.paths = new Set([STREAM_PATH, `${options.basePath ?? ''}${STREAM_PATH}`]);
    this.wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: this.limits.maxMessageBytes });
    this.heartbeat = setInterval(() => this.beat(), this.limits.heartbeatMs);
    this.heartbeat.unref();
    if (options.registry) this.registerMetrics(options.registry);
  }

  /** Take over WebSocket upgrades of an HTTP server. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://stream.invalid');
    if (!this.paths.has(url.pathname)) return reject(socket, 404, 'not_found', `Nothing is at ${url.pathname}; the event stream is at ${STREAM_PATH}`);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return reject(socket, 400, 'bad_request', 'Only WebSocket upgrades are served here');
    if (this.closing) return reject(socket, 503, 'unavailable', 'The server is shutting down');
    const ticket = url.searchParams.get('ticket');
    if (!ticket) {
      return reject(socket, 401, 'unauthenticated', `Connect with ?ticket=<ticket from POST ${STREAM_PATH}/ticket>`);
    }
    this.options.consumeTicket(ticket).then(
      (principal) => {
        if (socket.destroyed) return;
        if (!principal) {
          return reject(socket, 401, 'unauthenticated', 'The stream ticket is not valid: unknown, already used or expired (a ticket works once, within 30 s)');
        }
        if (this.closing) return reject(socket, 503, 'unavailable', 'The server is shutting down');
        this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, principal));
      },
      (error: Error) => {
        this.logger.error({ err: error }, 'stream ticket check failed');
        reject(socket, 503, 'unavailable', 'Cannot check the stream ticket now; try again');
      },
    );
  }

  private accept(ws: WebSocket, principal: Principal): void {
    if (this.closing) {
      ws.close(1001, 'server shutting down');
      return;
    }
    this.connections.add(new StreamConnection(ws, principal, this));
    this.logger.debug({ user: principal.username, connections: this.connections.size }, 'stream client connected');
  }

  /** @internal */
  forget(connection: StreamConnection): void {
    this.connections.delete(connection);
  }

  private beat(): void {
    for (const connection of this.connections) {
      if (!connection.alive) {
        this.logger.info({ user: connection.principal.username }, 'stream client did not answer the heartbeat: dropped');
        connection.end();
        connection.ws.terminate();
        continue;
      }
      connection.alive = false;
      try {
        connection.ws.ping();
      } catch {
        // not open: its close event ends it
      }
    }
  }

  /** Close every connection with 1001 (going away) and stop taking new ones. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.heartbeat);
    const open = [...this.connections];
    for (const connection of open) connection.shutdown();
    const sockets = open.map((c) => c.ws);
    await Promise.race([
      Promise.all(open.map((c) => c.closed)),
      new Promise((resolve) => setTimeout(resolve, this.limits.closeGraceMs).unref()),
    ]);
    for (const ws of sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    this.wss.close();
  }

  private registerMetrics(registry: Registry): void {
    const stats = { connections: () => this.connections.size, topics: () => this.hub.topicCount, sent: () => this.sent, slow: () => this.slowConsumers };
    new Gauge({
      name: 'aiplat_stream_connections',
      help: 'Open WebSocket connections of /api/v1/stream',
      registers: [registry],
      collect() {
        this.set(stats.connections());
      },
    });
    new Gauge({
      name: 'aiplat_stream_topics',
      help: 'Topics with at least one subscriber in this process',
      registers: [registry],
      collect() {
        this.set(stats.topics());
      },
    });
    new Counter({
      name: 'aiplat_stream_messages_sent_total',
      help: 'Messages sent to stream clients',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(stats.sent());
      },
    });
    new Counter({
      name: 'aiplat_stream_slow_consumer_disconnects_total',
      help: 'Stream clients cut off because they fell too far behind',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(stats.slow());
      },
    });
  }
}

/** Answer an upgrade request with a plain HTTP error (nothing was upgraded) and close the socket. */
function reject(socket: Duplex, status: number, code: string, message: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message, requestId: randomUUID() } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
