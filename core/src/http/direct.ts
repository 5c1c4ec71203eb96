/**
 * The direct path: data-plane routes (metered, not mutating, a passthrough body, a path without
 * parameters: the inference gateway's `/v1/chat/completions` and the like, see `isDataPlane`) are
 * served by the HTTP server's request listener without Koa. Koa's per-request machinery (a context,
 * request and response objects, the middleware chain) cost about a sixth of a gateway request's
 * CPU (docs/adr/0013). Everything else of the pipeline is here too: the request id, the route
 * contract (the same compiled route: authentication, validation, the handler, denied requests
 * audited), errors in the route's style with secrets redacted, the access log line, the HTTP
 * metrics and the `core.requestFinished` hook. Every other request goes to Koa.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type Koa from 'koa';
import type { Logger } from '@aiplat/plugin-sdk';
import { toHttpError } from './errors.js';
import { finishRequest, requestIdOf, type RequestSinks } from './request-end.js';
import type { Carrier, RequestState } from './route-contract.js';
import type { Redactor } from '../secrets/redactor.js';

/** A data-plane route as the listener finds it: its template (metrics, logs), its plugin, its handling. */
export interface DirectRoute {
  template: string;
  plugin: string;
  serve(carrier: Carrier, search: string): Promise<void>;
}

/** The direct route for a method and path (below the base path), if any: the kernel answers. */
export type DirectLookup = (method: string, path: string) => DirectRoute | undefined;

export interface ListenerOptions extends RequestSinks {
  app: Koa<RequestState>;
  lookup: DirectLookup;
  logger: Logger;
  basePath: string;
  redactor?: Redactor;
}

/** Koa's `ip` with `proxy: true`: the first X-Forwarded-For address, else the socket's. */
function clientIp(req: IncomingMessage): string {
  const forwarded = req.headers['x-forwarded-for'];
  const first = typeof forwarded === 'string' ? forwarded.split(',', 1)[0]!.trim() : undefined;
  return first || req.socket.remoteAddress || '';
}

class DirectCarrier implements Carrier {
  readonly state: RequestState;
  respond?: boolean;
  readonly params = {};
  private address: string | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly method: string,
    readonly path: string,
    requestId: string,
    plugin: string,
  ) {
    this.state = { requestId, errorStyle: 'aiplat', plugin };
  }

  get ip(): string {
    return (this.address ??= clientIp(this.req));
  }

  set(name: string, value: string): void {
    this.res.setHeader(name, value);
  }
}

/** The HTTP server's request listener: data-plane routes directly, the rest through Koa. */
export function requestListener(options: ListenerOptions): RequestListener {
  const koa = options.app.callback();
  const { lookup, basePath } = options;
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path = q < 0 ? url : url.slice(0, q);
    if (basePath && (path === basePath || path.startsWith(`${basePath}/`))) path = path.slice(basePath.length) || '/';
    const route = lookup(req.method ?? 'GET', path);
    if (!route) return void koa(req, res);
    void serve(options, route, req, res, path, q < 0 ? '' : url.slice(q + 1));
  };
}

async function serve(options: ListenerOptions, route: DirectRoute, req: IncomingMessage, res: ServerResponse, path: string, search: string): Promise<void> {
  const started = process.hrtime.bigint();
  const requestId = requestIdOf(req.headers['x-request-id']);
  res.setHeader('x-request-id', requestId);
  const carrier = new DirectCarrier(req, res, req.method!, path, requestId, route.plugin);
  try {
    await route.serve(carrier, search);
  } catch (error) {
    const http = toHttpError(error, requestId, carrier.state.errorStyle);
    if (http.serverFault) options.logger.error({ err: error, requestId, method: carrier.method, path }, 'request failed');
    if (res.headersSent) {
      // The handler had begun its answer: it can only be cut short.
      res.destroy();
    } else {
      const text = JSON.stringify(options.redactor ? options.redactor.redactValue(http.body) : http.body);
      res.statusCode = http.status;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.setHeader('content-length', Buffer.byteLength(text));
      // A body the handler did not read must not be left hanging on a keep-alive connection.
      if (!req.complete) res.setHeader('connection', 'close');
      res.end(text);
    }
  }
  finishRequest(options, { requestId, method: carrier.method, route: route.template, url: req.url ?? path, status: res.statusCode, started, user: carrier.state.user?.username, plugin: route.plugin });
}
