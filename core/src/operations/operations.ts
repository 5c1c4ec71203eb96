import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import {
  AiplatError,
  coreTopics,
  isAiplatError,
  type EventAudience,
  type EventBus,
  type Logger,
  type Operation,
  type OperationControl,
  type Operations,
  type OperationState,
  type StartOperationOptions,
} from '@aiplat/plugin-sdk';

export const OPERATIONS_TABLE = 'operations';

/** Error code and messages of operations whose runner went away. */
export const INTERRUPTED = 'interrupted';
export const INTERRUPTED_BY_RESTART = 'the core restarted while this operation was running';
export const INTERRUPTED_BY_STOP = 'the core stopped while this operation was running';
export const INTERRUPTED_BY_SILENCE = 'the core running this operation stopped answering';
/** What callers see of an error that is not an `AiplatError`; the error itself is logged. */
export const INTERNAL_FAILURE = 'The operation failed because of an internal error; the server log has the details';

/** Holders of this permission see and cancel every user's operations (and operations of no user). */
export const MANAGE_OPERATIONS = 'operations:manage';

const MAX_KIND = 100;
const MAX_TITLE = 200;
const MAX_MESSAGE = 1000;
/** A result travels in every event of its operation, and events carry at most 64 KiB: bulk data belongs in storage. */
export const MAX_RESULT_BYTES = 32 * 1024;

export interface OperationsOptions {
  /** The global handle: the runner writes outside any request transaction. */
  db: Knex;
  events: EventBus;
  logger: Logger;
  /** This core's instance id (`dataDirInstanceId`); a fresh one per process when not given. */
  instanceId?: string;
  /** Progress is written (and published) at most this often per operation. Default 200 ms. */
  progressIntervalMs?: number;
  /** How often running operations refresh their heartbeat (`updated_at`). Default 5 s. */
  heartbeatMs?: number;
  /** A running operation whose heartbeat is older than this is taken for dead. Default 60 s. */
  staleAfterMs?: number;
}

export interface ListFilter {
  /** Only this user's operations; undefined for everyone's. */
  userId?: string;
  state?: OperationState;
  kind?: string;
  limit: number;
  cursor?: string;
}

interface OperationRow {
  id: string;
  seq: number;
  kind: string;
  owner: string;
  user_id: string | null;
  title: string;
  state: OperationState;
  progress: number;
  message: string | null;
  result: unknown;
  error: { code: string; message: string } | null;
  runner: string;
  created_at: Date | string;
  updated_at: Date | string;
  finished_at: Date | string | null;
}

type Outcome =
  | { state: 'succeeded'; result: unknown }
  | { state: 'failed'; error: { code: string; message: string } }
  | { state: 'cancelled' };

/** An operation this process runs. */
interface Live {
  /** The latest state: progress and message may be ahead of the database by one throttle interval. */
  op: Operation;
  controller: AbortController;
  /** Resolves true once the row exists, false when it could not be written. */
  stored: Promise<boolean>;
  isStored: boolean;
  /** The final state is decided (here or elsewhere): progress is ignored from now on. */
  final: boolean;
  /** Progress not written yet. */
  dirty: boolean;
  lastFlushAt: number;
  timer?: NodeJS.Timeout;
  /** Writes and publishes of one operation, one after another, so events keep their order. */
  chain: Promise<unknown>;
  settled: Promise<Operation>;
  settle(op: Operation): void;
}

const toIso = (value: Date | string): string => new Date(value).toISOString();

function toOperation(row: OperationRow): Operation {
  return {
    id: row.id,
    kind: row.kind,
    owner: row.owner,
    userId: row.user_id,
    title: row.title,
    state: row.state,
    progress: Number(row.progress),
    message: row.message,
    result: row.result ?? null,
    error: row.error ?? null,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    finishedAt: row.finished_at === null ? null : toIso(row.finished_at),
  };
}

/** Owner and admins see an operation's events; one started for no user only holders of `operations:manage`. */
export function operationAudience(op: Operation): EventAudience {
  return op.userId ? { user: op.userId } : { permission: MANAGE_OPERATIONS };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function encodeCursor(seq: number): string {
  return Buffer.from(`s${seq}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): number {
  const match = /^s(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new AiplatError('bad_request', 'The cursor is not valid: pass the nextCursor of an earlier page');
  return Number(match[1]);
}

/**
 * Long-running actions that are not GPU workloads: persisted in `operations`, with throttled,
 * monotonic progress, cancel through an AbortSignal, and every change published on the
 * `operations` topic. The runner uses the global database handle and runs outside any request
 * scope, so starting an operation from a route handler never waits on the request's transaction.
 */
export class OperationsService {
  readonly instanceId: string;
  private readonly db: Knex;
  private readonly events: EventBus;
  private readonly logger: Logger;
  private readonly progressIntervalMs: number;
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;
  private readonly live = new Map<string, Live>();
  private heartbeat?: NodeJS.Timeout;
  private beating = false;
  private stopping = false;
  /** Set once stop has recorded every running operation: no more writes from the runner. */
  private closed = false;

  constructor(options: OperationsOptions) {
    this.db = options.db;
    this.events = options.events;
    this.logger = options.logger.child({ component: 'operations' });
    this.instanceId = options.instanceId ?? randomUUID();
    this.progressIntervalMs = options.progressIntervalMs ?? 200;
    this.heartbeatMs = options.heartbeatMs ?? 5_000;
    this.staleAfterMs = options.staleAfterMs ?? 60_000;
  }

  /**
   * Mark the operations that can no longer be running as failed (`interrupted`), then start the
   * heartbeat. The rule, safe with several core processes on one database:
   * - a row whose `runner` is this instance was started by an earlier process on this data folder;
   *   the data-folder lock we hold guarantees that process is dead, so the row is interrupted at once;
   * - a row of another runner is interrupted only when its heartbeat (`updated_at`, refreshed every
   *   `heartbeatMs` while it runs) is older than `staleAfterMs`: that runner died or lost the
   *   database. A live replica's operations are never touched.
   * Every heartbeat repeats the second check, so a replica that dies without restarting has its
   * operations interrupted by the others. Times are compared on the database's clock only.
   */
  async init(): Promise<void> {
    const rows = (await this.db(OPERATIONS_TABLE)
      .where({ state: 'running' })
      .andWhere((q) => void q.where({ runner: this.instanceId }).orWhere((s) => void this.stale(s)))
      .update(this.interruption(INTERRUPTED_BY_RESTART))
      .returning('*')) as OperationRow[];
    if (rows.length > 0) this.logger.warn({ operations: rows.map((r) => r.id) }, 'operations left running by a core that stopped are marked interrupted');
    for (const row of rows) await this.publish(toOperation(row));
    this.heartbeat = setInterval(() => void this.beat(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** The `Operations` service of one owner (a plugin id, or `core`): it starts, sees and cancels only its own. */
  forOwner(owner: string): Operations {
    return {
      start: (kind, run, options) => this.start(owner, kind, run, options),
      get: (id) => this.get(id, owner),
      cancel: (id) => this.cancel(id, owner),
      wait: (id) => this.wait(id, owner),
    };
  }

  /**
   * Start `run` in the background. Outside a request transaction the row is written before this
   * resolves. Inside one (a mutating route) the single embedded connection belongs to the request,
   * so the row is written, and `run` begins, as soon as the transaction lets go of it; the
   * operation is not part of that transaction and runs even if it rolls back.
   */
  async start<TResult>(
    owner: string,
    kind: string,
    run: (control: OperationControl) => Promise<TResult>,
    options: StartOperationOptions = {},
  ): Promise<Operation<TResult>> {
    if (this.stopping) throw new AiplatError('unavailable', 'The core is stopping: no new operation can start');
    if (typeof kind !== 'string' || kind.length === 0 || kind.length > MAX_KIND) {
      throw new TypeError(`an operation kind must be a string of 1 to ${MAX_KIND} characters`);
    }
    if (typeof run !== 'function') throw new TypeError('operations.start needs a function to run');
    const now = new Date().toISOString();
    const op: Operation = {
      id: randomUUID(),
      kind,
      owner,
      userId: options.userId ?? null,
      title: String(options.title ?? kind).slice(0, MAX_TITLE),
      state: 'running',
      progress: 0,
      message: null,
      result: null,
      error: null,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    };
    let settle!: (op: Operation) => void;
    const live: Live = {
      op,
      controller: new AbortController(),
      stored: Promise.resolve(false),
      isStored: false,
      final: false,
      dirty: false,
      lastFlushAt: 0,
      chain: Promise.resolve(),
      settled: new Promise<Operation>((resolve) => (settle = resolve)),
      settle: (value) => settle(value),
    };
    this.live.set(op.id, live);
    const storing = this.enqueue(live, async () => {
      const [row] = (await this.db(OPERATIONS_TABLE)
        .insert({ id: op.id, kind, owner, user_id: op.userId, title: op.title, state: 'running', progress: 0, runner: this.instanceId })
        .returning('*')) as OperationRow[];
      live.op = toOperation(row!);
      live.isStored = true;
      await this.publish(live.op);
    });
    live.stored = storing.then(
      () => true,
      () => false,
    );
    // Not awaited: inside a request's transaction (the embedded database's only connection) the
    // row can only be written once that transaction ends. Until then reads answer from memory.
    storing.catch((error: unknown) => this.logger.error({ err: error, operation: op.id, kind, owner }, 'could not record a new operation; it does not run'));
    void this.execute(live, run);
    return { ...live.op } as Operation<TResult>;
  }

  /** The operation as stored (one of this owner's when given). */
  async get(id: string, owner?: string): Promise<Operation | undefined> {
    const op = await this.read(this.db, id);
    return op && (owner === undefined || op.owner === owner) ? op : undefined;
  }

  /** Read through `db` (a request's handle in routes); an operation whose row is still being written is answered from memory. */
  async read(db: Knex, id: string): Promise<Operation | undefined> {
    const row = (await db(OPERATIONS_TABLE).where({ id }).first()) as OperationRow | undefined;
    if (row) return toOperation(row);
    const live = this.live.get(id);
    if (!live) return undefined;
    if (!live.isStored) return { ...live.op };
    // Stored between the read above and now: the row is there, read it again.
    const again = (await db(OPERATIONS_TABLE).where({ id }).first()) as OperationRow | undefined;
    return again ? toOperation(again) : { ...live.op };
  }

  /** One page, newest first. */
  async list(db: Knex, filter: ListFilter): Promise<{ items: Operation[]; nextCursor: string | null }> {
    const query = db(OPERATIONS_TABLE).orderBy('seq', 'desc').limit(filter.limit + 1);
    if (filter.userId !== undefined) query.where({ user_id: filter.userId });
    if (filter.state !== undefined) query.where({ state: filter.state });
    if (filter.kind !== undefined) query.where({ kind: filter.kind });
    if (filter.cursor !== undefined) query.where('seq', '<', decodeCursor(filter.cursor));
    const rows = (await query) as OperationRow[];
    const page = rows.slice(0, filter.limit);
    return {
      items: page.map(toOperation),
      nextCursor: rows.length > filter.limit ? encodeCursor(Number(page[page.length - 1]!.seq)) : null,
    };
  }

  /** Cancel (one of this owner's when given): the state is `cancelled` at once and `run` is told through its signal. */
  async cancel(id: string, owner?: string): Promise<Operation> {
    await this.live.get(id)?.stored;
    const op = await this.cancelIn(this.db, id, (candidate) => owner === undefined || candidate.owner === owner);
    await this.cancelled(op);
    return op;
  }

  /**
   * Record the cancel through `db` (a route passes its transaction). 404 when missing or not
   * `visible`, 409 when already finished. Call `cancelled` once it is committed.
   */
  async cancelIn(db: Knex, id: string, visible: (op: Operation) => boolean): Promise<Operation> {
    const current = await this.read(db, id);
    if (!current || !visible(current)) throw new AiplatError('not_found', `No operation ${id}`);
    if (current.state !== 'running') throw new AiplatError('conflict', `The operation already finished (${current.state})`, { state: current.state });
    const [row] = (await db(OPERATIONS_TABLE)
      .where({ id, state: 'running' })
      .update({ state: 'cancelled', finished_at: db.fn.now(), updated_at: db.fn.now() })
      .returning('*')) as OperationRow[];
    if (!row) {
      const now = await this.read(db, id);
      // Still running: its row is not written yet (it was started in a transaction that just ended).
      if (now?.state === 'running') throw new AiplatError('conflict', 'The operation is still starting; try again in a moment');
      throw new AiplatError('conflict', `The operation already finished (${now?.state ?? 'unknown'})`, { state: now?.state });
    }
    return toOperation(row);
  }

  /** After a cancel is durable: abort the function if it runs here, and publish. */
  async cancelled(op: Operation): Promise<void> {
    const live = this.live.get(op.id);
    if (!live) return this.publish(op);
    if (!live.final) {
      live.final = true;
      clearTimeout(live.timer);
      live.op = op;
      live.settle(op);
      live.controller.abort();
    }
    await this.enqueue(live, () => this.publish(op)).catch(() => undefined);
  }

  /** Resolves when the operation has finished. */
  async wait(id: string, owner?: string): Promise<Operation> {
    const live = this.live.get(id);
    if (live && (owner === undefined || live.op.owner === owner)) return live.settled;
    for (;;) {
      const op = await this.get(id, owner);
      if (!op) throw new AiplatError('not_found', `No operation ${id}`);
      if (op.state !== 'running') return op;
      await sleep(Math.min(250, this.heartbeatMs));
    }
  }

  /** Operations this process runs now (ids). */
  running(): string[] {
    return [...this.live.values()].filter((l) => !l.final).map((l) => l.op.id);
  }

  /**
   * Stop: operations still running are recorded as failed (`interrupted`) and their functions
   * aborted; nothing is written after this resolves, so the database can close.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.heartbeat);
    const bounded = (promises: Promise<unknown>[]) => Promise.race([Promise.allSettled(promises), sleep(2_000)]);
    await bounded([...this.live.values()].map((l) => l.stored));
    const lives = [...this.live.values()].filter((l) => !l.final);
    for (const live of lives) {
      live.final = true;
      clearTimeout(live.timer);
    }
    const ids = lives.filter((l) => l.isStored).map((l) => l.op.id);
    if (ids.length > 0) {
      try {
        const rows = (await this.db(OPERATIONS_TABLE)
          .whereIn('id', ids)
          .where({ state: 'running' })
          .update(this.interruption(INTERRUPTED_BY_STOP))
          .returning('*')) as OperationRow[];
        for (const row of rows) {
          const op = toOperation(row);
          const live = this.live.get(op.id);
          if (live) live.op = op;
          await this.publish(op);
        }
        if (rows.length > 0) this.logger.warn({ operations: rows.map((r) => r.id) }, 'operations interrupted by the core stopping');
      } catch (error) {
        this.logger.error({ err: error }, 'could not record the interrupted operations; the next start will');
      }
    }
    await bounded([...this.live.values()].map((l) => l.chain));
    this.closed = true;
    for (const live of lives) {
      live.settle(live.op);
      live.controller.abort();
    }
  }

  private async execute(live: Live, run: (control: OperationControl) => Promise<unknown>): Promise<void> {
    if (!(await live.stored)) {
      this.live.delete(live.op.id);
      live.final = true;
      live.settle({ ...live.op, state: 'failed', error: { code: 'internal', message: INTERNAL_FAILURE } });
      return;
    }
    if (live.final) {
      // Stopped or cancelled before it began.
      this.live.delete(live.op.id);
      live.settle(live.op);
      return;
    }
    const control: OperationControl = {
      id: live.op.id,
      signal: live.controller.signal,
      progress: (fraction, message) => this.progress(live, fraction, message),
    };
    let outcome: Outcome;
    try {
      outcome = { state: 'succeeded', result: await run(control) };
    } catch (error) {
      outcome = live.controller.signal.aborted ? { state: 'cancelled' } : { state: 'failed', error: this.describe(live.op, error) };
    }
    await this.finish(live, outcome);
  }

  /** `{ code, message }` of a failure: an AiplatError's own; anything else is logged and shown generically. */
  private describe(op: Operation, error: unknown): { code: string; message: string } {
    if (isAiplatError(error)) return { code: error.code, message: error.message };
    this.logger.error({ err: error, operation: op.id, kind: op.kind, owner: op.owner }, 'operation failed');
    return { code: 'internal', message: INTERNAL_FAILURE };
  }

  private progress(live: Live, fraction: number, message?: string): void {
    if (live.final || typeof fraction !== 'number' || Number.isNaN(fraction)) return;
    const value = Math.min(1, Math.max(0, fraction));
    if (value < live.op.progress) return;
    const text = message === undefined ? live.op.message : message === null ? null : String(message).slice(0, MAX_MESSAGE);
    live.op = { ...live.op, progress: value, message: text };
    live.dirty = true;
    if (live.timer) return;
    // A burst of calls becomes one write; then at most one write per interval, the last value always written.
    const delay = Math.max(0, live.lastFlushAt + this.progressIntervalMs - Date.now());
    live.timer = setTimeout(() => {
      live.timer = undefined;
      this.enqueue(live, () => this.flush(live)).catch((error: unknown) =>
        this.logger.warn({ err: error, operation: live.op.id }, 'could not record operation progress'),
      );
    }, delay);
  }

  private async flush(live: Live): Promise<void> {
    if (!live.dirty || live.final || this.closed) return;
    live.dirty = false;
    live.lastFlushAt = Date.now();
    const snapshot = live.op;
    const [row] = (await this.db(OPERATIONS_TABLE)
      .where({ id: snapshot.id, state: 'running' })
      .update({ progress: snapshot.progress, message: snapshot.message, updated_at: this.db.fn.now() })
      .returning(['updated_at'])) as Pick<OperationRow, 'updated_at'>[];
    if (!row) {
      // Finished elsewhere: cancelled through another core process, or taken for dead.
      this.abandon(live);
      return;
    }
    const published = { ...snapshot, updatedAt: toIso(row.updated_at) };
    live.op = { ...live.op, updatedAt: published.updatedAt };
    await this.publish(published);
  }

  private async finish(live: Live, outcome: Outcome): Promise<void> {
    live.final = true;
    clearTimeout(live.timer);
    let result: string | null = null;
    if (outcome.state === 'succeeded' && outcome.result !== undefined) {
      try {
        result = JSON.stringify(outcome.result) ?? null;
      } catch (error) {
        outcome = { state: 'failed', error: this.describe(live.op, error) };
      }
      const bytes = result === null ? 0 : Buffer.byteLength(result);
      if (bytes > MAX_RESULT_BYTES) {
        result = null;
        const message = `The operation's result is ${bytes} bytes as JSON, more than ${MAX_RESULT_BYTES}; keep bulk data in storage and return a reference`;
        this.logger.error({ operation: live.op.id, kind: live.op.kind, owner: live.op.owner, bytes }, message);
        outcome = { state: 'failed', error: { code: 'payload_too_large', message } };
      }
    }
    if (!this.closed) {
      try {
        await this.enqueue(live, async () => {
          const [row] = (await this.db(OPERATIONS_TABLE)
            .where({ id: live.op.id, state: 'running' })
            .update({
              state: outcome.state,
              progress: outcome.state === 'succeeded' ? 1 : live.op.progress,
              message: live.op.message,
              result,
              error: outcome.state === 'failed' ? JSON.stringify(outcome.error) : null,
              finished_at: this.db.fn.now(),
              updated_at: this.db.fn.now(),
            })
            .returning('*')) as OperationRow[];
          if (row) {
            live.op = toOperation(row);
            await this.publish(live.op);
          } else {
            // Someone decided first (a cancel, a stop, another core taking it for dead): that state stands.
            const current = (await this.db(OPERATIONS_TABLE).where({ id: live.op.id }).first()) as OperationRow | undefined;
            if (current) live.op = toOperation(current);
          }
        });
      } catch (error) {
        this.logger.error({ err: error, operation: live.op.id }, 'could not record the end of an operation');
      }
    }
    this.live.delete(live.op.id);
    live.settle(live.op);
  }

  /** The operation was finished by someone else: stop the function; its outcome will not be recorded. */
  private abandon(live: Live): void {
    if (live.final) return;
    live.final = true;
    clearTimeout(live.timer);
    live.controller.abort();
  }

  private async beat(): Promise<void> {
    if (this.beating || this.stopping) return;
    this.beating = true;
    try {
      const ids = [...this.live.values()].filter((l) => l.isStored && !l.final).map((l) => l.op.id);
      if (ids.length > 0) {
        const rows = (await this.db(OPERATIONS_TABLE)
          .whereIn('id', ids)
          .where({ state: 'running', runner: this.instanceId })
          .update({ updated_at: this.db.fn.now() })
          .returning('id')) as { id: string }[];
        const alive = new Set(rows.map((r) => r.id));
        for (const id of ids) {
          const live = this.live.get(id);
          if (!alive.has(id) && live) this.abandon(live);
        }
      }
      const stale = (await this.db(OPERATIONS_TABLE)
        .where({ state: 'running' })
        .whereNot({ runner: this.instanceId })
        .where((q) => void this.stale(q))
        .update(this.interruption(INTERRUPTED_BY_SILENCE))
        .returning('*')) as OperationRow[];
      if (stale.length > 0) this.logger.warn({ operations: stale.map((r) => r.id) }, 'operations of a core that stopped answering are marked interrupted');
      for (const row of stale) await this.publish(toOperation(row));
    } catch (error) {
      this.logger.warn({ err: error }, 'operations heartbeat failed');
    } finally {
      this.beating = false;
    }
  }

  private stale(query: Knex.QueryBuilder): void {
    query.whereRaw('updated_at < now() - make_interval(secs => ?)', [this.staleAfterMs / 1000]);
  }

  private interruption(message: string): Record<string, unknown> {
    return {
      state: 'failed',
      error: JSON.stringify({ code: INTERRUPTED, message }),
      finished_at: this.db.fn.now(),
      updated_at: this.db.fn.now(),
    };
  }

  private async publish(op: Operation): Promise<void> {
    try {
      await this.events.publish(coreTopics.operations, op, operationAudience(op));
    } catch (error) {
      this.logger.warn({ err: error, operation: op.id }, 'could not publish an operation change');
    }
  }

  /** Run `task` after the operation's earlier writes. */
  private enqueue<T>(live: Live, task: () => Promise<T>): Promise<T> {
    const next = live.chain.then(task);
    live.chain = next.catch(() => undefined);
    return next;
  }
}

export function createOperations(options: OperationsOptions): OperationsService {
  return new OperationsService(options);
}
