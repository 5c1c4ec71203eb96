/**
 * The list of recorded greetings (`GET /greetings`), in the list convention of ARCHITECTURE §5:
 * `{ items, nextCursor }`, `?limit=&cursor=`, `?sort=`, filters as plain query parameters.
 *
 * Paging is by keyset, not offset: the cursor holds the sort key and the name (unique, the tie-breaker)
 * of the last row of the page, and the next page starts strictly after that pair. Rows greeted
 * between two page requests therefore never make a page repeat or skip a row that was already there.
 */
import { AiplatError, type Knex } from '@aiplat/plugin-sdk';

export const TABLE = 'p_hello_counters';

export const SORTS = ['name', '-name', 'count', '-count', 'updatedAt', '-updatedAt'] as const;
export type Sort = (typeof SORTS)[number];

/** The query schema of `GET /greetings`: the core validates it (400 `validation_failed`) and applies the defaults. */
export const listQuerySchema = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20, description: 'page size' },
    cursor: { type: 'string', minLength: 1, maxLength: 400, description: 'the nextCursor of the previous page' },
    sort: { enum: [...SORTS], default: '-updatedAt', description: 'sort field, `-` for descending' },
    q: { type: 'string', maxLength: 64, description: 'only names containing this text (case-insensitive)' },
  },
} as const;

export interface ListQuery {
  limit: number;
  cursor?: string;
  sort: Sort;
  q?: string;
}

export interface Greeting {
  name: string;
  count: number;
  lastGreeting: string;
  /** RFC 3339, UTC. */
  updatedAt: string;
}

interface Row {
  name: string;
  count: number | string;
  last_greeting: string;
  updated_at: Date | string;
  /** `updated_at` with its full (microsecond) precision, for the cursor. */
  updated_key: string;
}

/** The column behind each sort field. */
const COLUMNS = { name: 'name', count: 'count', updatedAt: 'updated_at' } as const;
type Field = keyof typeof COLUMNS;

/** What a cursor holds: the sort it was made for, the last row's sort key and name. */
interface CursorData {
  s: Sort;
  k: string | number;
  n: string;
}

export function encodeCursor(data: CursorData): string {
  return Buffer.from(JSON.stringify(data), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, sort: Sort): CursorData {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    data = undefined;
  }
  const c = data as Partial<CursorData> | undefined;
  if (!c || typeof c !== 'object' || !SORTS.includes(c.s as Sort) || typeof c.n !== 'string' || (typeof c.k !== 'string' && typeof c.k !== 'number')) {
    throw new AiplatError('bad_request', 'The cursor is not valid: pass the nextCursor of an earlier page', { cursor });
  }
  if (c.s !== sort) {
    throw new AiplatError('bad_request', `The cursor was made for sort "${c.s}", not "${sort}": start again without a cursor`, { cursor, sort });
  }
  return c as CursorData;
}

/** `%`, `_` and `\` match themselves in the substring filter. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
}

function toGreeting(row: Row): Greeting {
  return { name: row.name, count: Number(row.count), lastGreeting: row.last_greeting, updatedAt: new Date(row.updated_at).toISOString() };
}

/** One page of recorded greetings. */
export async function listGreetings(db: Knex, query: ListQuery): Promise<{ items: Greeting[]; nextCursor: string | null }> {
  const descending = query.sort.startsWith('-');
  const field = (descending ? query.sort.slice(1) : query.sort) as Field;
  const column = COLUMNS[field];
  const direction = descending ? 'desc' : 'asc';

  const rows = db(TABLE)
    .select('name', 'count', 'last_greeting', 'updated_at')
    // Text keeps the microseconds a JavaScript Date would drop, so the cursor compares exactly.
    .select(db.raw(`to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as updated_key`));
  if (query.q) rows.whereRaw(`name ilike ? escape '\\'`, [likePattern(query.q)]);
  if (query.cursor) {
    const after = decodeCursor(query.cursor, query.sort);
    const op = descending ? '<' : '>';
    if (field === 'name') rows.where('name', op, after.n);
    else if (field === 'count') rows.whereRaw(`(count, name) ${op} (?, ?)`, [Number(after.k), after.n]);
    else rows.whereRaw(`(updated_at, name) ${op} (?::timestamptz, ?)`, [String(after.k), after.n]);
  }
  rows.orderBy(column, direction);
  if (field !== 'name') rows.orderBy('name', direction);
  rows.limit(query.limit + 1);

  const found = (await rows) as Row[];
  const page = found.slice(0, query.limit);
  const last = page[page.length - 1];
  const key = (row: Row) => (field === 'count' ? Number(row.count) : field === 'updatedAt' ? row.updated_key : row.name);
  return {
    items: page.map(toGreeting),
    nextCursor: found.length > query.limit && last ? encodeCursor({ s: query.sort, k: key(last), n: last.name }) : null,
  };
}

/** How many names were greeted, and how many greetings in all. */
export async function greetingStats(db: Knex): Promise<{ names: number; greetings: number }> {
  const row = (await db(TABLE).count({ names: '*' }).sum({ greetings: 'count' }).first()) as { names: number | string; greetings: number | string | null } | undefined;
  return { names: Number(row?.names ?? 0), greetings: Number(row?.greetings ?? 0) };
}
