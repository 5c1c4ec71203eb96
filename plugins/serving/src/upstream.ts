/**
 * Calls to the replicas: undici connection pools (one per replica address, kept-alive connections)
 * driven through its dispatch interface, which is about a fifth cheaper per request than Node's
 * http client (docs/adr/0013). An `Exchange` is one call: it resolves when the answer's status and
 * headers arrive and hands over the body chunk by chunk, with backpressure (`pause` until the
 * client drains), or whole; `cancel` stops the call (a client that went away).
 */
import { Pool, type Dispatcher } from 'undici';

export type Headers = Record<string, string | string[] | undefined>;

/** Why a call failed before any answer: `connect` when nothing reached the replica; `reset` when it closed the connection. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly connect: boolean,
    readonly reset: boolean,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** Codes that mean the replica was never reached (nothing of the request was sent). */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);
/** Codes of a connection the replica closed or reset before answering (it died, or dropped a kept-alive connection). */
const RESET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);

function upstreamError(err: Error & { code?: string }, timeoutMs: number): UpstreamError {
  const code = err.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamError(`no answer within ${timeoutMs / 1000} s`, false, false, 'ETIMEDOUT');
  return new UpstreamError(err.message, code !== undefined && CONNECT_CODES.has(code), code !== undefined && RESET_CODES.has(code), code);
}

export interface Answer {
  status: number;
  headers: Headers;
}

/** One call to a replica, as a dispatch handler. */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly started: Promise<Answer>;
  private resolveStart!: (answer: Answer) => void;
  private rejectStart!: (err: UpstreamError) => void;
  private controller: Dispatcher.DispatchController | undefined;
  private answered = false;
  private cancelled: Error | undefined;
  /** Chunks that came before a reader was attached. */
  private early: Buffer[] = [];
  private reader: { data(chunk: Buffer): boolean; end(): void; error(err: Error): void } | undefined;
  private finished: { error?: Error } | undefined;

  constructor(private readonly timeoutMs: number) {
    this.started = new Promise<Answer>((resolve, reject) => {
      this.resolveStart = resolve;
      this.rejectStart = reject;
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelled) controller.abort(this.cancelled);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Headers): void {
    if (statusCode < 200) return; // 1xx: the answer comes after
    this.answered = true;
    this.resolveStart({ status: statusCode, headers });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.reader) {
      this.early.push(chunk);
      return;
    }
    if (!this.reader.data(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.finished = {};
    this.reader?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.answered) {
      this.rejectStart(this.cancelled ? new UpstreamError(this.cancelled.message, false, false, 'ABORTED') : upstreamError(err, this.timeoutMs));
      return;
    }
    const error = (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT' ? new Error(`no answer within ${this.timeoutMs / 1000} s`) : err;
    this.finished = { error };
    this.reader?.error(error);
  }

  /** Stop the call (the client went away); before the answer, `started` rejects. */
  cancel(reason = new Error('the client went away')): void {
    if (this.cancelled || this.finished) return;
    this.cancelled = reason;
    this.controller?.abort(reason);
  }

  /**
   * Read the body as it comes: `data` answers false to hold the replica back until `resume()`;
   * resolves at its end, rejects when it breaks off.
   */
  read(data: (chunk: Buffer) => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.reader = { data, end: resolve, error: reject };
      const early = this.early;
      this.early = [];
      let held = false;
      for (const chunk of early) if (!data(chunk)) held = true;
      if (held) this.controller?.pause();
      if (this.finished) {
        if (this.finished.error) reject(this.finished.error);
        else resolve();
      }
    });
  }

  resume(): void {
    this.controller?.resume();
  }

  /** The whole body. */
  async bytes(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    await this.read((chunk) => {
      chunks.push(chunk);
      return true;
    });
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }
}

const REQUEST_HEADERS = ['content-type', 'application/json', 'accept', 'application/json, text/event-stream'];

/** Connection pools to the replicas, by address. */
export class Upstreams {
  private readonly pools = new Map<string, Pool>();

  private poolOf(host: string, port: number): Pool {
    const key = `${host}:${port}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(`http://${host.includes(':') ? `[${host}]` : host}:${port}`, { connections: 256, keepAliveTimeout: 30_000 });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /**
   * POST `body` to a replica (its pool kept on `to`); the exchange's `started` settles when the
   * answer begins (or the call fails).
   */
  post(to: { host: string; port: number; pool?: Pool }, path: string, body: Buffer, timeoutMs: number): Exchange {
    const exchange = new Exchange(timeoutMs);
    let pool = to.pool;
    if (!pool || pool.closed || pool.destroyed) pool = to.pool = this.poolOf(to.host, to.port);
    pool.dispatch(
      {
        path,
        method: 'POST',
        headers: REQUEST_HEADERS,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      exchange,
    );
    return exchange;
  }

  /** Close the pool of an address that is gone (its calls in flight finish first). */
  forget(host: string, port: number): void {
    const key = `${host}:${port}`;
    const pool = this.pools.get(key);
    if (!pool) return;
    this.pools.delete(key);
    void pool.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}
