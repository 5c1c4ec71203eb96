import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { AiplatError, type Logger, type Principal } from '@aiplat/plugin-sdk';
import { burnPasswordCheck, hashPassword, verifyPassword } from './passwords.js';
import { deriveKey, hashToken, newRefreshToken, TokenService } from './tokens.js';
import { LoginThrottle } from './throttle.js';

export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  tokenType: 'Bearer';
}

const REFRESH_TTL_SECONDS = 30 * 24 * 3600;

/** Readable passwords for the generated admin password: no look-alike characters. */
function generatePassword(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const bytes = randomBytes(20);
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}

/**
 * Bootstrap sign-in: the first admin, password login, refresh and logout. The identity issue
 * grows this into users, roles, OIDC and API tokens while keeping these shapes.
 */
export class AuthService {
  readonly throttle = new LoginThrottle();

  private constructor(
    private readonly db: Knex,
    readonly tokens: TokenService,
    private readonly logger: Logger,
  ) {}

  static async create(options: {
    db: Knex;
    secretKey?: string;
    accessTtl: number;
    logger: Logger;
    /** Builds the principal of a verified access token (the identity service's live view of the user). */
    principal?: (user: { id: string; username: string }) => Principal;
  }): Promise<AuthService> {
    const key = options.secretKey ? deriveKey(options.secretKey, 'jwt') : await AuthService.storedKey(options.db);
    return new AuthService(options.db, new TokenService(key, options.accessTtl, options.principal), options.logger);
  }

  /** Without AIPLAT_SECRET_KEY the signing key is random, made once and kept in the database so every replica shares it. */
  private static async storedKey(db: Knex): Promise<Uint8Array> {
    await db('settings')
      .insert({ key: 'auth.jwtKey', value: JSON.stringify(randomBytes(32).toString('base64')) })
      .onConflict('key')
      .ignore();
    const row = (await db('settings').where({ key: 'auth.jwtKey' }).first('value')) as { value: string };
    return new Uint8Array(Buffer.from(row.value, 'base64'));
  }

  /** First start: create `admin` with AIPLAT_ADMIN_PASSWORD, or a generated password printed once. */
  async bootstrapAdmin(password: string | undefined): Promise<{ created: boolean; generatedPassword?: string }> {
    const existing = await this.db('users').where({ username: 'admin' }).first('id');
    if (existing) return { created: false };
    const chosen = password ?? generatePassword();
    // Like every user, the administrator belongs to the default team and submits there by default.
    const hash = await hashPassword(chosen);
    const inserted = await this.db.transaction(async (trx) => {
      const rows = (await trx('users')
        .insert({ id: randomUUID(), username: 'admin', password_hash: hash, roles: JSON.stringify(['admin']), default_team_id: 'default' })
        .onConflict('username')
        .ignore()
        .returning('id')) as { id: string }[];
      if (rows.length > 0) await trx('team_members').insert({ team_id: 'default', user_id: rows[0]!.id }).onConflict(['team_id', 'user_id']).ignore();
      return rows;
    });
    if (inserted.length === 0) return { created: false };
    return password ? { created: true } : { created: true, generatedPassword: chosen };
  }

  /**
   * Password sign-in. A refused attempt is returned (not thrown) so that the failure count it
   * records commits with the request; too many failures for the account or the address answer
   * `rate_limited` with the seconds to wait, before the password is even checked.
   */
  async login(db: Knex, username: string, password: string, ip = 'unknown'): Promise<TokenPair | AiplatError> {
    const keys = LoginThrottle.keys(username, ip);
    const verdict = await this.throttle.check(db, [keys.account, keys.address]);
    if (verdict.retryAfter > 0) {
      return new AiplatError(
        'rate_limited',
        verdict.locked
          ? `Too many failed sign-ins: this account or address is locked for ${verdict.retryAfter} s`
          : `Too many failed sign-ins: wait ${verdict.retryAfter} s before trying again`,
        { retryAfter: verdict.retryAfter, locked: verdict.locked },
      );
    }
    const user = (await db('users').where({ username }).whereNull('deleted_at').first()) as
      | { id: string; username: string; password_hash: string | null; roles: string[]; disabled_at: Date | null; source: string }
      | undefined;
    let ok = false;
    if (!user || !user.password_hash) await burnPasswordCheck(password);
    else ok = (await verifyPassword(user.password_hash, password)) && !user.disabled_at;
    if (!ok || !user) {
      const failures = await this.throttle.fail(db, [keys.account, keys.address]);
      // A single sign-on account has no password here: say so rather than "wrong password".
      if (user && !user.password_hash && user.source === 'oidc') {
        return new AiplatError('invalid_credentials', 'This account signs in through single sign-on and has no password here: use the single sign-on button', { failures, sso: true });
      }
      return new AiplatError('invalid_credentials', undefined, { failures });
    }
    await this.throttle.succeed(db, keys.account);
    await db('users').where({ id: user.id }).update({ last_login_at: db.fn.now() });
    return this.issue(db, user, randomUUID());
  }

  /** Sign-in for a user another way has authenticated (single sign-on): tokens without a password. */
  async issueFor(db: Knex, user: { id: string; username: string; roles: string[] }): Promise<TokenPair> {
    await db('users').where({ id: user.id }).update({ last_login_at: db.fn.now() });
    return this.issue(db, user, randomUUID());
  }

  /** End every session of a user (password reset, disabling, deletion). */
  async revokeSessions(db: Knex, userId: string): Promise<void> {
    await db('refresh_tokens').where({ user_id: userId }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
    this.tokens.forgetUser(userId);
  }

  private async issue(db: Knex, user: { id: string; username: string; roles: string[] }, familyId: string): Promise<TokenPair> {
    const refresh = newRefreshToken();
    await db('refresh_tokens').insert({
      id: randomUUID(),
      user_id: user.id,
      token_hash: refresh.hash,
      family_id: familyId,
      expires_at: new Date(Date.now() + REFRESH_TTL_SECONDS * 1000),
    });
    return {
      accessToken: await this.tokens.signAccess(user),
      refreshToken: refresh.token,
      expiresIn: this.tokens.accessTtlSeconds,
      tokenType: 'Bearer',
    };
  }

  /**
   * Rotate a refresh token. Presenting one that was already used revokes its whole family; that
   * case is returned, not thrown, so the revocation commits with the request.
   */
  async refresh(db: Knex, refreshToken: string): Promise<TokenPair | AiplatError> {
    const row = (await db('refresh_tokens').where({ token_hash: hashToken(refreshToken) }).first()) as
      | { id: string; user_id: string; family_id: string; expires_at: Date; revoked_at: Date | null }
      | undefined;
    if (!row) throw new AiplatError('unauthenticated', 'The refresh token is not valid');
    if (row.revoked_at) {
      await db('refresh_tokens').where({ family_id: row.family_id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
      this.logger.warn({ userId: row.user_id }, 'reused refresh token: revoked its family');
      return new AiplatError('unauthenticated', 'The refresh token was already used; sign in again');
    }
    if (new Date(row.expires_at).getTime() < Date.now()) throw new AiplatError('unauthenticated', 'The refresh token has expired; sign in again');
    const user = (await db('users').where({ id: row.user_id }).whereNull('disabled_at').whereNull('deleted_at').first()) as
      | { id: string; username: string; roles: string[] }
      | undefined;
    if (!user) throw new AiplatError('unauthenticated', 'The account is disabled');
    const updated = await db('refresh_tokens').where({ id: row.id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
    if (updated === 0) throw new AiplatError('unauthenticated', 'The refresh token was already used; sign in again');
    return this.issue(db, user, row.family_id);
  }

  async logout(db: Knex, refreshToken: string): Promise<void> {
    const row = (await db('refresh_tokens').where({ token_hash: hashToken(refreshToken) }).first('family_id')) as { family_id: string } | undefined;
    if (row) await db('refresh_tokens').where({ family_id: row.family_id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
  }

  authenticate = async (token: string | undefined): Promise<Principal | undefined> => {
    if (!token) return undefined;
    return this.tokens.verifyAccess(token);
  };
}
