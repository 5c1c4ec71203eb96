import { AiplatError, isAiplatError, type AuditOutcome, type Principal, type RouteContext } from '@aiplat/plugin-sdk';
import { hashToken } from '../auth/tokens.js';
import type { CoreAuditOptions } from '../http/route-contract.js';
import type { AuditActor } from './audit.js';

/**
 * Audit rows of authentication events (`core:auth.<event>`), written in the request's transaction
 * so they commit with what the event changed (a new refresh token, a revoked family, a failure
 * count). A refused attempt is returned by the auth service, not thrown, so its row commits too.
 * Never the password or a token: the username of a failed sign-in, the user a token belonged to.
 */
export type AuthEvent = 'login' | 'refresh' | 'refresh-reuse' | 'logout';

export interface AuthEventOptions {
  outcome: AuditOutcome;
  /** The signed-in user, or who presented the credential (a failed sign-in: anonymous with the attempted username). */
  actor?: Principal | AuditActor;
  /** The account concerned. */
  userId?: string;
  status?: number;
  details?: Record<string, unknown>;
}

/** Write a `core:auth.<event>` row for the request `ctx` (also for sign-in ways added later, e.g. single sign-on). */
export async function auditAuthEvent(ctx: RouteContext, event: AuthEvent, options: AuthEventOptions): Promise<void> {
  const audit: CoreAuditOptions = {
    outcome: options.outcome,
    status: options.status,
    ...(options.userId ? { resource: { type: 'user', id: options.userId } } : {}),
    ...(options.actor && !('via' in options.actor) ? { actor: options.actor } : {}),
  };
  if (options.actor && 'via' in options.actor) ctx.user = options.actor;
  await ctx.audit(`core:auth.${event}`, options.details ?? {}, audit);
}

interface Authenticator {
  authenticate(token: string | undefined): Promise<Principal | undefined>;
}

function refusal(error: AiplatError): Record<string, unknown> {
  const details = (error.details ?? {}) as Record<string, unknown>;
  return {
    reason: error.code,
    ...(typeof details.failures === 'number' ? { failures: details.failures } : {}),
    ...(typeof details.retryAfter === 'number' ? { retryAfter: details.retryAfter } : {}),
    ...(details.locked === true ? { locked: true } : {}),
  };
}

/** Password sign-in, audited: success names the user; a refusal the attempted username (never the password). */
export async function auditedLogin<T extends { accessToken: string }>(
  ctx: RouteContext,
  username: string,
  auth: Authenticator,
  login: () => Promise<T | AiplatError>,
): Promise<T | AiplatError> {
  const result = await login();
  if (isAiplatError(result)) {
    await auditAuthEvent(ctx, 'login', {
      outcome: 'denied',
      status: result.status,
      actor: { type: 'anonymous', name: username },
      details: { username, method: 'password', ...refusal(result) },
    });
    return result;
  }
  const user = await auth.authenticate(result.accessToken);
  await auditAuthEvent(ctx, 'login', { outcome: 'success', status: 200, actor: user, userId: user?.id, details: { method: 'password' } });
  return result;
}

async function tokenOwner(ctx: RouteContext, refreshToken: string): Promise<{ id: string; username: string } | undefined> {
  return (await ctx
    .db('refresh_tokens')
    .join('users', 'users.id', 'refresh_tokens.user_id')
    .where('refresh_tokens.token_hash', hashToken(refreshToken))
    .first('users.id as id', 'users.username as username')) as { id: string; username: string } | undefined;
}

/**
 * Refresh, audited. A refusal the service throws becomes a returned error (same answer), so its
 * row commits; a returned refusal is the reuse of a spent token, whose family the service revoked.
 */
export async function auditedRefresh<T extends { accessToken: string }>(
  ctx: RouteContext,
  refreshToken: string,
  auth: Authenticator,
  refresh: () => Promise<T | AiplatError>,
): Promise<T | AiplatError> {
  let result: T | AiplatError;
  try {
    result = await refresh();
  } catch (error) {
    if (!isAiplatError(error) || error.status !== 401) throw error;
    const owner = await tokenOwner(ctx, refreshToken);
    await auditAuthEvent(ctx, 'refresh', { outcome: 'denied', status: 401, userId: owner?.id, details: { reason: error.message } });
    return error;
  }
  if (isAiplatError(result)) {
    const owner = await tokenOwner(ctx, refreshToken);
    await auditAuthEvent(ctx, 'refresh-reuse', {
      outcome: 'denied',
      status: result.status,
      userId: owner?.id,
      details: { reason: result.message, familyRevoked: true, ...(owner ? { username: owner.username } : {}) },
    });
    return result;
  }
  const user = await auth.authenticate(result.accessToken);
  await auditAuthEvent(ctx, 'refresh', { outcome: 'success', status: 200, actor: user, userId: user?.id });
  return result;
}

/** Sign-out, audited with the user the refresh token belonged to (anonymous for an unknown token). */
export async function auditedLogout(ctx: RouteContext, refreshToken: string, logout: () => Promise<void>): Promise<void> {
  const owner = await tokenOwner(ctx, refreshToken);
  await logout();
  await auditAuthEvent(ctx, 'logout', {
    outcome: 'success',
    status: 204,
    actor: owner ? { type: 'user', id: owner.id, name: owner.username } : undefined,
    userId: owner?.id,
    details: owner ? {} : { knownToken: false },
  });
}
