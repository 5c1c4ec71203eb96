import { randomUUID } from 'node:crypto';
import { coreHooks } from '@aiplat/plugin-sdk';
import type { AccessLog } from './access-log.js';
import type { HttpMetrics } from './metrics.js';
import type { KernelHooks } from '../kernel/hooks.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A request's id: the caller's `X-Request-Id` when it is well-formed, else a new UUID. */
export function requestIdOf(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** Where a finished request is reported: the same for Koa's pipeline and the direct path. */
export interface RequestSinks {
  metrics: HttpMetrics;
  accessLog: AccessLog;
  hooks: KernelHooks;
}

export interface FinishedRequest {
  requestId: string;
  method: string;
  /** The route template (metrics, the hook), or `unmatched`. */
  route: string;
  url: string;
  status: number;
  /** `process.hrtime.bigint()` when the request came in. */
  started: bigint;
  user: string | undefined;
  plugin: string | undefined;
}

/** Count a finished request in the metrics, write its access-log line and call `core.requestFinished`. */
export function finishRequest(sinks: RequestSinks, end: FinishedRequest): void {
  const seconds = Number(process.hrtime.bigint() - end.started) / 1e9;
  sinks.metrics.observe(end.method, end.route, end.status, seconds);
  sinks.accessLog.write({ requestId: end.requestId, method: end.method, url: end.url, status: end.status, ms: Math.round(seconds * 1e5) / 100, user: end.user });
  if (sinks.hooks.isUsed(coreHooks.requestFinished)) {
    sinks.hooks.callSync(coreHooks.requestFinished, { method: end.method, route: end.route, status: end.status, durationMs: seconds * 1000, plugin: end.plugin, requestId: end.requestId });
  }
}
