import net from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

/** A message from `/api/v1/stream`: an event (`topic`, `seq`, `at`, `payload`) or a control message (`op`). */
export interface StreamMessage {
  op?: string;
  topic?: string;
  seq?: number;
  at?: string;
  payload?: any;
  code?: string;
  message?: string;
  from?: number;
  to?: number;
  /** When this client received it (performance.timeOrigin + performance.now()). */
  receivedAt: number;
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}: ${body}`);
  }
}

/** A WebSocket client of the stream that keeps every message it receives, for assertions. */
export class StreamClient {
  readonly messages: StreamMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];
  /** Called for each message as it arrives (e.g. to measure latency without keeping everything). */
  onMessage: ((message: StreamMessage) => void) | undefined;

  private constructor(
    readonly ws: WebSocket,
    private readonly keepEvents: boolean,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as StreamMessage;
      message.receivedAt = performance.timeOrigin + performance.now();
      if (this.keepEvents || message.op !== undefined) this.messages.push(message);
      this.onMessage?.(message);
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    });
    ws.on('close', () => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Connect; with `keepEvents: false` only control messages are kept (use `onMessage` for events). */
  static connect(url: string, options: { keepEvents?: boolean } = {}): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('open', () => resolve(new StreamClient(ws, options.keepEvents ?? true)));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => reject(new UpgradeRefused(res.statusCode ?? 0, body)));
      });
      ws.once('error', reject);
    });
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  subscribe(topic: string, since?: number): void {
    this.send(since === undefined ? { op: 'subscribe', topic } : { op: 'subscribe', topic, since });
  }

  /** Wait until some message (received so far or later) satisfies `match`. */
  async waitFor(match: (message: StreamMessage) => boolean, timeoutMs = 10_000): Promise<StreamMessage> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0;
    for (;;) {
      for (; checked < this.messages.length; checked++) if (match(this.messages[checked]!)) return this.messages[checked]!;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`connection closed while waiting; got ${JSON.stringify(this.messages.slice(-3))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting; last messages: ${JSON.stringify(this.messages.slice(-3))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Wait until `check()` holds, checking again after every message (kept or not). */
  async until(check: () => boolean, timeoutMs = 10_000, what = 'a condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  events(topic?: string): StreamMessage[] {
    return this.messages.filter((m) => m.op === undefined && (topic === undefined || m.topic === topic));
  }

  control(op: string): StreamMessage[] {
    return this.messages.filter((m) => m.op === op);
  }

  /** Stop reading from the socket (a stalled client); `resume` reads again. */
  pause(): void {
    (this.ws as unknown as { _socket: net.Socket })._socket.pause();
  }

  resume(): void {
    (this.ws as unknown as { _socket: net.Socket })._socket.resume();
  }

  close(): void {
    this.ws.close();
  }

  /** Drop the connection without a closing handshake (a killed client). */
  kill(): void {
    this.ws.terminate();
  }
}

/** The ws:// URL of the stream of a core at `baseUrl` (http://host:port[/base]). */
export function streamUrl(baseUrl: string, ticket?: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}/api/v1/stream${ticket === undefined ? '' : `?ticket=${encodeURIComponent(ticket)}`}`;
}

/** Get a ticket with an access token, then connect. */
export async function openStream(baseUrl: string, accessToken: string, options: { keepEvents?: boolean; ticketFrom?: string } = {}): Promise<StreamClient> {
  return StreamClient.connect(streamUrl(baseUrl, await streamTicket(options.ticketFrom ?? baseUrl, accessToken)), options);
}

export async function streamTicket(baseUrl: string, accessToken: string): Promise<string> {
  const res = await fetch(`${baseUrl}/api/v1/stream/ticket`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}` } });
  if (res.status !== 200) throw new Error(`ticket request answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { ticket: string }).ticket;
}

/**
 * A raw TCP client that completes the WebSocket handshake and then does nothing: it never reads
 * (when `read` is false) and never answers pings.
 */
export async function rawWebSocket(url: string, options: { read: boolean }): Promise<net.Socket> {
  const target = new URL(url.replace(/^ws/, 'http'));
  const socket = net.connect({ host: target.hostname, port: Number(target.port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const head = await new Promise<string>((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        socket.off('data', onData);
        socket.pause();
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
  if (!head.startsWith('HTTP/1.1 101')) throw new Error(`handshake refused: ${head.split('\r\n')[0]}`);
  if (options.read) socket.resume();
  socket.on('error', () => undefined);
  return socket;
}

/** The p-th percentile (0–100) of some numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
