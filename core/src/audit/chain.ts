import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { AuditActorType, AuditOutcome, AuditRecord } from '@aiplat/plugin-sdk';

/**
 * The audit log's hash chain (docs/audit.md). Every row carries `prevHash`, the hash of the row
 * before it (GENESIS_HASH for row 1), and `hash`, the SHA-256 of the row's canonical form:
 *
 *   hash = hex(SHA-256(UTF-8(canonicalJson(record without `hash`))))
 *
 * where the record is the row as the API shows it (camelCase field names, `at` as an ISO 8601
 * string in UTC with milliseconds, `status` a number or null, absent values null, `details` the
 * stored JSON) including `id` and `prevHash`. Because `id` is hashed and ids are dense (1, 2, 3,
 * …, assigned by the writer), an edited, deleted, inserted or moved row breaks the chain at the
 * first row it touches.
 */

export const GENESIS_HASH = '0'.repeat(64);

export type { AuditActorType, AuditOutcome, AuditRecord };

export const ACTOR_TYPES: readonly AuditActorType[] = ['user', 'token', 'plugin', 'system', 'anonymous'];
export const OUTCOMES: readonly AuditOutcome[] = ['success', 'denied', 'failure', 'error'];

export interface ChainedRecord extends AuditRecord {
  hash: string;
}

/** A record before it joins the chain (the writer gives it `id` and `prevHash`). */
export type UnchainedRecord = Omit<AuditRecord, 'id' | 'prevHash'>;

const REPLACEMENT = '\uFFFD';

/**
 * Text as PostgreSQL can store it: NUL characters and lone UTF-16 surrogates (which `text` and
 * `jsonb` refuse) become U+FFFD. Stored text is therefore always clean, and hashing it again
 * after a round trip through the database gives the same bytes.
 */
export function cleanText(text: string): string {
  // ES2024 string methods (Node 20 has them; the TypeScript lib here is ES2023).
  const es2024 = text as unknown as { isWellFormed(): boolean; toWellFormed(): string };
  if (es2024.isWellFormed() && !text.includes('\0')) return text;
  return es2024.toWellFormed().replaceAll('\0', REPLACEMENT);
}

/**
 * Canonical JSON: JSON.stringify's values (toJSON honoured, undefined, functions and symbols
 * dropped from objects and null in arrays, non-finite numbers null, bigints as decimal strings),
 * object keys sorted by UTF-16 code units (JavaScript's default sort), no whitespace, strings
 * cleaned by `cleanText` and escaped as JSON.stringify escapes them.
 */
export function canonicalJson(value: unknown): string {
  return canon(value, 0) ?? 'null';
}

const MAX_DEPTH = 64;

function canon(value: unknown, depth: number): string | undefined {
  if (value === null) return 'null';
  if (typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(cleanText(value));
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'object': {
      if (value === null) return 'null';
      if (depth >= MAX_DEPTH) return '"[too deep]"';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += canon(value[i], depth + 1) ?? 'null';
        }
        return `${out}]`;
      }
      const keys = Object.keys(value).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const item = canon((value as Record<string, unknown>)[key], depth + 1);
        if (item === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(cleanText(key))}:${item}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      return undefined;
  }
}

/** A record's fields in canonical (sorted) order: what `canonicalJson` of the record without `hash` gives. */
export const RECORD_KEYS = [
  'action',
  'actorId',
  'actorName',
  'actorType',
  'at',
  'clientIp',
  'details',
  'id',
  'outcome',
  'plugin',
  'prevHash',
  'requestId',
  'resourceId',
  'resourceType',
  'status',
  'teamId',
] as const satisfies readonly (keyof AuditRecord)[];

/**
 * The canonical form of a record: what its hash is computed over. Equal to
 * `canonicalJson(record without hash)` for a record with all 16 fields (absent values null); built
 * field by field in their sorted order, with `detailsJson` when the caller has it already.
 */
export function canonicalRecord(record: AuditRecord, detailsJson?: string): string {
  let out = '{';
  for (let i = 0; i < RECORD_KEYS.length; i++) {
    const key = RECORD_KEYS[i]!;
    const value = key === 'details' ? (detailsJson ?? canonicalJson(record.details)) : (canon(record[key], 1) ?? 'null');
    out += `${i === 0 ? '' : ','}"${key}":${value}`;
  }
  return `${out}}`;
}

export function recordHash(record: AuditRecord, detailsJson?: string): string {
  return createHash('sha256').update(canonicalRecord(record, detailsJson)).digest('hex');
}

/** One record chained after `head`. */
export function chainRecord(head: { id: number; hash: string }, record: UnchainedRecord, detailsJson?: string): ChainedRecord {
  const full = { ...record, id: head.id + 1, prevHash: head.hash, hash: '' };
  full.hash = recordHash(full, detailsJson);
  return full;
}

/**
 * Chain records after `head` (the last row: `{ id: 0, hash: GENESIS_HASH }` for an empty log).
 * The writer uses it one row at a time; tests and imports use it for many rows at once.
 */
export function chainRecords(head: { id: number; hash: string }, records: UnchainedRecord[]): ChainedRecord[] {
  let previous = head;
  return records.map((record) => (previous = chainRecord(previous, record)));
}

/** Table columns ↔ record fields. */
export const COLUMNS = {
  id: 'id',
  at: 'at',
  actorType: 'actor_type',
  actorId: 'actor_id',
  actorName: 'actor_name',
  action: 'action',
  resourceType: 'resource_type',
  resourceId: 'resource_id',
  teamId: 'team_id',
  plugin: 'plugin',
  requestId: 'request_id',
  clientIp: 'client_ip',
  outcome: 'outcome',
  status: 'status',
  details: 'details',
  prevHash: 'prev_hash',
  hash: 'hash',
} as const satisfies Record<keyof ChainedRecord, string>;

export const COLUMN_LIST: string[] = Object.values(COLUMNS);

export interface AuditRow {
  id: number | string;
  at: Date | string;
  actor_type: AuditActorType;
  actor_id: string | null;
  actor_name: string | null;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  team_id: string | null;
  plugin: string | null;
  request_id: string | null;
  client_ip: string | null;
  outcome: AuditOutcome;
  status: number | null;
  details: unknown;
  prev_hash: string;
  hash: string;
}

/** A row read from the table as its record (what the API returns and the chain hashes). */
export function rowToRecord(row: AuditRow): ChainedRecord {
  return {
    id: Number(row.id),
    at: (row.at instanceof Date ? row.at : new Date(row.at)).toISOString(),
    actorType: row.actor_type,
    actorId: row.actor_id,
    actorName: row.actor_name,
    action: row.action,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    teamId: row.team_id,
    plugin: row.plugin,
    requestId: row.request_id,
    clientIp: row.client_ip,
    outcome: row.outcome,
    status: row.status === null || row.status === undefined ? null : Number(row.status),
    // A driver that hands jsonb over as text (none today) is parsed here.
    details: typeof row.details === 'string' ? (JSON.parse(row.details) as unknown) : row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Values for an INSERT of `record`, in COLUMN_LIST order; `details` as canonical JSON text for `?::jsonb`. */
export function recordValues(record: ChainedRecord, detailsJson?: string): Knex.RawBinding[] {
  return [
    record.id,
    record.at,
    record.actorType,
    record.actorId,
    record.actorName,
    record.action,
    record.resourceType,
    record.resourceId,
    record.teamId,
    record.plugin,
    record.requestId,
    record.clientIp,
    record.outcome,
    record.status,
    detailsJson ?? canonicalJson(record.details),
    record.prevHash,
    record.hash,
  ];
}
