/**
 * Personal API tokens: `aip_<16 hex id>_<43-character secret>`, shown once, stored as a SHA-256 of
 * the secret, limited to a subset of the owner's permissions, optionally expiring, revocable, with
 * the time of last use. A token works only while its owner is active and still holds a scope.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import type { Principal } from '@aiplat/plugin-sdk';
import type { IdentityService } from './identity.js';

const TOKEN_RE = /^aip_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** A verified token is trusted this long before its row is read again (revocation here is immediate). */
const CACHE_MS = 60_000;
/** `last_used_at` is written at most this often per token. */
const TOUCH_MS = 60_000;

export interface ApiTokenRow {
  id: string;
  user_id: string;
  name: string;
  secret_hash: string;
  permissions: string[] | string;
  expires_at: Date | string | null;
  last_used_at: Date | string | null;
  revoked_at: Date | string | null;
  created_at: Date | string;
}

export interface ApiTokenView {
  id: string;
  name: string;
  permissions: string[];
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  createdAt: string;
}

export function isApiToken(token: string): boolean {
  return token.startsWith('aip_');
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

const iso = (value: Date | string | null): string | null => (value === null ? null : new Date(value).toISOString());

export function tokenView(row: ApiTokenRow): ApiTokenView {
  return {
    id: row.id,
    name: row.name,
    permissions: typeof row.permissions === 'string' ? (JSON.parse(row.permissions) as string[]) : row.permissions,
    expiresAt: iso(row.expires_at),
    lastUsedAt: iso(row.last_used_at),
    revokedAt: iso(row.revoked_at),
    createdAt: iso(row.created_at)!,
  };
}

export class ApiTokens {
  private cache = new Map<string, { principal: Principal; until: number; expiresAt: number | null }>();
  private touched = new Map<string, number>();

  constructor(
    private readonly db: () => Knex,
    private readonly identity: IdentityService,
  ) {}

  /** Make a token; the clear value is returned once and never stored. */
  async create(db: Knex, userId: string, name: string, permissions: string[], expiresAt: Date | null): Promise<{ token: string; view: ApiTokenView }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const [row] = (await db('api_tokens')
      .insert({ id, user_id: userId, name, secret_hash: hashSecret(secret), permissions: JSON.stringify(permissions), expires_at: expiresAt })
      .returning('*')) as ApiTokenRow[];
    return { token: `aip_${id}_${secret}`, view: tokenView(row!) };
  }

  /** Forget a revoked token at once (this replica; others within the cache time or on the identity event). */
  forget(id: string): void {
    for (const [token, entry] of this.cache) if (entry.principal.tokenId === id) this.cache.delete(token);
  }

  forgetAll(): void {
    this.cache.clear();
  }

  /** The cached principal of a token verified less than a minute ago, synchronously. */
  cached(token: string): Principal | undefined {
    const hit = this.cache.get(token);
    if (!hit) return undefined;
    const now = Date.now();
    if (hit.until < now || (hit.expiresAt !== null && hit.expiresAt < now) || !this.identity.isActive(hit.principal.id)) {
      this.cache.delete(token);
      return undefined;
    }
    return hit.principal;
  }

  async verify(token: string): Promise<Principal | undefined> {
    const hit = this.cached(token);
    if (hit) return hit;
    const match = TOKEN_RE.exec(token);
    if (!match) return undefined;
    const [, id, secret] = match;
    const row = (await this.db()('api_tokens').where({ id }).first()) as ApiTokenRow | undefined;
    if (!row || row.revoked_at) return undefined;
    const expected = Buffer.from(row.secret_hash, 'hex');
    const given = Buffer.from(hashSecret(secret!), 'hex');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    const expiresAt = row.expires_at ? new Date(row.expires_at).getTime() : null;
    if (expiresAt !== null && expiresAt <= Date.now()) return undefined;
    if (!this.identity.isActive(row.user_id)) return undefined;
    const user = (await this.db()('users').where({ id: row.user_id }).first('id', 'username')) as { id: string; username: string } | undefined;
    if (!user) return undefined;
    const principal = this.identity.principal(user, 'token', { id: row.id, scopes: tokenView(row).permissions });
    if (this.cache.size >= 10_000) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(token, { principal, until: Date.now() + CACHE_MS, expiresAt });
    this.touch(row.id);
    return principal;
  }

  /** Record the use, at most once a minute per token, outside any request transaction. */
  private touch(id: string): void {
    const now = Date.now();
    if ((this.touched.get(id) ?? 0) > now - TOUCH_MS) return;
    this.touched.set(id, now);
    void this.db()('api_tokens')
      .where({ id })
      .update({ last_used_at: new Date(now) })
      .catch(() => undefined);
  }
}
