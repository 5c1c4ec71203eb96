/**
 * Gateway API keys: a team's keys for OpenAI clients (`Authorization: Bearer sk-aiplat-…`). The
 * secret is shown once at creation and stored as its SHA-256 (it is 256 random bits: a slow hash
 * would add nothing); a key may be limited to some served models, expire, carry rate limits, and
 * be revoked. Looked-up keys are kept for `keyCacheSeconds` (default 5 s): a revocation is seen at
 * once by this process and by the other core processes within that time.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from '@aiplat/plugin-sdk';
import type { ApiKey } from '../api/index.js';
import { T, iso, parsed, type ApiKeyRow } from './store.js';

export const KEY_PREFIX = 'sk-aiplat-';

export function isGatewayKey(token: string): boolean {
  return token.startsWith(KEY_PREFIX);
}

export function hashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function statusOf(row: Pick<ApiKeyRow, 'revoked_at' | 'expires_at'>, now = Date.now()): ApiKey['status'] {
  if (row.revoked_at) return 'revoked';
  if (row.expires_at && new Date(row.expires_at).getTime() <= now) return 'expired';
  return 'active';
}

export function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    name: row.name,
    team: row.team_id,
    prefix: row.prefix,
    models: parsed(row.models),
    expiresAt: iso(row.expires_at),
    revokedAt: iso(row.revoked_at),
    status: statusOf(row),
    requestsPerMinute: row.rpm,
    tokensPerMinute: row.tpm,
    lastUsedAt: iso(row.last_used_at),
    createdBy: row.created_by,
    createdAt: iso(row.created_at)!,
  };
}

export interface NewKey {
  name: string;
  team: string;
  models: string[];
  expiresAt: string | null;
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  createdBy: string;
}

/** Make a key; answers its row and the secret (which is stored nowhere). */
export async function createKey(db: Knex, input: NewKey): Promise<{ row: ApiKeyRow; secret: string }> {
  const secret = KEY_PREFIX + randomBytes(32).toString('base64url');
  const [row] = (await db(T.keys)
    .insert({
      id: randomUUID(),
      team_id: input.team,
      name: input.name,
      prefix: `${secret.slice(0, KEY_PREFIX.length + 6)}…`,
      hash: hashOf(secret),
      models: JSON.stringify(input.models),
      expires_at: input.expiresAt,
      rpm: input.requestsPerMinute,
      tpm: input.tokensPerMinute,
      created_by: input.createdBy,
    })
    .returning('*')) as ApiKeyRow[];
  return { row: row!, secret };
}

/**
 * The key a secret belongs to (revoked and expired ones too: the caller says why it refuses).
 * Looked up by the secret itself in memory, so a cached key costs no hashing.
 */
export class KeyCache {
  private readonly entries = new Map<string, { at: number; hash: string; row: ApiKeyRow | null }>();

  constructor(private readonly ttlMs: () => number) {}

  /** The key of a secret looked up less than `keyCacheSeconds` ago (null: no such key), or undefined: ask `find`. */
  cached(secret: string): ApiKeyRow | null | undefined {
    const hit = this.entries.get(secret);
    return hit && Date.now() - hit.at < this.ttlMs() ? hit.row : undefined;
  }

  async find(db: Knex, secret: string): Promise<ApiKeyRow | null> {
    const hit = this.cached(secret);
    if (hit !== undefined) return hit;
    const hash = hashOf(secret);
    const row = ((await db(T.keys).where({ hash }).first()) as ApiKeyRow | undefined) ?? null;
    // Bounded: unknown secrets (a caller guessing) must not grow it without end.
    if (this.entries.size >= 10_000) this.entries.clear();
    this.entries.set(secret, { at: Date.now(), hash, row });
    return row;
  }

  /** Forget a key (revoked here: refused at once). */
  forget(hash: string): void {
    for (const [secret, entry] of this.entries) if (entry.hash === hash) this.entries.delete(secret);
  }

  clear(): void {
    this.entries.clear();
  }
}
