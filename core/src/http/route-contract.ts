import type { Knex } from 'knex';
import type { Middleware, ParameterizedContext } from 'koa';
import {
  AiplatError,
  isReply,
  routeMutates,
  type Logger,
  type PluginContext,
  type Principal,
  type RouteContext,
  type RouteDefinition,
} from '@aiplat/plugin-sdk';
import { multipartParts, rawBodyStream, readJsonBody, readRawBody, hasBody } from './body.js';
import { bodyValidator, paramsValidator, queryValidator, type Validator } from './validation.js';
import { outsideRequest, withinRequestTransaction } from '../db/request-scope.js';
import type { AuditWriter } from '../audit/audit.js';

export interface RouteOwner {
  /** The plugin id, or `core`. */
  id: string;
  /** Permissions this owner may use on its routes. */
  permissions: ReadonlySet<string>;
  /** The owning plugin's running context (undefined for the core). */
  context?: () => PluginContext | undefined;
}

export interface RouteRuntime {
  db(): Knex;
  authenticate(header: string | undefined): Promise<Principal | undefined>;
  authorize(principal: Principal, permission: string): boolean;
  audit: AuditWriter;
  logger: Logger;
}

export class RouteContractError extends Error {}

export interface RequestState {
  requestId: string;
  errorStyle: 'aiplat' | 'openai';
  route?: string;
  plugin?: string;
  user?: Principal;
}

export type AppContext = ParameterizedContext<RequestState>;

const BEARER = /^Bearer\s+(.+)$/i;

/** Check a route against the contract before it is mounted; the message names the route and the rule. */
export function checkRoute(route: RouteDefinition, owner: RouteOwner): void {
  const name = `${owner.id}: route ${String(route.method)} ${String(route.path)}`;
  const fail = (message: string): never => {
    throw new RouteContractError(`${name}: ${message}`);
  };
  if (!['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(route.method)) fail(`unknown method ${String(route.method)}`);
  if (typeof route.path !== 'string' || !route.path.startsWith('/')) fail('path must start with "/"');
  if (typeof route.handler !== 'function') fail('has no handler');
  const auth = [route.permission !== undefined, route.public !== undefined, route.custom !== undefined].filter(Boolean).length;
  if (auth !== 1) fail('must declare exactly one of permission, public: { reason } or custom: { reason }');
  if (route.public && !(typeof route.public.reason === 'string' && route.public.reason.trim().length >= 8)) {
    fail('public routes must give a reason (at least 8 characters) for skipping authentication');
  }
  if (route.custom && !(typeof route.custom.reason === 'string' && route.custom.reason.trim().length >= 8)) {
    fail('custom-auth routes must give a reason (at least 8 characters)');
  }
  if (route.permission !== undefined && !owner.permissions.has(route.permission)) {
    fail(`uses permission "${route.permission}", which ${owner.id === 'core' ? 'the core' : `plugin ${owner.id}`} does not declare (declare it under "permissions" in aiplat-plugin.json)`);
  }
  const mutates = routeMutates(route);
  if (!mutates && route.audit === 'request') fail('audit "request" needs a mutating route');
  if ((route.method === 'GET' || route.method === 'HEAD') && route.body && route.body.mode !== 'none') fail(`${route.method} routes take no body`);
  if (route.body?.mode === 'json') {
    if (typeof route.body.schema !== 'object' || route.body.schema === null) fail('json body needs a schema');
  }
  const limit = route.body && 'limit' in route.body ? route.body.limit : undefined;
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) fail('body limit must be a positive integer of bytes');
}

function compileValidators(route: RouteDefinition): { body?: Validator; query?: Validator; params?: Validator } {
  return {
    body: route.body?.mode === 'json' ? bodyValidator(route.body.schema) : undefined,
    query: route.query ? queryValidator(route.query) : undefined,
    params: route.params ? paramsValidator(route.params) : undefined,
  };
}

function queryObject(ctx: AppContext): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(ctx.query)) out[key] = value;
  return out;
}

/** Turn a route definition into Koa middleware that enforces the contract around its handler. */
export function compileRoute(route: RouteDefinition, owner: RouteOwner, runtime: RouteRuntime): Middleware<RequestState> {
  checkRoute(route, owner);
  let validators: ReturnType<typeof compileValidators>;
  try {
    validators = compileValidators(route);
  } catch (error) {
    throw new RouteContractError(`${owner.id}: route ${route.method} ${route.path}: schema does not compile: ${(error as Error).message}`);
  }
  const mutates = routeMutates(route);
  const audit = route.audit ?? (mutates ? 'request' : undefined);
  const body = route.body ?? { mode: 'none' as const };
  const errorStyle = route.errors ?? 'aiplat';
  const action = `${owner.id}:${route.method} ${route.path}`;

  return async (ctx) => {
    ctx.state.errorStyle = errorStyle;
    ctx.state.plugin = owner.id === 'core' ? undefined : owner.id;

    let user: Principal | undefined;
    if (route.permission !== undefined) {
      const header = ctx.req.headers.authorization;
      user = await runtime.authenticate(header ? BEARER.exec(header)?.[1] : undefined);
      if (!user) throw new AiplatError('unauthenticated');
      if (!runtime.authorize(user, route.permission)) {
        throw new AiplatError('forbidden', `This action needs the permission "${route.permission}"`, { permission: route.permission });
      }
      ctx.state.user = user;
    }

    const params = validators.params ? validators.params({ ...ctx.params }) : ctx.params;
    const query = validators.query ? validators.query(queryObject(ctx)) : queryObject(ctx);

    let parsed: unknown;
    let bodyStream: RouteContext['bodyStream'];
    const mode = body?.mode ?? 'none';
    if (mode === 'none') {
      if (hasBody(ctx.req)) throw new AiplatError('bad_request', `${route.method} ${ctx.path} takes no request body`);
    } else if (body?.mode === 'json') {
      parsed = validators.body!(await readJsonBody(ctx.req, body));
    } else if (body?.mode === 'raw') {
      if (body.stream) bodyStream = rawBodyStream(ctx.req, body);
      else parsed = await readRawBody(ctx.req, body);
    }

    const afterCommit: (() => unknown)[] = [];
    const run = async (db: Knex): Promise<unknown> => {
      const rc: RouteContext = {
        params: params as Record<string, string>,
        query: query as Record<string, unknown>,
        body: parsed,
        db,
        get user() {
          return user;
        },
        set user(value) {
          user = value;
          ctx.state.user = value;
        },
        requestId: ctx.state.requestId,
        get log() {
          return (owner.context?.()?.logger ?? runtime.logger).child({ reqId: ctx.state.requestId });
        },
        get plugin(): PluginContext {
          const context = owner.context?.();
          if (!context) throw new AiplatError('internal', `${owner.id} routes have no plugin context`);
          return context;
        },
        headers: ctx.req.headers,
        req: ctx.req,
        res: ctx.res,
        bodyStream,
        parts: () => {
          if (body?.mode !== 'multipart') throw new AiplatError('internal', 'parts() is only for multipart routes');
          return multipartParts(ctx.req, body);
        },
        audit: (auditAction, details) =>
          runtime.audit.write(db, {
            action: auditAction,
            plugin: ctx.state.plugin,
            actor: user,
            requestId: ctx.state.requestId,
            details: details ?? {},
          }),
        setHeader: (name, value) => ctx.set(name, value),
        afterCommit: (fn) => void afterCommit.push(fn),
        takeOver: () => {
          ctx.respond = false;
        },
      };
      return route.handler(rc);
    };

    let result: unknown;
    if (mutates) {
      result = await runtime.db().transaction(async (trx) => {
        const value = await withinRequestTransaction(() => run(trx));
        if (audit === 'request') {
          await runtime.audit.write(trx, {
            action,
            plugin: ctx.state.plugin,
            actor: user,
            requestId: ctx.state.requestId,
            status: isReply(value) ? value.status : value === undefined ? 204 : 200,
            details: { method: route.method, path: ctx.path, params: ctx.params },
          });
        }
        return value;
      });
    } else {
      result = await run(runtime.db());
    }

    for (const fn of afterCommit) await outsideRequest(fn);

    if (ctx.respond === false) return;
    if (isReply(result)) {
      ctx.status = result.status;
      if (result.headers) ctx.set(result.headers);
      if (result.body !== undefined) ctx.body = result.body;
    } else if (result === undefined) {
      ctx.status = 204;
    } else {
      ctx.body = result;
    }
  };
}
