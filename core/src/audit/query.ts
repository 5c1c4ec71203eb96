import { Readable } from 'node:stream';
import type { Knex } from 'knex';
import { canonicalJson, COLUMN_LIST, COLUMNS, rowToRecord, type AuditActorType, type AuditOutcome, type AuditRow, type ChainedRecord } from './chain.js';

/** Filters of the list and the export (all optional, combined with AND). */
export interface AuditFilters {
  /** Exact actor id or actor name. */
  actor?: string;
  actorType?: AuditActorType;
  /** Exact action, or a prefix when it ends with `*` (`core:auth.*`, `core:POST /plugins*`). */
  action?: string;
  /** `<type>` or `<type>:<id>` (split at the first colon). */
  resource?: string;
  outcome?: AuditOutcome;
  plugin?: string;
  team?: string;
  requestId?: string;
  /** ISO 8601 time: rows at or after it. */
  from?: string;
  /** ISO 8601 time: rows before it. */
  to?: string;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export function applyFilters(query: Knex.QueryBuilder, filters: AuditFilters): Knex.QueryBuilder {
  if (filters.actor !== undefined) {
    const actor = filters.actor;
    query.where((q) => q.where('actor_id', actor).orWhere('actor_name', actor));
  }
  if (filters.actorType !== undefined) query.where('actor_type', filters.actorType);
  if (filters.action !== undefined) {
    if (filters.action.endsWith('*')) query.whereRaw("action like ? escape '\\'", [`${escapeLike(filters.action.slice(0, -1))}%`]);
    else query.where('action', filters.action);
  }
  if (filters.resource !== undefined) {
    const colon = filters.resource.indexOf(':');
    if (colon < 0) query.where('resource_type', filters.resource);
    else query.where({ resource_type: filters.resource.slice(0, colon), resource_id: filters.resource.slice(colon + 1) });
  }
  if (filters.outcome !== undefined) query.where('outcome', filters.outcome);
  if (filters.plugin !== undefined) query.where('plugin', filters.plugin);
  if (filters.team !== undefined) query.where('team_id', filters.team);
  if (filters.requestId !== undefined) query.where('request_id', filters.requestId);
  if (filters.from !== undefined) query.where('at', '>=', new Date(filters.from).toISOString());
  if (filters.to !== undefined) query.where('at', '<', new Date(filters.to).toISOString());
  return query;
}

/** A page of rows, newest first; `cursor` is the `nextCursor` of the page before (an id). */
export async function listAudit(
  db: Knex,
  filters: AuditFilters,
  page: { limit: number; cursor?: string },
): Promise<{ items: ChainedRecord[]; nextCursor: string | null }> {
  const query = applyFilters(db('audit_log').select(COLUMN_LIST), filters).orderBy('id', 'desc').limit(page.limit + 1);
  if (page.cursor !== undefined) query.where('id', '<', Number(page.cursor));
  const rows = (await query) as AuditRow[];
  const items = rows.slice(0, page.limit).map(rowToRecord);
  return { items, nextCursor: rows.length > page.limit ? String(items[items.length - 1]!.id) : null };
}

/** Rows read per query while exporting: the export never holds more than this many at once. */
export const EXPORT_PAGE = 1000;

export type ExportFormat = 'jsonl' | 'csv';

/** The CSV columns: the record's fields in the API's order. */
export const CSV_COLUMNS = Object.keys(COLUMNS) as (keyof ChainedRecord)[];

/** One CSV field (RFC 4180): quoted when it holds a quote, comma, CR or LF; null is empty, "" is `""`. */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : typeof value === 'object' ? canonicalJson(value) : String(value);
  return text === '' || /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLine(record: ChainedRecord): string {
  return `${CSV_COLUMNS.map((column) => csvField(column === 'details' ? canonicalJson(record.details) : record[column])).join(',')}\r\n`;
}

/**
 * The matching rows, oldest first, as JSON Lines (one record per line, as the list returns them)
 * or CSV (a header line, then one line per record, `details` as canonical JSON). The rows are
 * read a page at a time through a keyset cursor while the client reads, up to the last row present
 * when the export starts.
 */
export function exportAudit(db: Knex, filters: AuditFilters, format: ExportFormat): Readable {
  async function* chunks(): AsyncGenerator<string> {
    const top = (await db('audit_log').max('id as max').first()) as { max: number | string | null } | undefined;
    const maxId = top?.max === null || top?.max === undefined ? 0 : Number(top.max);
    if (format === 'csv') yield `${CSV_COLUMNS.join(',')}\r\n`;
    let after: number | undefined;
    for (;;) {
      const query = applyFilters(db('audit_log').select(COLUMN_LIST), filters).where('id', '<=', maxId).orderBy('id').limit(EXPORT_PAGE);
      if (after !== undefined) query.where('id', '>', after);
      const rows = (await query) as AuditRow[];
      if (rows.length === 0) return;
      let out = '';
      for (const row of rows) {
        const record = rowToRecord(row);
        out += format === 'csv' ? csvLine(record) : `${JSON.stringify(record)}\n`;
      }
      yield out;
      if (rows.length < EXPORT_PAGE) return;
      after = Number(rows[rows.length - 1]!.id);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}
