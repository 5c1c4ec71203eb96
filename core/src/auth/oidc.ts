/**
 * Single sign-on with OpenID Connect (authorization code + PKCE, openid-client): docs/identity.md
 * "Single sign-on (OIDC)".
 *
 *   GET  /auth/oidc            whether the sign-in page offers it, and the button's label
 *   GET  /auth/oidc/start      → 302 to the provider (state, nonce, PKCE S256, browser binding)
 *   GET  /auth/oidc/callback   the provider's answer → the user is created or updated from the
 *                              claims (just in time), the mapping applied → 302 to the shell's
 *                              /login/sso with a one-time code (never a token in a URL)
 *   POST /auth/oidc/exchange   that code → aiplat tokens
 *
 * Accounts are found by (source `oidc`, external id = the `sub` claim) only: a local account is
 * never linked by its name. The provider owns an SSO user's global roles (the mapped roles plus
 * the default roles, set at every sign-in) and the team memberships the mapping made; memberships
 * an administrator added stay as they are.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import * as client from 'openid-client';
import { AiplatError, json, reply, type Logger, type Reply, type RouteContext, type RouteDefinition } from '@aiplat/plugin-sdk';
import type { OidcConfig, OidcMapping } from '../config/oidc-config.js';
import type { AuditWriter } from '../audit/audit.js';
import type { AuthService } from './auth-service.js';
import type { IdentityService } from './identity.js';

/** A sign-in in progress lives this long at most. */
const LOGIN_TTL_MS = 10 * 60_000;
/** The shell has this long to trade the one-time code for tokens. */
const HANDOFF_TTL_MS = 60_000;
/** Seconds openid-client waits for the provider (discovery, token, userinfo). */
const PROVIDER_TIMEOUT_S = 10;
/** The cookie binding a sign-in to the browser that started it (login CSRF). */
const BROWSER_COOKIE = 'aiplat_sso';
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$/;

/** Why a sign-in failed, as the shell's `/login?sso_error=<code>` names it (translated there). */
export type SsoErrorCode = 'denied' | 'idp_error' | 'state' | 'failed' | 'disabled' | 'unavailable';

export interface OidcServiceOptions {
  /** Unset: single sign-on is off (the routes say so). */
  config: OidcConfig | undefined;
  /** PUBLIC_URL (no trailing slash), when set. */
  publicUrl: string | undefined;
  /** The core's own URL, known once it listens (used when PUBLIC_URL is unset). */
  ownUrl: () => string;
  /** PUBLIC_URL's path prefix ('' at the root): where the shell's pages are. */
  basePath: string;
  auth: AuthService;
  identity: IdentityService;
  audit: AuditWriter;
  /** Reload users, roles and teams here and on every replica (after the change commits). */
  changed(kind: 'users'): Promise<void>;
  logger: Logger;
}

type Claims = Record<string, unknown> & { sub: string };

interface LoginRow {
  state_hash: string;
  browser_hash: string;
  nonce: string;
  code_verifier: string;
  redirect: string;
  expires_at: Date | string;
}

interface UserRow {
  id: string;
  username: string;
  roles: string[] | string;
  disabled_at: Date | string | null;
  deleted_at: Date | string | null;
  default_team_id: string | null;
}

interface Provisioned {
  user: { id: string; username: string; roles: string[] };
  created: boolean;
  teamsAdded: string[];
  teamsRemoved: string[];
}

class SsoFailure extends Error {
  constructor(
    readonly code: SsoErrorCode,
    /** For the log and the audit row (never shown to the person). */
    readonly reason: string,
    readonly subject?: string,
  ) {
    super(reason);
  }
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const list = (v: string[] | string | null | undefined): string[] => (Array.isArray(v) ? v : typeof v === 'string' ? (JSON.parse(v) as string[]) : []);

/** An error's message with its cause (a refused connection, the provider's error code). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const e = error as Error & { code?: string; error?: string; error_description?: string; cause?: unknown };
  const parts = [e.message];
  if (e.error) parts.push(`${e.error}${e.error_description ? `: ${e.error_description}` : ''}`);
  const cause = e.cause as (Error & { code?: string }) | undefined;
  if (cause && typeof cause === 'object' && 'message' in cause) parts.push(cause.code ? `${cause.code} ${cause.message}` : cause.message);
  return parts.filter(Boolean).join(' — ');
}

/** A path inside the shell to return to: relative, no scheme or host (no open redirect). */
export function safeRedirect(value: unknown): string {
  if (typeof value !== 'string' || value.length > 2000) return '/';
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\') || [...value].some((c) => c.charCodeAt(0) < 0x20)) return '/';
  if (value.startsWith('/login')) return '/';
  return value;
}

/** A claim by name, else by dotted path into object claims (`realm_access.roles`). */
function claimAt(claims: Record<string, unknown>, name: string): unknown {
  if (name in claims) return claims[name];
  let value: unknown = claims;
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

/** A username from a claim value: the allowed characters only, 2–64 of them. */
function cleanUsername(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const cleaned = value
    .normalize('NFKC')
    .trim()
    .replace(/[^A-Za-z0-9._@-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 64);
  return USERNAME.test(cleaned) ? cleaned : undefined;
}

export class OidcService {
  private discovered: Promise<client.Configuration> | undefined;
  /** Roles a mapping names that do not exist: warned about once each. */
  private readonly unknownRolesWarned = new Set<string>();

  constructor(private readonly options: OidcServiceOptions) {
    const { config, logger, publicUrl } = options;
    if (!config) return;
    if (!publicUrl) {
      logger.warn(
        { issuer: config.issuer },
        'single sign-on is on but PUBLIC_URL is not set: the redirect URI is the core’s own address, which people’s browsers may not reach. Set PUBLIC_URL to the address users open aiplat at',
      );
    }
    if (config.issuer.startsWith('http:')) logger.warn({ issuer: config.issuer }, 'single sign-on: the identity provider is reached over plain http; use https outside a test or a single machine');
  }

  get enabled(): boolean {
    return this.options.config !== undefined;
  }

  /** Where the provider sends the browser back: register it at the provider. */
  redirectUri(): string {
    return `${this.options.publicUrl ?? this.options.ownUrl()}/api/v1/auth/oidc/callback`;
  }

  private get config(): OidcConfig {
    const config = this.options.config;
    if (!config) throw new AiplatError('not_found', 'Single sign-on is not configured on this server (set AIPLAT_OIDC_ISSUER and AIPLAT_OIDC_CLIENT_ID)');
    return config;
  }

  /** The provider's metadata, discovered once and kept; a failure is retried at the next sign-in. */
  discover(): Promise<client.Configuration> {
    const config = this.config;
    this.discovered ??= (async () => {
      const issuer = new URL(config.issuer);
      const insecure = issuer.protocol === 'http:';
      const execute = insecure ? [client.allowInsecureRequests] : [];
      const secret = config.clientSecret;
      let configuration = await client.discovery(
        issuer,
        config.clientId,
        secret ? { client_secret: secret } : undefined,
        secret ? client.ClientSecretBasic(secret) : client.None(),
        { execute, timeout: PROVIDER_TIMEOUT_S },
      );
      // client_secret_basic is the standard's default; a provider that takes only _post gets that.
      const methods = configuration.serverMetadata().token_endpoint_auth_methods_supported;
      if (secret && methods && !methods.includes('client_secret_basic') && methods.includes('client_secret_post')) {
        configuration = new client.Configuration(configuration.serverMetadata(), config.clientId, { client_secret: secret }, client.ClientSecretPost(secret));
        configuration.timeout = PROVIDER_TIMEOUT_S;
        for (const fn of execute) fn(configuration);
      }
      this.options.logger.info({ issuer: config.issuer, clientId: config.clientId, redirectUri: this.redirectUri() }, 'single sign-on: identity provider discovered (register the redirect URI there)');
      return configuration;
    })();
    this.discovered.catch(() => {
      this.discovered = undefined;
    });
    return this.discovered;
  }

  private unavailable(error: unknown): AiplatError {
    return new AiplatError(
      'unavailable',
      `Single sign-on is not available: the identity provider at ${this.config.issuer} cannot be reached or did not describe itself (${describe(error)}). Try again later, or sign in with a password.`,
    );
  }

  /** Begin a sign-in: remember state, nonce and verifier; send the browser to the provider. */
  async start(ctx: RouteContext<unknown, { redirect?: string }>): Promise<Reply> {
    const config = this.config;
    let configuration: client.Configuration;
    try {
      configuration = await this.discover();
    } catch (error) {
      ctx.log.warn({ err: describe(error), issuer: config.issuer }, 'single sign-on: cannot discover the identity provider');
      // A browser gets the sign-in page with the reason; an API caller the 503.
      if (/\btext\/html\b/.test(ctx.headers.accept ?? '')) return this.toLogin('unavailable');
      throw this.unavailable(error);
    }
    const state = client.randomState();
    const nonce = client.randomNonce();
    const verifier = client.randomPKCECodeVerifier();
    // One binding per browser, reused by sign-ins started in other tabs.
    const existing = cookieValue(ctx.headers.cookie, BROWSER_COOKIE);
    const browser = existing && /^[A-Za-z0-9_-]{32,64}$/.test(existing) ? existing : randomBytes(24).toString('base64url');
    await ctx.db('oidc_logins').where('expires_at', '<', new Date()).delete();
    await ctx.db('oidc_logins').insert({
      state_hash: sha256(state),
      browser_hash: sha256(browser),
      nonce,
      code_verifier: verifier,
      redirect: safeRedirect(ctx.query.redirect),
      expires_at: new Date(Date.now() + LOGIN_TTL_MS),
    });
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.redirectUri(),
      scope: config.scopes.join(' '),
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const secure = (this.options.publicUrl ?? this.options.ownUrl()).startsWith('https:') ? '; Secure' : '';
    return reply(302, undefined, {
      location: url.href,
      'cache-control': 'no-store',
      'set-cookie': `${BROWSER_COOKIE}=${browser}; Path=${this.options.basePath}/api/v1/auth/oidc; Max-Age=${LOGIN_TTL_MS / 1000}; HttpOnly; SameSite=Lax${secure}`,
    });
  }

  private toLogin(code: SsoErrorCode): Reply {
    return reply(302, undefined, { location: `${this.options.basePath}/login?sso_error=${code}`, 'cache-control': 'no-store' });
  }

  /** The provider's answer: check it, provision the user, hand the sign-in to the shell. */
  async callback(ctx: RouteContext): Promise<Reply> {
    const config = this.config;
    const query = ctx.query as Record<string, unknown>;
    const param = (name: string) => (typeof query[name] === 'string' ? (query[name] as string) : undefined);
    try {
      // The state is spent at once, whatever happens next: it can never be replayed.
      const state = param('state');
      const login = state
        ? ((await ctx.db('oidc_logins').where({ state_hash: sha256(state) }).delete().returning(['browser_hash', 'nonce', 'code_verifier', 'redirect', 'expires_at'])) as LoginRow[])[0]
        : undefined;
      const error = param('error');
      if (error) {
        const description = param('error_description');
        throw new SsoFailure(error === 'access_denied' ? 'denied' : 'idp_error', `the identity provider answered "${error}"${description ? `: ${description}` : ''}`);
      }
      if (!state || !login) throw new SsoFailure('state', state ? 'the state is unknown, or was used already' : 'the answer carries no state');
      if (new Date(login.expires_at).getTime() < Date.now()) throw new SsoFailure('state', 'the sign-in took longer than 10 minutes');
      const browser = cookieValue(ctx.headers.cookie, BROWSER_COOKIE);
      if (!browser || sha256(browser) !== login.browser_hash) throw new SsoFailure('state', 'the sign-in was started in another browser (or its cookie was lost)');

      let configuration: client.Configuration;
      try {
        configuration = await this.discover();
      } catch (e) {
        throw new SsoFailure('unavailable', `cannot discover the identity provider: ${describe(e)}`);
      }
      // The redirect URI exactly as registered, with the provider's parameters.
      const currentUrl = new URL(this.redirectUri());
      for (const [key, value] of Object.entries(query)) if (typeof value === 'string') currentUrl.searchParams.set(key, value);
      let claims: Claims;
      try {
        // Checks the state, the ID token (signature, issuer, audience, expiry) and its nonce; sends the PKCE verifier.
        const tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
          pkceCodeVerifier: login.code_verifier,
          expectedNonce: login.nonce,
          expectedState: state,
          idTokenExpected: true,
        });
        const idClaims = tokens.claims()!;
        claims = { ...idClaims } as Claims;
        // Providers put profile and group claims in the userinfo answer, not always in the ID token.
        if (configuration.serverMetadata().userinfo_endpoint && tokens.access_token) {
          const info = await client.fetchUserInfo(configuration, tokens.access_token, idClaims.sub);
          claims = { ...claims, ...info, sub: idClaims.sub };
        }
      } catch (e) {
        throw new SsoFailure('failed', `the sign-in could not be completed with the identity provider: ${describe(e)}`);
      }
      if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > 255) throw new SsoFailure('failed', 'the ID token has no usable subject');

      // The account, its roles and teams, and the one-time code: together, with the audit row.
      const { provisioned, code } = await ctx.db.transaction(async (trx) => {
        const provisioned = await this.provision(trx, claims, ctx.log);
        const code = randomBytes(32).toString('base64url');
        await trx('oidc_handoffs').where('expires_at', '<', new Date()).delete();
        await trx('oidc_handoffs').insert({ code_hash: sha256(code), user_id: provisioned.user.id, expires_at: new Date(Date.now() + HANDOFF_TTL_MS) });
        await this.options.audit.write(trx, {
          action: 'core:auth.login',
          actor: { type: 'user', id: provisioned.user.id, name: provisioned.user.username },
          resource: { type: 'user', id: provisioned.user.id },
          outcome: 'success',
          status: 302,
          requestId: ctx.requestId,
          clientIp: ctx.ip,
          details: {
            method: 'oidc',
            issuer: config.issuer,
            subject: claims.sub,
            created: provisioned.created,
            roles: provisioned.user.roles,
            ...(provisioned.teamsAdded.length ? { teamsAdded: provisioned.teamsAdded } : {}),
            ...(provisioned.teamsRemoved.length ? { teamsRemoved: provisioned.teamsRemoved } : {}),
          },
        });
        return { provisioned, code };
      });
      ctx.afterCommit(() => this.options.changed('users'));
      ctx.log.info(
        { userId: provisioned.user.id, username: provisioned.user.username, created: provisioned.created, roles: provisioned.user.roles },
        provisioned.created ? 'single sign-on: created the user' : 'single sign-on: signed in',
      );
      const to = new URLSearchParams({ code, redirect: login.redirect });
      return reply(302, undefined, { location: `${this.options.basePath}/login/sso?${to.toString()}`, 'cache-control': 'no-store' });
    } catch (error) {
      if (!(error instanceof SsoFailure)) throw error;
      ctx.log.warn({ reason: error.reason, ssoError: error.code, ...(error.subject ? { subject: error.subject } : {}) }, 'single sign-on refused');
      await this.options.audit.write(ctx.db, {
        action: 'core:auth.login',
        actor: error.subject ? { type: 'anonymous', name: error.subject } : undefined,
        outcome: 'denied',
        status: 302,
        requestId: ctx.requestId,
        clientIp: ctx.ip,
        details: { method: 'oidc', reason: error.code, message: error.reason },
      });
      return this.toLogin(error.code);
    }
  }

  /**
   * Create or update the SSO user from the claims (just in time) and apply the mapping. Throws an
   * SsoFailure (before changing anything) for a disabled account.
   */
  private async provision(trx: Knex, claims: Claims, log: Logger): Promise<Provisioned> {
    let existing = (await trx('users').where({ source: 'oidc', external_id: claims.sub }).first()) as UserRow | undefined;
    if (existing?.deleted_at) {
      // A deleted account keeps its record (for the audit log); the person gets a fresh one.
      await trx('users').where({ id: existing.id }).update({ external_id: `${claims.sub}~deleted~${existing.id}` });
      existing = undefined;
    }
    if (existing?.disabled_at) throw new SsoFailure('disabled', `the account "${existing.username}" is disabled`, existing.username);

    const { roles, teams } = this.mapClaims(claims, log);
    if (existing && list(existing.roles).includes('admin') && !roles.includes('admin')) {
      const admins = this.options.identity.activeAdmins();
      if (admins.length === 1 && admins[0] === existing.id) {
        log.warn({ userId: existing.id }, 'single sign-on: the mapping no longer makes this user an administrator, but they are the last active one: keeping the Admin role');
        roles.push('admin');
      }
    }
    const username = await this.pickUsername(trx, claims, existing, log);
    const profile = {
      display_name: typeof claims.name === 'string' ? claims.name.slice(0, 100) : null,
      email: typeof claims.email === 'string' && claims.email.length <= 200 ? claims.email : null,
    };
    let userId: string;
    if (existing) {
      userId = existing.id;
      await trx('users')
        .where({ id: userId })
        .update({ username, roles: JSON.stringify(roles), ...profile, updated_at: trx.fn.now() });
    } else {
      userId = randomUUID();
      await trx('users').insert({ id: userId, username, password_hash: null, source: 'oidc', external_id: claims.sub, roles: JSON.stringify(roles), ...profile });
    }

    // Team memberships: the mapping's own follow it; an administrator's stay.
    const wanted = new Map<string, string[]>();
    for (const grant of teams) {
      const teamId = await this.teamId(trx, grant.team, log);
      wanted.set(teamId, [...new Set([...(wanted.get(teamId) ?? []), ...grant.roles])]);
    }
    const current = (await trx('team_members').where({ user_id: userId }).select('team_id', 'roles', 'source')) as { team_id: string; roles: string[] | string; source: string | null }[];
    const added: string[] = [];
    const removed: string[] = [];
    for (const [teamId, teamRoles] of wanted) {
      const have = current.find((m) => m.team_id === teamId);
      if (!have) {
        await trx('team_members').insert({ team_id: teamId, user_id: userId, roles: JSON.stringify(teamRoles), source: 'oidc' });
        added.push(teamId);
      } else if (have.source === 'oidc' && JSON.stringify([...list(have.roles)].sort()) !== JSON.stringify([...teamRoles].sort())) {
        await trx('team_members').where({ team_id: teamId, user_id: userId }).update({ roles: JSON.stringify(teamRoles) });
      }
    }
    for (const m of current) {
      if (m.source === 'oidc' && !wanted.has(m.team_id)) {
        await trx('team_members').where({ team_id: m.team_id, user_id: userId }).delete();
        removed.push(m.team_id);
      }
    }
    let memberships = [...current.filter((m) => !removed.includes(m.team_id)).map((m) => m.team_id), ...added];
    if (!existing && memberships.length === 0) {
      // Like a user created without teams: the default team (an ordinary membership).
      await trx('team_members').insert({ team_id: 'default', user_id: userId, roles: '[]' }).onConflict(['team_id', 'user_id']).ignore();
      memberships = ['default'];
    }
    const defaultTeam = existing?.default_team_id;
    if (!defaultTeam || !memberships.includes(defaultTeam)) {
      await trx('users').where({ id: userId }).update({ default_team_id: added[0] ?? memberships[0] ?? null });
    }
    return { user: { id: userId, username, roles }, created: !existing, teamsAdded: added, teamsRemoved: removed };
  }

  /** Global roles (defaults plus every matching mapping's) and team grants, from the claims. */
  private mapClaims(claims: Claims, log: Logger): { roles: string[]; teams: { team: string; roles: string[] }[] } {
    const config = this.config;
    const rawGroups = claimAt(claims, config.groupsClaim);
    const groups = (Array.isArray(rawGroups) ? rawGroups : rawGroups === undefined || rawGroups === null ? [] : [rawGroups]).map(String);
    const matches = (m: OidcMapping): boolean => {
      if (m.group !== undefined) return groups.includes(m.group);
      if (m.claim) {
        const value = claimAt(claims, m.claim.name);
        const wanted = m.claim.value;
        return Array.isArray(value) ? value.some((v) => v === wanted || String(v) === String(wanted)) : value === wanted || (value !== undefined && value !== null && String(value) === String(wanted));
      }
      return false;
    };
    const roleIds = new Set<string>();
    const teams: { team: string; roles: string[] }[] = [];
    const resolve = (names: string[]) => {
      const out: string[] = [];
      for (const name of names) {
        const role = this.options.identity.resolveRole(name);
        if (role) out.push(role.id);
        else if (!this.unknownRolesWarned.has(name)) {
          this.unknownRolesWarned.add(name);
          log.warn({ role: name }, 'single sign-on: the mapping names a role that does not exist; it is skipped (create the role, or fix the mapping)');
        }
      }
      return out;
    };
    for (const id of resolve(config.defaultRoles)) roleIds.add(id);
    for (const mapping of config.mappings) {
      if (!matches(mapping)) continue;
      for (const id of resolve(mapping.roles)) roleIds.add(id);
      for (const grant of mapping.teams) teams.push({ team: grant.team, roles: resolve(grant.roles) });
    }
    return { roles: [...roleIds], teams };
  }

  /** A team by id or name; created when it does not exist yet. */
  private async teamId(trx: Knex, ref: string, log: Logger): Promise<string> {
    const find = async () =>
      (await trx('teams')
        .where({ id: ref })
        .orWhereRaw('lower(name) = lower(?)', [ref])
        .first('id')) as { id: string } | undefined;
    const found = await find();
    if (found) return found.id;
    await trx('teams')
      .insert({ id: `t_${randomBytes(6).toString('hex')}`, name: ref, description: 'Created by single sign-on (a group mapping)' })
      .onConflict('name')
      .ignore();
    log.info({ team: ref }, 'single sign-on: created a team the mapping names');
    return (await find())!.id;
  }

  /**
   * The username from the claims (`usernameClaim`, then `email`, then `sub`). One another account
   * holds gets a suffix: accounts are never joined by their names.
   */
  private async pickUsername(trx: Knex, claims: Claims, existing: UserRow | undefined, log: Logger): Promise<string> {
    const config = this.config;
    const wanted =
      cleanUsername(claimAt(claims, config.usernameClaim)) ?? cleanUsername(claims.email) ?? cleanUsername(claims.sub) ?? `sso-${sha256(claims.sub).slice(0, 12)}`;
    const holder = async (name: string) =>
      (await trx('users')
        .whereRaw('lower(username) = lower(?)', [name])
        .whereNot({ id: existing?.id ?? '' })
        .first('id', 'source')) as { id: string; source: string } | undefined;
    const taken = await holder(wanted);
    if (!taken) return wanted;
    const suffixed = (i: number) => {
      const suffix = i === 1 ? '-sso' : `-sso${i}`;
      return `${wanted.slice(0, 64 - suffix.length)}${suffix}`;
    };
    // Already suffixed at an earlier sign-in: keep it.
    if (existing && existing.username.toLowerCase().startsWith(suffixed(1).toLowerCase())) return existing.username;
    for (let i = 1; ; i++) {
      const candidate = suffixed(i);
      if (!(await holder(candidate))) {
        log.warn(
          { wanted, username: candidate, takenBy: taken.source === 'local' ? 'a local account' : 'another single sign-on account' },
          'single sign-on: the username is taken by another account, so this person gets a suffixed one (accounts are never linked by name)',
        );
        return candidate;
      }
    }
  }

  /** The one-time code from the callback → aiplat tokens for its user (who must still be active). */
  async exchange(ctx: RouteContext<{ code: string }>) {
    const rows = (await ctx.db('oidc_handoffs').where({ code_hash: sha256(ctx.body.code) }).delete().returning(['user_id', 'expires_at'])) as { user_id: string; expires_at: Date | string }[];
    const row = rows[0];
    if (!row || new Date(row.expires_at).getTime() < Date.now()) {
      throw new AiplatError('unauthenticated', 'The single sign-on code is not valid: it was used already or has expired. Sign in again.');
    }
    const user = (await ctx.db('users').where({ id: row.user_id }).whereNull('disabled_at').whereNull('deleted_at').first('id', 'username', 'roles')) as
      | { id: string; username: string; roles: string[] | string }
      | undefined;
    if (!user) throw new AiplatError('unauthenticated', 'The account is disabled');
    ctx.user = this.options.identity.principal(user);
    ctx.auditInfo = { resource: { type: 'user', id: user.id }, details: { method: 'oidc' } };
    return this.options.auth.issueFor(ctx.db, { id: user.id, username: user.username, roles: list(user.roles) });
  }

  routes(): RouteDefinition[] {
    return [
      {
        method: 'GET',
        path: '/auth/oidc',
        summary: 'Whether single sign-on is offered, and the label of its button',
        tags: ['auth'],
        public: { reason: 'the sign-in page asks whether single sign-on is offered before anyone is signed in' },
        responses: { 200: { description: 'Single sign-on', schema: { type: 'object', properties: { enabled: { type: 'boolean' }, label: { type: ['string', 'null'] } } } } },
        handler: () => ({ enabled: this.enabled, label: this.options.config?.label ?? null }),
      },
      {
        method: 'GET',
        path: '/auth/oidc/start',
        summary: 'Begin single sign-on: redirects the browser to the identity provider',
        tags: ['auth'],
        public: { reason: 'signing in through the identity provider is how a browser gets credentials' },
        query: { type: 'object', properties: { redirect: { type: 'string', maxLength: 2000, description: 'the shell path to open after signing in' } } },
        responses: { 302: { description: 'To the identity provider' }, 503: { description: 'The identity provider cannot be reached' } },
        handler: (ctx) => this.start(ctx as RouteContext<unknown, { redirect?: string }>),
      },
      {
        method: 'GET',
        path: '/auth/oidc/callback',
        summary: 'Where the identity provider sends the browser back (the registered redirect URI)',
        tags: ['auth'],
        public: { reason: 'the identity provider’s answer (code and state) is the credential' },
        // [audit] core:auth.login rows (method oidc), success or refusal, written by the handler.
        audit: 'explicit',
        responses: { 302: { description: 'To the shell: /login/sso with a one-time code, or /login?sso_error=<reason>' } },
        handler: (ctx) => this.callback(ctx),
      },
      {
        method: 'POST',
        path: '/auth/oidc/exchange',
        summary: 'Trade the one-time code of a finished single sign-on for tokens',
        tags: ['auth'],
        public: { reason: 'the one-time code from the single sign-on callback is the credential' },
        body: json({ type: 'object', required: ['code'], properties: { code: { type: 'string', minLength: 1, maxLength: 200 } } }),
        responses: {
          200: {
            description: 'Tokens',
            schema: { type: 'object', properties: { accessToken: { type: 'string' }, refreshToken: { type: 'string' }, expiresIn: { type: 'integer' }, tokenType: { const: 'Bearer' } } },
          },
        },
        handler: (ctx) => this.exchange(ctx),
      },
    ];
  }
}
