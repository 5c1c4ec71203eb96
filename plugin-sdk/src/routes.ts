import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import type { JsonSchema } from './manifest.js';
import type { Logger } from './services.js';
import type { PluginContext } from './plugin.js';
import type { AuditOutcome } from './audit.js';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Default body limit of `json`, `raw` and `multipart` bodies: 1 MiB. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/**
 * How a route takes its body.
 * - `none`: no body; a request that sends one is refused.
 * - `json`: parsed and validated against `schema` (unknown fields are refused unless the schema allows them).
 * - `raw`: bytes of the listed content types, as a Buffer, or as a size-limited stream with `stream: true`.
 * - `multipart`: `multipart/form-data`, read part by part through `ctx.parts()` (never buffered whole).
 * - `passthrough`: the core does not touch the body; the handler reads `ctx.req` itself (proxies, gateways).
 */
export type BodySpec =
  | { mode: 'none' }
  | { mode: 'json'; schema: JsonSchema; limit?: number }
  | { mode: 'raw'; limit?: number; contentTypes?: string[]; stream?: boolean }
  | { mode: 'multipart'; limit?: number; maxFiles?: number }
  | { mode: 'passthrough' };

export function json(schema: JsonSchema, options: { limit?: number } = {}): BodySpec {
  return { mode: 'json', schema, ...options };
}
export function raw(options: { limit?: number; contentTypes?: string[]; stream?: boolean } = {}): BodySpec {
  return { mode: 'raw', ...options };
}
export function multipart(options: { limit?: number; maxFiles?: number } = {}): BodySpec {
  return { mode: 'multipart', ...options };
}
export function passthrough(): BodySpec {
  return { mode: 'passthrough' };
}

/** Who is calling. */
export interface Principal {
  id: string;
  username: string;
  /** Global roles (role ids: `admin`, `operator`, `viewer` or a custom role's id). */
  roles: string[];
  /** Teams the caller belongs to (team ids). */
  teams?: string[];
  /** The team new objects go to when a request names none. */
  defaultTeam?: string | null;
  /**
   * How the caller authenticated: an access token from sign-in (`session`), a personal API token
   * (`token`, limited to `scopes`), or a route-specific scheme (`custom`).
   */
  via: 'session' | 'token' | 'custom';
  /** For `via: "token"`: the API token's id. */
  tokenId?: string;
  /** For `via: "token"`: the permissions the token may use (a subset of its owner's). */
  scopes?: string[];
}

export interface MultipartField {
  kind: 'field';
  name: string;
  value: string;
}
export interface MultipartFile {
  kind: 'file';
  name: string;
  filename: string;
  mimeType: string;
  /** Must be consumed (or resumed) before the next part arrives. */
  stream: Readable;
}

export interface RouteContext<TBody = unknown, TQuery = Record<string, unknown>, TParams = Record<string, string>> {
  readonly params: TParams;
  readonly query: TQuery;
  /** The parsed body for `json`, a Buffer for `raw`, otherwise undefined. */
  readonly body: TBody;
  /**
   * The request's database handle. For mutating routes it is the request's transaction:
   * the change and its audit row commit together, or neither does.
   */
  readonly db: Knex;
  /** The caller; undefined only on `public` and `custom` routes before the handler sets it. */
  user: Principal | undefined;
  readonly requestId: string;
  /** The owning plugin's logger, bound to this request's id. */
  readonly log: Logger;
  /** The owning plugin's context: its current settings, hooks, services. */
  readonly plugin: PluginContext;
  readonly headers: IncomingMessage['headers'];
  /** The client's address (the first X-Forwarded-For hop behind a reverse proxy). */
  readonly ip: string;
  /**
   * Whether the caller holds a permission: anywhere (no `teamId`), or for objects of one team
   * (`teamId`; a global grant or admin counts). Deny by default: false when signed out.
   */
  can(permission: string, teamId?: string | null): boolean;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** `raw` with `stream: true`: the body as a stream that errors with `payload_too_large` past the limit. */
  readonly bodyStream: Readable | undefined;
  /** `multipart`: the parts in order. */
  parts(): AsyncIterable<MultipartField | MultipartFile>;
  /**
   * Write an audit row now, in the request's transaction (for `audit: "explicit"` routes, at the
   * meaningful moment; any route may add rows). The row names the caller, the request id and the
   * client address; a plugin's `action` is always `<plugin id>:<name>` (the prefix is added when
   * missing). `details` are redacted (secrets show as "••••"). Fail-closed: when the row cannot be
   * written this throws 503 `unavailable` and the request's change is rolled back. See docs/audit.md.
   */
  audit(action: string, details?: Record<string, unknown>, options?: AuditOptions): Promise<void>;
  /**
   * For `audit: "request"` routes: what the handler adds to the request's audit row (the resource
   * it changed when the route's `auditResource` cannot tell, the team, more details). Set it any
   * time before returning: `ctx.auditInfo = { resource: { type: 'greeting', id }, details: { count } }`.
   */
  auditInfo: AuditInfo | undefined;
  setHeader(name: string, value: string): void;
  /**
   * Run `fn` after the request's transaction commits (outside it), before the response is sent:
   * for effects that must not happen unless the change is durable (publishing an event,
   * starting a process). A throw turns the response into an error; the commit stands.
   */
  afterCommit(fn: () => unknown): void;
  /**
   * Take over the response: the handler writes `ctx.res` itself (proxies, streaming gateways,
   * server-sent events) and the core sends nothing after the handler returns.
   */
  takeOver(): void;
  /**
   * For `custom` routes that also accept the platform's own credentials: the caller of the
   * request's `Authorization: Bearer` token when it is a signed-in session's access token or a
   * personal API token of an active user (undefined otherwise). Sets nothing: a handler that
   * accepts the caller assigns `ctx.user`.
   */
  authenticate(): Promise<Principal | undefined>;
}

export type { AuditActorType, AuditOutcome, AuditRecord, ChainedAuditRecord } from './audit.js';

/** What an audit row is about: `{ type: 'plugin', id: 'hello' }`, `{ type: 'user', id }`. */
export interface AuditResource {
  type: string;
  id?: string;
}

/** More about an explicit audit row (`ctx.audit`, the `core.audit` service). */
export interface AuditOptions {
  resource?: AuditResource;
  /** The team the resource belongs to. */
  team?: string;
  /** Default `success`. */
  outcome?: AuditOutcome;
}

/** What a handler adds to its request's audit row (`ctx.auditInfo`). */
export interface AuditInfo {
  resource?: AuditResource;
  team?: string;
  /** Merged into the row's details (`{ method, path, params }`); redacted like all details. */
  details?: Record<string, unknown>;
}

/** A handler may return a plain value (sent as JSON, 200), `undefined` (204) or a `reply(...)`. */
export interface Reply {
  readonly __aiplatReply: true;
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export function reply(status: number, body?: unknown, headers?: Record<string, string>): Reply {
  return { __aiplatReply: true, status, body, headers };
}

export function isReply(value: unknown): value is Reply {
  return typeof value === 'object' && value !== null && (value as Reply).__aiplatReply === true;
}

interface RouteBase<TBody, TQuery, TParams> {
  method: HttpMethod;
  /** Path relative to the plugin's base (`/api/plugins/<id>`), koa-router syntax: `/greetings/:id`. */
  path: string;
  summary?: string;
  description?: string;
  tags?: string[];
  /**
   * Whether the route changes state. Defaults to true for everything but GET and HEAD.
   * Mutating routes run in a transaction and are audited per `audit`.
   */
  mutates?: boolean;
  /**
   * `request` (default for mutating routes): one audit row per request, in its transaction;
   * `explicit`: the handler writes it (`ctx.audit`); `metered`: counted, not audited per call.
   * Refused calls (401/403) of every route get a `denied` row whatever the mode. See docs/audit.md.
   */
  audit?: 'request' | 'explicit' | 'metered';
  /**
   * The resource a request acts on, for its audit rows (the `request` row, and the `denied` row of
   * a refused call, which gets the raw path parameters and no body): `({ params }) => ({ type:
   * 'plugin', id: params.id })`. `ctx.auditInfo.resource`, set by the handler, wins over it.
   */
  auditResource?: (request: { params: TParams; body: TBody | undefined }) => AuditResource | undefined;
  body?: BodySpec;
  query?: JsonSchema;
  params?: JsonSchema;
  responses?: Record<number, { description: string; schema?: JsonSchema }>;
  /** Error body style: aiplat's `{ error: { code, message, details } }` or OpenAI's. */
  errors?: 'aiplat' | 'openai';
  handler(ctx: RouteContext<TBody, TQuery, TParams>): unknown;
}

/** Every route says who may call it: a permission, `public` with a reason, or `custom` auth with a reason. */
export type RouteDefinition<TBody = any, TQuery = any, TParams = any> = RouteBase<TBody, TQuery, TParams> &
  (
    | { permission: string; public?: never; custom?: never }
    | { public: { reason: string }; permission?: never; custom?: never }
    | { custom: { reason: string }; permission?: never; public?: never }
  );

/** Identity helper that keeps the route's type parameters. */
export function defineRoute<TBody = any, TQuery = any, TParams = any>(
  route: RouteDefinition<TBody, TQuery, TParams>,
): RouteDefinition<TBody, TQuery, TParams> {
  return route;
}

export function routeMutates(route: Pick<RouteDefinition, 'method' | 'mutates'>): boolean {
  return route.mutates ?? !(route.method === 'GET' || route.method === 'HEAD');
}
