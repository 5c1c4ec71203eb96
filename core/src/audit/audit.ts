import type { Knex } from 'knex';
import { AiplatError, isAiplatError, type Logger, type Principal } from '@aiplat/plugin-sdk';
import type { Redactor } from '../secrets/redactor.js';
import {
  canonicalJson,
  chainRecord,
  chainRecords,
  cleanText,
  COLUMN_LIST,
  GENESIS_HASH,
  recordValues,
  type AuditActorType,
  type AuditOutcome,
  type ChainedRecord,
  type UnchainedRecord,
} from './chain.js';

export { GENESIS_HASH, type AuditActorType, type AuditOutcome, type ChainedRecord } from './chain.js';

/** Who did it, when it is not a signed-in principal. */
export interface AuditActor {
  type: AuditActorType;
  id?: string | null;
  name?: string | null;
}

export const SYSTEM_ACTOR: AuditActor = { type: 'system', id: null, name: 'system' };

export interface AuditEntry {
  /** `<owner>:<name>`: `core:POST /plugins/:id/disable`, `core:auth.login`, `hello:greeting.reset`. */
  action: string;
  /** A principal (`session` → user, `token` and `custom` → token), an explicit actor, or nobody (anonymous). */
  actor?: Principal | AuditActor;
  /** Default: from `status` (2xx/3xx success, 401/403 denied, other 4xx failure, 5xx error), else success. */
  outcome?: AuditOutcome;
  resource?: { type: string; id?: string | null };
  team?: string | null;
  /** The plugin the row is about or written by (null for the core). */
  plugin?: string;
  requestId?: string;
  clientIp?: string;
  /** HTTP status of the request, when the row records one. */
  status?: number;
  /** Redacted before it is stored: secret values and secret-named fields show as "••••". */
  details?: Record<string, unknown>;
}

export interface AuditWriterOptions {
  logger?: Logger;
  /**
   * How appends are kept in one chain. `advisory-lock` (PostgreSQL): every append takes
   * `pg_advisory_xact_lock(AUDIT_LOCK_KEY)` in the writer's transaction, held until it commits,
   * so concurrent writers (several connections, several replicas) queue instead of forking the
   * chain. `single-connection` (the embedded database): its one connection runs one transaction
   * at a time, which serializes appends already, so the lock's round trip is skipped.
   */
  serialize?: 'advisory-lock' | 'single-connection';
  /**
   * BENCHMARK ONLY (`AIPLAT_AUDIT_DISABLED_FOR_BENCH=1`, read by core.ts): write nothing. It
   * exists so `npm run bench:http` can measure what audit costs; never set it anywhere else.
   */
  disabledForBench?: boolean;
}

/** The advisory lock key that serializes appends: "audit" in ASCII. */
export const AUDIT_LOCK_KEY = 0x6175646974;

/** What a request whose audit row cannot be written answers (503 `unavailable`). */
export const AUDIT_UNAVAILABLE_MESSAGE =
  'The audit log could not be written, so the request was refused and nothing it changed was kept. Try again later; the server log has the cause.';

/** Longest text kept in a top-level field (action, names, ids, address); longer text is cut. */
const MAX_FIELD = 1024;

const CASTS = ['bigint', 'timestamptz', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'integer', 'jsonb', 'text', 'text'];
const VALUES = CASTS.map((type) => `?::${type}`).join(', ');
const INSERT_HEAD = `insert into audit_log (${COLUMN_LIST.join(', ')}) values`;
const INSERT = `${INSERT_HEAD} (${VALUES})`;
/** The same INSERT with PostgreSQL's own placeholders, for the embedded engine's handle. */
const INSERT_NATIVE = `${INSERT_HEAD} (${CASTS.map((type, i) => `$${i + 1}::${type}`).join(', ')})`;

/** The embedded engine (PGlite) under knex: its one connection, which the caller's transaction holds. */
interface EmbeddedHandle {
  query(sql: string, params: unknown[]): Promise<unknown>;
  /** PGlite's wire-protocol entry: throws the database's error (throwOnError defaults to true). */
  execProtocol?(message: Uint8Array, options: { syncToFs: boolean }): Promise<unknown>;
}

const PARSE_INSERT = (() => {
  const body = Buffer.concat([Buffer.from('\0'), Buffer.from(`${INSERT_NATIVE}\0`, 'utf8'), Buffer.from([0, 0])]);
  return frontendMessage('P', body);
})();
const EXECUTE_SYNC = Buffer.concat([frontendMessage('E', Buffer.from([0, 0, 0, 0, 0])), frontendMessage('S', Buffer.alloc(0))]);

function frontendMessage(type: string, body: Buffer): Buffer {
  const message = Buffer.allocUnsafe(5 + body.length);
  message.write(type, 0, 'latin1');
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return message;
}

/**
 * The INSERT of one row as one wire-protocol exchange (Parse, Bind with text parameters, Execute,
 * Sync): one call into the embedded engine instead of the six its query() makes.
 */
function insertMessage(values: Knex.RawBinding[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, 0, 0])]; // unnamed portal and statement, no format codes
  const count = Buffer.allocUnsafe(2);
  count.writeInt16BE(values.length);
  parts.push(count);
  for (const value of values) {
    const length = Buffer.allocUnsafe(4);
    if (value === null || value === undefined) {
      length.writeInt32BE(-1);
      parts.push(length);
      continue;
    }
    const bytes = Buffer.from(String(value), 'utf8');
    length.writeInt32BE(bytes.length);
    parts.push(length, bytes);
  }
  parts.push(Buffer.from([0, 0])); // results in text
  return Buffer.concat([PARSE_INSERT, frontendMessage('B', Buffer.concat(parts)), EXECUTE_SYNC]);
}

function text(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const clean = cleanText(String(value));
  return clean.length > MAX_FIELD ? `${clean.slice(0, MAX_FIELD - 1)}…` : clean;
}

export function outcomeOf(status: number | undefined): AuditOutcome {
  if (status === undefined || status < 400) return 'success';
  if (status === 401 || status === 403) return 'denied';
  return status < 500 ? 'failure' : 'error';
}

function isPrincipal(actor: Principal | AuditActor): actor is Principal {
  return 'via' in actor;
}

/** The actor columns of a principal or an explicit actor; nobody is `anonymous`. */
export function actorOf(actor: Principal | AuditActor | undefined): { type: AuditActorType; id: string | null; name: string | null; tokenId?: string } {
  if (!actor) return { type: 'anonymous', id: null, name: null };
  if (isPrincipal(actor)) {
    // A personal API token (`token`) or a route's own credential (`custom`, e.g. a gateway key)
    // acts for its owner: the row names the owner and the actor type says how they signed in.
    const type: AuditActorType = actor.via === 'session' ? 'user' : 'token';
    const tokenId = (actor as { tokenId?: string }).tokenId;
    return { type, id: actor.id, name: actor.username, ...(tokenId ? { tokenId } : {}) };
  }
  return { type: actor.type, id: actor.id ?? null, name: actor.name ?? null };
}

interface RawResult {
  rows?: { id: number | string; hash?: string }[];
}

type Transaction = Knex & { executionPromise?: Promise<unknown>; parentTransaction?: Transaction };

/** The chain's last row as a writer knows it, and whether the transaction that wrote it has committed. */
interface Head {
  id: number;
  hash: string;
  /** The top-level transaction that wrote the row (undefined: read from the database). */
  trx?: Transaction;
  committed: boolean;
}

/**
 * The remembered head per database (every writer on one database shares it): keyed by the knex
 * client's config, which a transaction's client shares with its root.
 */
const HEADS = new WeakMap<object, { head?: Head }>();

function topTransaction(trx: Transaction): Transaction {
  let top = trx;
  while (top.parentTransaction) top = top.parentTransaction;
  return top;
}

/**
 * Writes audit rows into the hash chain, in the caller's transaction, so the change and its
 * record commit together (or in a transaction of its own when the caller has none). Fail-closed:
 * a row that cannot be written throws 503 `unavailable`, which rolls the caller's transaction back.
 *
 * An append is one INSERT of a row whose id, prevHash and hash the writer computed from the head
 * (the last row). The database checks the link (trigger `audit_log_chain`: row id − 1 exists and
 * its hash is this row's prevHash), so a wrong head can fail an append but never fork the chain.
 * - `advisory-lock` (PostgreSQL): lock, read the head, insert: three statements; the lock, held to
 *   the end of the transaction, makes concurrent writers (connections, replicas) queue.
 * - `single-connection` (embedded): appends are serial already, and this process is the only
 *   writer (the data folder is locked), so the head this writer last appended is remembered and
 *   used once its transaction has committed (or by that same transaction): one statement. After a
 *   rollback, or a commit not yet seen, the head is read first.
 */
export class AuditWriter {
  private readonly logger: Logger | undefined;
  private readonly lock: boolean;
  readonly disabledForBench: boolean;

  constructor(
    private readonly redactor?: Redactor,
    options: AuditWriterOptions = {},
  ) {
    this.logger = options.logger;
    this.lock = (options.serialize ?? 'advisory-lock') === 'advisory-lock';
    this.disabledForBench = options.disabledForBench === true;
  }

  async write(db: Knex, entry: AuditEntry): Promise<ChainedRecord | undefined> {
    if (this.disabledForBench) return undefined;
    const record = this.prepare(entry);
    try {
      if ((db as Knex.Transaction).isTransaction) return (await this.append(db as Transaction, [record]))[0];
      return (await db.transaction((trx) => this.append(trx as Transaction, [record])))[0];
    } catch (error) {
      this.failed(db, error, record.action);
    }
  }

  /**
   * Append many rows at once, in order, in one transaction (imports, tests that need a long log):
   * one chain computation and multi-row inserts of 500. Same fail-closed rule as `write`.
   */
  async writeMany(db: Knex, entries: AuditEntry[]): Promise<ChainedRecord[]> {
    if (this.disabledForBench || entries.length === 0) return [];
    const records = entries.map((entry) => this.prepare(entry));
    try {
      if ((db as Knex.Transaction).isTransaction) return await this.append(db as Transaction, records);
      return await db.transaction((trx) => this.append(trx as Transaction, records));
    } catch (error) {
      this.failed(db, error, records[0]!.action);
    }
  }

  /** The record without its place in the chain: fields cleaned, details redacted. */
  prepare(entry: AuditEntry): UnchainedRecord {
    const actor = actorOf(entry.actor);
    let details: Record<string, unknown> = entry.details ?? {};
    if (this.redactor) details = this.redactor.redactValue(details);
    if (actor.tokenId) details = { ...details, tokenId: actor.tokenId };
    const status = entry.status !== undefined && Number.isInteger(entry.status) ? entry.status : null;
    return {
      at: new Date().toISOString(),
      actorType: actor.type,
      actorId: text(actor.id),
      actorName: text(actor.name),
      action: text(entry.action) ?? '',
      resourceType: text(entry.resource?.type),
      resourceId: text(entry.resource?.id),
      teamId: text(entry.team),
      plugin: text(entry.plugin),
      requestId: text(entry.requestId),
      clientIp: text(entry.clientIp),
      outcome: entry.outcome ?? outcomeOf(status ?? undefined),
      status,
      details,
    };
  }

  private failed(db: Knex, error: unknown, action: string): never {
    this.slot(db).head = undefined;
    this.logger?.error({ err: error, action }, 'audit row could not be written: refusing the request');
    // A 503 that says more (the embedded database's busy connection) keeps its message.
    if (isAiplatError(error) && error.status === 503) throw error;
    throw new AiplatError('unavailable', AUDIT_UNAVAILABLE_MESSAGE);
  }

  private slot(db: Knex): { head?: Head } {
    const key = (db.client as { config: object }).config;
    let slot = HEADS.get(key);
    if (!slot) HEADS.set(key, (slot = {}));
    return slot;
  }

  private async readHead(trx: Knex): Promise<Head> {
    const last = (await trx.raw('select id, hash from audit_log order by id desc limit 1')) as RawResult;
    const row = last.rows?.[0];
    return row ? { id: Number(row.id), hash: row.hash!, committed: true } : { id: 0, hash: GENESIS_HASH, committed: true };
  }

  /**
   * The embedded engine's handle, when the database is embedded: a single-row append goes to it
   * directly, skipping knex's query building (a tenth of an append's cost). It is the connection
   * the caller's transaction runs on, so the row is in that transaction all the same.
   */
  private embedded(trx: Knex): EmbeddedHandle | undefined {
    if (this.lock) return undefined;
    const connection = (trx.client as { config: { connection?: { pglite?: EmbeddedHandle } } }).config.connection;
    return typeof connection?.pglite?.query === 'function' ? connection.pglite : undefined;
  }

  private async append(trx: Transaction, records: UnchainedRecord[]): Promise<ChainedRecord[]> {
    const slot = this.slot(trx);
    const top = topTransaction(trx);
    let head: Head | undefined;
    if (this.lock) {
      await trx.raw('select pg_advisory_xact_lock(?::bigint)', [AUDIT_LOCK_KEY]);
    } else {
      const known = slot.head;
      if (known && (known.committed || known.trx === top)) head = known;
    }
    head ??= await this.readHead(trx);
    const embedded = records.length === 1 ? this.embedded(trx) : undefined;
    let chained: ChainedRecord[];
    if (embedded) {
      const detailsJson = canonicalJson(records[0]!.details);
      chained = [chainRecord(head, records[0]!, detailsJson)];
      const values = recordValues(chained[0]!, detailsJson);
      if (embedded.execProtocol) await embedded.execProtocol(insertMessage(values), { syncToFs: false });
      else await embedded.query(INSERT_NATIVE, values);
    } else {
      chained = chainRecords(head, records);
      for (let i = 0; i < chained.length; i += 500) {
        const batch = chained.slice(i, i + 500);
        await trx.raw(batch.length === 1 ? INSERT : `${INSERT_HEAD} ${batch.map(() => `(${VALUES})`).join(', ')}`, batch.flatMap((r) => recordValues(r)));
      }
    }
    const last = chained[chained.length - 1]!;
    const next: Head = { id: last.id, hash: last.hash, trx: top, committed: false };
    slot.head = next;
    const forget = () => {
      if (slot.head === next) slot.head = undefined;
    };
    // Committed: usable by any later transaction. Rolled back (this savepoint or the whole): forgotten.
    top.executionPromise?.then(() => void (next.committed = true), forget);
    if (trx !== top) trx.executionPromise?.then(undefined, forget);
    return chained;
  }
}
