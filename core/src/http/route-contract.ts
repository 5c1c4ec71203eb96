import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Knex } from 'knex';
import type { Middleware, ParameterizedContext } from 'koa';
import {
  AiplatError,
  isAiplatError,
  isReply,
  routeMutates,
  type AuditInfo,
  type AuditOptions,
  type AuditResource,
  type Logger,
  type MultipartField,
  type MultipartFile,
  type PluginContext,
  type Principal,
  type RouteContext,
  type RouteDefinition,
} from '@aiplat/plugin-sdk';
import { multipartParts, rawBodyStream, readJsonBody, readRawBody, hasBody } from './body.js';
import { bodyValidator, paramsValidator, queryValidator, type Validator } from './validation.js';
import type { AuditActor, AuditWriter } from '../audit/audit.js';

/** [audit] `ctx.audit` options the core's own routes may use too: the actor (e.g. a failed sign-in's username) and the status. */
export interface CoreAuditOptions extends AuditOptions {
  actor?: AuditActor;
  status?: number;
}

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
  authenticate(token: string | undefined): Promise<Principal | undefined>;
  /** The principal of a token verified before and still valid, without waiting (undefined otherwise). */
  cachedPrincipal?(token: string): Principal | undefined;
  authorize(principal: Principal, permission: string): boolean;
  /** The permission for objects of one team (identity); without it, `authorize` answers. */
  authorizeInTeam?(principal: Principal, permission: string, teamId: string | null | undefined): boolean;
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

/**
 * What a route's handling needs of the request beyond the route: Koa's context has all of it,
 * and so has the direct path's small carrier (`http/direct.ts`) for data-plane routes.
 */
export interface Carrier {
  readonly state: RequestState;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly path: string;
  readonly ip: string;
  readonly params?: Record<string, string>;
  /** False once a handler took the response over. */
  respond?: boolean;
  set(name: string, value: string): void;
}

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

/**
 * The query string as the route's validator gets it: a plain object, a string per key, an array of
 * strings for a repeated key, decoded as URLSearchParams decodes (as Koa's `ctx.query` did). The same
 * on both paths. Built directly: Koa's `ctx.query` and `querystring.parse` (a null-prototype object
 * copied into a plain one) each cost a read request 2–3 µs, this about 0.2 µs (docs/adr/0014).
 */
export function queryOf(search: string): Record<string, unknown> {
  const out: Record<string, string | string[]> = {};
  if (!search) return out;
  for (const [key, value] of new URLSearchParams(search)) {
    if (!Object.hasOwn(out, key)) {
      // An own property, never the prototype's setter.
      if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      else out[key] = value;
    } else {
      const earlier = out[key]!;
      if (Array.isArray(earlier)) earlier.push(value);
      else out[key] = [earlier, value];
    }
  }
  return out;
}

/** Turn a route definition into Koa middleware that enforces the contract around its handler. */
export function compileRoute(route: RouteDefinition, owner: RouteOwner, runtime: RouteRuntime): Middleware<RequestState> {
  return compileRouteWays(route, owner, runtime).middleware;
}

/**
 * Whether a route is data-plane traffic served on the direct path (`http/direct.ts`, without
 * Koa): metered (ARCHITECTURE §4: counted, not audited row by row), not mutating (no transaction),
 * its body left to the handler (`passthrough`), and a path without parameters. The contract is the
 * same on both paths; only Koa's per-request machinery is left out.
 */
export function isDataPlane(route: RouteDefinition): boolean {
  return route.audit === 'metered' && !routeMutates(route) && route.body?.mode === 'passthrough' && isExactPath(route.path);
}

/** A route path without parameters or patterns (and not the prefix's root): found by one map lookup. */
export function isExactPath(path: string): boolean {
  return !/[:*(?]/.test(path) && path !== '/';
}

/** A route as Koa middleware, and for data-plane routes also as a handler of the direct path. */
export function compileRouteWays(route: RouteDefinition, owner: RouteOwner, runtime: RouteRuntime): { middleware: Middleware<RequestState>; direct?: (carrier: Carrier, search: string) => Promise<void> } {
  checkRoute(route, owner);
  let validators: ReturnType<typeof compileValidators>;
  try {
    validators = compileValidators(route);
  } catch (error) {
    throw new RouteContractError(`${owner.id}: route ${route.method} ${route.path}: schema does not compile: ${(error as Error).message}`);
  }
  const compiled: CompiledRoute = {
    route,
    owner,
    runtime,
    validators,
    mutates: routeMutates(route),
    audit: route.audit ?? (routeMutates(route) ? 'request' : undefined),
    body: route.body ?? { mode: 'none' },
    errorStyle: route.errors ?? 'aiplat',
    action: `${owner.id}:${route.method} ${route.path}`,
    plugin: owner.id === 'core' ? undefined : owner.id,
  };
  return {
    middleware: (ctx) => handle(compiled, ctx, queryOf(ctx.querystring)),
    direct: isDataPlane(route) ? (carrier, search) => handle(compiled, carrier, queryOf(search)) : undefined,
  };
}

interface CompiledRoute {
  route: RouteDefinition;
  owner: RouteOwner;
  runtime: RouteRuntime;
  validators: ReturnType<typeof compileValidators>;
  mutates: boolean;
  audit: 'request' | 'explicit' | 'metered' | undefined;
  body: NonNullable<RouteDefinition['body']>;
  errorStyle: 'aiplat' | 'openai';
  action: string;
  plugin: string | undefined;
}

/**
 * What a handler receives. A class, so the per-request cost is one object: its accessors and
 * methods live on the prototype instead of being closures made for every request.
 */
class RequestContext implements RouteContext {
  pendingAfterCommit: (() => unknown)[] | undefined;
  auditInfo: AuditInfo | undefined;

  constructor(
    private readonly koa: Carrier,
    private readonly compiled: CompiledRoute,
    readonly params: Record<string, string>,
    readonly query: Record<string, unknown>,
    readonly body: unknown,
    readonly bodyStream: RouteContext['bodyStream'],
    readonly db: Knex,
    private principal: Principal | undefined,
  ) {}

  get user(): Principal | undefined {
    return this.principal;
  }
  set user(value: Principal | undefined) {
    this.principal = value;
    this.koa.state.user = value;
  }
  get requestId(): string {
    return this.koa.state.requestId;
  }
  get log(): Logger {
    return (this.compiled.owner.context?.()?.logger ?? this.compiled.runtime.logger).child({ reqId: this.koa.state.requestId });
  }
  get plugin(): PluginContext {
    const context = this.compiled.owner.context?.();
    if (!context) throw new AiplatError('internal', `${this.compiled.owner.id} routes have no plugin context`);
    return context;
  }
  get headers(): RouteContext['headers'] {
    return this.koa.req.headers;
  }
  get ip(): string {
    return this.koa.ip;
  }
  can(permission: string, teamId?: string | null): boolean {
    const principal = this.principal;
    if (!principal) return false;
    const runtime = this.compiled.runtime;
    return teamId !== undefined && runtime.authorizeInTeam ? runtime.authorizeInTeam(principal, permission, teamId) : runtime.authorize(principal, permission);
  }
  get req(): RouteContext['req'] {
    return this.koa.req;
  }
  get res(): RouteContext['res'] {
    return this.koa.res;
  }
  parts(): AsyncIterable<MultipartField | MultipartFile> {
    const body = this.compiled.body;
    if (body.mode !== 'multipart') throw new AiplatError('internal', 'parts() is only for multipart routes');
    return multipartParts(this.koa.req, body);
  }
  async audit(action: string, details?: Record<string, unknown>, options?: CoreAuditOptions): Promise<void> {
    // [audit] A plugin's rows are `<plugin>:<name>` and name the caller; only core routes may name another actor.
    const plugin = this.compiled.plugin;
    await this.compiled.runtime.audit.write(this.db, {
      action: plugin === undefined || action.startsWith(`${plugin}:`) ? action : `${plugin}:${action}`,
      plugin,
      actor: plugin === undefined && options?.actor ? options.actor : this.principal,
      requestId: this.koa.state.requestId,
      clientIp: this.koa.ip,
      outcome: options?.outcome,
      status: plugin === undefined ? options?.status : undefined,
      resource: options?.resource,
      team: options?.team,
      details: details ?? {},
    });
  }
  setHeader(name: string, value: string): void {
    this.koa.set(name, value);
  }
  afterCommit(fn: () => unknown): void {
    (this.pendingAfterCommit ??= []).push(fn);
  }
  takeOver(): void {
    this.koa.respond = false;
  }
  async authenticate(): Promise<Principal | undefined> {
    const header = this.koa.req.headers.authorization;
    const token = header ? BEARER.exec(header)?.[1] : undefined;
    if (!token) return undefined;
    const runtime = this.compiled.runtime;
    return runtime.cachedPrincipal?.(token) ?? runtime.authenticate(token);
  }
}

/** The caller of a permission route: a cached token answers at once, a new one is verified. */
function authenticate(compiled: CompiledRoute, ctx: Carrier): Principal | Promise<Principal> {
  const header = ctx.req.headers.authorization;
  const token = header ? BEARER.exec(header)?.[1] : undefined;
  const cached = token ? compiled.runtime.cachedPrincipal?.(token) : undefined;
  if (cached) return authorize(compiled, ctx, cached);
  return compiled.runtime.authenticate(token).then((user) => authorize(compiled, ctx, user));
}

function authorize(compiled: CompiledRoute, ctx: Carrier, user: Principal | undefined): Principal {
  const permission = compiled.route.permission!;
  if (!user) throw new AiplatError('unauthenticated');
  // Known before the permission check, so a refusal's audit row (and access log line) names the caller.
  ctx.state.user = user;
  if (!compiled.runtime.authorize(user, permission)) {
    throw new AiplatError('forbidden', `This action needs the permission "${permission}"`, { permission });
  }
  return user;
}

async function handle(compiled: CompiledRoute, ctx: Carrier, rawQuery: Record<string, unknown>): Promise<void> {
  try {
    await run(compiled, ctx, rawQuery);
  } catch (error) {
    // [audit] Every refused request (401/403) gets a `denied` row; a failure to write it answers 503 instead.
    if (isAiplatError(error) && (error.status === 401 || error.status === 403)) await auditDenied(compiled, ctx, error);
    throw error;
  }
}

/** [audit] The resource of a request's audit rows: the handler's `ctx.auditInfo`, else the route's `auditResource`. */
function auditResourceOf(compiled: CompiledRoute, params: Record<string, string>, body: unknown, info: AuditInfo | undefined): AuditResource | undefined {
  if (info?.resource) return info.resource;
  const resource = compiled.route.auditResource;
  if (!resource) return undefined;
  try {
    return resource({ params, body });
  } catch {
    return undefined;
  }
}

/**
 * [audit] The `denied` row of a refused request, in a transaction of its own (a mutating request's
 * transaction is rolled back by now): the request changed nothing. Never the credentials themselves.
 */
async function auditDenied(compiled: CompiledRoute, ctx: Carrier, error: AiplatError): Promise<void> {
  const { route, runtime } = compiled;
  const params = ctx.params ?? {};
  const details: Record<string, unknown> = { method: ctx.method, path: ctx.path, code: error.code };
  if (route.permission !== undefined) {
    details.permission = route.permission;
    if (error.status === 401) details.bearer = ctx.req.headers.authorization ? 'invalid' : 'missing';
  }
  await runtime.audit.write(runtime.db(), {
    action: compiled.action,
    plugin: compiled.plugin,
    actor: ctx.state.user,
    outcome: 'denied',
    status: error.status,
    requestId: ctx.state.requestId,
    clientIp: ctx.ip,
    resource: auditResourceOf(compiled, params, undefined, undefined),
    details,
  });
}

async function run(compiled: CompiledRoute, ctx: Carrier, rawQuery: Record<string, unknown>): Promise<void> {
  const { route, validators, body, runtime } = compiled;
  ctx.state.errorStyle = compiled.errorStyle;
  ctx.state.plugin = compiled.plugin;
  let user: Principal | undefined;
  if (route.permission !== undefined) {
    const found = authenticate(compiled, ctx);
    user = found instanceof Promise ? await found : found;
  }

  const params = (validators.params ? validators.params({ ...ctx.params }) : (ctx.params ?? {})) as Record<string, string>;
  const query = (validators.query ? validators.query(rawQuery) : rawQuery) as Record<string, unknown>;

  let parsed: unknown;
  let bodyStream: RouteContext['bodyStream'];
  if (body.mode === 'none') {
    if (hasBody(ctx.req)) throw new AiplatError('bad_request', `${route.method} ${ctx.path} takes no request body`);
  } else if (body.mode === 'json') {
    parsed = validators.body!(await readJsonBody(ctx.req, body));
  } else if (body.mode === 'raw') {
    if (body.stream) bodyStream = rawBodyStream(ctx.req, body);
    else parsed = await readRawBody(ctx.req, body);
  }

  let rc: RequestContext;
  let result: unknown;
  if (compiled.mutates) {
    result = await runtime.db().transaction(async (trx) => {
      rc = new RequestContext(ctx, compiled, params, query, parsed, bodyStream, trx, user);
      const value = await route.handler(rc);
      if (compiled.audit === 'request') {
        // [audit] One row per request, in its transaction: the change and its record commit together.
        const info = rc.auditInfo;
        const details = { method: route.method, path: ctx.path, params: ctx.params };
        await runtime.audit.write(trx, {
          action: compiled.action,
          plugin: compiled.plugin,
          actor: rc.user,
          requestId: ctx.state.requestId,
          clientIp: ctx.ip,
          status: isReply(value) ? value.status : value === undefined ? 204 : 200,
          resource: auditResourceOf(compiled, params, parsed, info),
          team: info?.team,
          details: info?.details ? { ...details, ...info.details } : details,
        });
      }
      return value;
    });
  } else {
    rc = new RequestContext(ctx, compiled, params, query, parsed, bodyStream, runtime.db(), user);
    result = await route.handler(rc);
  }

  const pending = rc!.pendingAfterCommit;
  if (pending) for (const fn of pending) await fn();

  if (ctx.respond === false) return;
  if (!isKoa(ctx)) return answerDirect(ctx, result);
  if (isReply(result)) {
    ctx.status = result.status;
    if (result.headers) ctx.set(result.headers);
    if (result.body !== undefined) ctx.body = result.body;
  } else if (result === undefined) {
    ctx.status = 204;
  } else {
    ctx.body = result;
  }
}

function isKoa(ctx: Carrier): ctx is AppContext {
  return 'app' in ctx;
}

/**
 * A handler's result on the direct path, written as Koa would have written it: a reply's status and
 * headers, JSON for objects, text for strings, bytes for buffers, a stream piped, 204 for nothing.
 */
function answerDirect(ctx: Carrier, result: unknown): void {
  const res = ctx.res;
  let status = 200;
  let body = result;
  if (isReply(result)) {
    status = result.status;
    if (result.headers) for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
    body = result.body;
  }
  if (body === undefined || body === null) {
    res.statusCode = isReply(result) ? status : 204;
    res.end();
    return;
  }
  res.statusCode = status;
  if (typeof (body as NodeJS.ReadableStream).pipe === 'function' && !Buffer.isBuffer(body)) {
    if (!res.hasHeader('content-type')) res.setHeader('content-type', 'application/octet-stream');
    (body as NodeJS.ReadableStream).once('error', () => res.destroy());
    (body as NodeJS.ReadableStream).pipe(res);
    return;
  }
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  if (!res.hasHeader('content-type')) res.setHeader('content-type', Buffer.isBuffer(body) ? 'application/octet-stream' : typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8');
  res.setHeader('content-length', bytes.length);
  res.end(bytes);
}
