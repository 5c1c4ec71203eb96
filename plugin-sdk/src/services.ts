import type { Knex } from 'knex';
import type { HookRegistry } from './hooks.js';
import type { EventBus } from './events.js';
import type { BlobStore } from './storage.js';
import type { Operations } from './operations.js';
import type { AuditOptions } from './routes.js';
import type { WorkloadsService } from './workloads.js';

/**
 * A typed reference to a service. Services are looked up by id, never by object identity,
 * so two copies of the SDK in one process still agree.
 */
export interface ServiceRef<T> {
  readonly id: string;
  /** Phantom field carrying the service type; never set at run time. */
  readonly $type?: T;
}

export function createServiceRef<T>(options: { id: string }): ServiceRef<T> {
  if (!/^[a-z][a-zA-Z0-9-]*(\.[a-zA-Z][a-zA-Z0-9-]*)+$/.test(options.id)) {
    throw new Error(`service ref id "${options.id}" must look like "owner.name"`);
  }
  return Object.freeze({ id: options.id });
}

export interface Logger {
  trace(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** What the core tells every plugin about the platform it runs in. */
export interface PlatformInfo {
  version: string;
  pluginApi: string;
  database: 'embedded' | 'postgres';
  dataDir: string;
  publicUrl?: string;
}

/** The services the core provides to every plugin. */
export const coreServices = {
  logger: createServiceRef<Logger>({ id: 'core.logger' }),
  /** The database outside a request (background work). Inside a request use `ctx.db`. */
  database: createServiceRef<Knex>({ id: 'core.database' }),
  hooks: createServiceRef<HookRegistry>({ id: 'core.hooks' }),
  platform: createServiceRef<PlatformInfo>({ id: 'core.platform' }),
  /** Publish and subscribe; a plugin publishes to topics under its own id. */
  events: createServiceRef<EventBus>({ id: 'core.events' }),
  /** Blob storage in the plugin's own namespace. */
  storage: createServiceRef<BlobStore>({ id: 'core.storage' }),
  /** Long-running operations with progress and cancel. */
  operations: createServiceRef<Operations>({ id: 'core.operations' }),
  /** Audit rows for work outside a request (inside one, use `ctx.audit`). */
  audit: createServiceRef<AuditLog>({ id: 'core.audit' }),
  /** Submit, read and cancel GPU workloads (the scheduler). */
  workloads: createServiceRef<WorkloadsService>({ id: 'core.workloads' }),
  /** Budgets per key and time window (rate limits), shared through Redis when the core has it. */
  rateLimiter: createServiceRef<RateLimiter>({ id: 'core.rateLimiter' }),
  /** The plugin's own series in the core's Prometheus `/metrics`. */
  metrics: createServiceRef<MetricsRegistry>({ id: 'core.metrics' }),
} as const;

/** What a budget says after a `take`, `spend` or `peek`. */
export interface RateDecision {
  /** `take`: whether the cost fitted (a refused take takes nothing); otherwise whether anything is left. */
  allowed: boolean;
  /** Spent in the current window, this call included. */
  used: number;
  /** Left in the current window (never below 0). */
  remaining: number;
  /** Milliseconds until the window ends and the budget is whole again. */
  resetMs: number;
}

/**
 * Budgets per key: `limit` per `windowSeconds`, counted in fixed windows. Counted in Redis when
 * the core runs with `REDIS_URL` (`shared`: every core process behind a load balancer sees the same
 * counts), in this process otherwise. Keys are the plugin's own (the core prefixes its id).
 */
export interface RateLimiter {
  readonly shared: boolean;
  /** Take `cost` from `key`'s budget; `allowed: false` when it does not fit. */
  take(key: string, cost: number, limit: number, windowSeconds: number): Promise<RateDecision>;
  /** Count a cost known only afterwards (the tokens of an answer), even past the limit. */
  spend(key: string, cost: number, limit: number, windowSeconds: number): Promise<RateDecision>;
  /** What is left, taking nothing; `allowed` is whether anything is. */
  peek(key: string, limit: number, windowSeconds: number): Promise<RateDecision>;
}

/** One value of a metric at a scrape. */
export interface MetricSample {
  labels?: Record<string, string | number>;
  value: number;
  /** For summaries and histograms: `_sum`, `_count`, `_bucket` after the metric's name. */
  suffix?: '_sum' | '_count' | '_bucket';
}

/**
 * The plugin's series in the core's `/metrics` (Prometheus text). A metric's name starts with
 * `aiplat_<plugin id, - as _>_`; its samples are asked for at each scrape, so the plugin keeps its
 * own counts and the core keeps nothing. A second `collect` under the same name replaces the first
 * (a plugin that restarts); the plugin's metrics go away when it stops.
 */
export interface MetricsRegistry {
  collect(metric: { name: string; help: string; type: 'counter' | 'gauge' | 'summary' | 'histogram'; samples(): MetricSample[] }): void;
}

/**
 * A plugin's door into the audit log for events outside a request (background work, operations,
 * schedules). Rows name the plugin as their actor (`actorType: "plugin"`), and their action is
 * `<plugin id>:<name>` (the prefix is added when missing). Inside a request use `ctx.audit`, which
 * names the caller and commits with the request.
 */
export interface AuditLog {
  /**
   * Write a row: in `options.db`'s transaction when given (it commits or rolls back with that
   * work), otherwise in a transaction of its own. Rejects with 503 `unavailable` when the row
   * cannot be written. `details` are redacted (secrets show as "••••").
   */
  record(action: string, details?: Record<string, unknown>, options?: AuditOptions & { db?: Knex }): Promise<void>;
}
