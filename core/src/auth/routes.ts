import { isAiplatError, json, reply, type Principal, type RouteDefinition } from '@aiplat/plugin-sdk';
import type { AuthService } from './auth-service.js';
import { auditedLogin, auditedLogout, auditedRefresh } from '../audit/auth-events.js';

const tokenPairSchema = {
  type: 'object',
  properties: {
    accessToken: { type: 'string' },
    refreshToken: { type: 'string' },
    expiresIn: { type: 'integer', description: 'seconds the access token lives' },
    tokenType: { const: 'Bearer' },
  },
};

export function authRoutes(auth: AuthService, permissionsOf: (principal: Principal) => string[]): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/auth/login',
      summary: 'Sign in with a username and password',
      tags: ['auth'],
      public: { reason: 'signing in is how a caller gets credentials' },
      audit: 'explicit', // [audit] core:auth.login rows, success or refusal (core/src/audit/auth-events.ts)
      body: json({
        type: 'object',
        required: ['username', 'password'],
        properties: {
          username: { type: 'string', minLength: 1, maxLength: 128 },
          password: { type: 'string', minLength: 1, maxLength: 1024 },
        },
      }),
      responses: { 200: { description: 'Tokens', schema: tokenPairSchema } },
      handler: async (ctx) => {
        const result = await auditedLogin(ctx, ctx.body.username, auth, () => auth.login(ctx.db, ctx.body.username, ctx.body.password, ctx.ip));
        if (isAiplatError(result)) {
          const retryAfter = (result.details as { retryAfter?: number } | undefined)?.retryAfter;
          return reply(
            result.status,
            { error: { code: result.code, message: result.message, ...(retryAfter ? { details: { retryAfter } } : {}), requestId: ctx.requestId } },
            retryAfter ? { 'retry-after': String(retryAfter) } : undefined,
          );
        }
        return result;
      },
    },
    {
      method: 'POST',
      path: '/auth/refresh',
      summary: 'Exchange a refresh token for new tokens (the old one stops working)',
      tags: ['auth'],
      public: { reason: 'the refresh token itself is the credential' },
      audit: 'explicit', // [audit] core:auth.refresh and core:auth.refresh-reuse rows
      body: json({ type: 'object', required: ['refreshToken'], properties: { refreshToken: { type: 'string', minLength: 1, maxLength: 512 } } }),
      responses: { 200: { description: 'Tokens', schema: tokenPairSchema } },
      handler: async (ctx) => {
        const result = await auditedRefresh(ctx, ctx.body.refreshToken, auth, () => auth.refresh(ctx.db, ctx.body.refreshToken));
        if (isAiplatError(result)) {
          return reply(result.status, { error: { code: result.code, message: result.message, requestId: ctx.requestId } });
        }
        return result;
      },
    },
    {
      method: 'POST',
      path: '/auth/logout',
      summary: 'Sign out: the refresh token and its family stop working',
      tags: ['auth'],
      public: { reason: 'the refresh token itself is the credential' },
      audit: 'explicit', // [audit] core:auth.logout rows
      body: json({ type: 'object', required: ['refreshToken'], properties: { refreshToken: { type: 'string', minLength: 1, maxLength: 512 } } }),
      handler: async (ctx) => {
        await auditedLogout(ctx, ctx.body.refreshToken, () => auth.logout(ctx.db, ctx.body.refreshToken));
      },
    },
    {
      method: 'GET',
      path: '/auth/me',
      summary: 'Who am I, and which permissions I hold (the shell shows only what they allow)',
      tags: ['auth'],
      permission: 'self:read',
      handler: (ctx) => ({ id: ctx.user!.id, username: ctx.user!.username, roles: ctx.user!.roles, permissions: permissionsOf(ctx.user!) }),
    },
  ];
}
