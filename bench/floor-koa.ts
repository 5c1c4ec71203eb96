/**
 * The floor for `npm run bench:http`'s read suite: the least a Koa app can do and still give the
 * greeting route what the full stack gives it, in one middleware with nothing general about it.
 * Started by bench/http.ts as a child process with the same Node flags as the core, on PORT, with
 * the access token's signing key in BENCH_JWT_KEY (base64url).
 *
 * Per request it calls the core's own pieces for each feature, so that their cost is the same:
 * - the request id (`requestIdOf`: an incoming `x-request-id` when well-formed, else a UUID), echoed back;
 * - bearer authentication (`TokenService`: the JWT verified with jose the first time it is seen,
 *   then found in a map until it expires) and a permission check;
 * - the query parsed and validated (`queryOf`, `queryValidator`: ajv, compiled once; name: 1–64
 *   characters), 400 otherwise;
 * - the handler and an extension point (a function that upper-cases the greeting);
 * - the request metrics (`HttpMetrics`) and the access-log line (`AccessLog`) on a buffered pino
 *   destination (stdout).
 *
 * What it leaves out, because only the core needs it: plugin discovery and dispatch, the route
 * contract's generality (body modes, path parameters, error styles, audit of refusals), secret
 * redaction of log lines, the hooks registry. Its distance from bare Koa is what the features
 * themselves cost; the full stack's distance from it is what the core's generality costs.
 */
// As the core does, first: keeps nextTick's hidden class through the start-up's collections
// (ADR 0014), so that the floor is not slower than it has to be on the days its start-up drops it.
import '../core/src/http/tick-shape.js';
import http from 'node:http';
import Koa from 'koa';
import pino from 'pino';
import { TokenService } from '../core/src/auth/tokens.js';
import { AccessLog } from '../core/src/http/access-log.js';
import { HttpMetrics } from '../core/src/http/metrics.js';
import { requestIdOf } from '../core/src/http/request-end.js';
import { queryOf } from '../core/src/http/route-contract.js';
import { queryValidator } from '../core/src/http/validation.js';

const tokens = new TokenService(Buffer.from(process.env.BENCH_JWT_KEY ?? '', 'base64url'), 86_400);
const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });
const accessLog = new AccessLog(pino({ level: 'info', base: { service: 'aiplat' } }, destination));
const metrics = new HttpMetrics();
// The hello plugin's query schema.
const validateQuery = queryValidator({ type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 64 } } });
const BEARER = /^Bearer\s+(.+)$/i;
const ROUTE = '/api/plugins/hello/greeting';
const shout = (text: string) => text.toUpperCase();

const app = new Koa({ proxy: true });
app.use(async (ctx) => {
  const started = process.hrtime.bigint();
  const requestId = requestIdOf(ctx.get('x-request-id'));
  ctx.set('x-request-id', requestId);
  let user: string | undefined;
  if (ctx.method === 'GET' && ctx.path === ROUTE) {
    const header = ctx.headers.authorization;
    const token = header ? BEARER.exec(header)?.[1] : undefined;
    // A token seen before answers at once (no await), as in the core.
    const principal = token ? (tokens.cached(token) ?? (await tokens.verifyAccess(token))) : undefined;
    user = principal?.username;
    if (!principal) {
      ctx.status = 401;
      ctx.body = { error: { code: 'unauthenticated', message: 'Sign in first', requestId } };
    } else if (!principal.roles.includes('Admin')) {
      ctx.status = 403;
      ctx.body = { error: { code: 'forbidden', message: 'This action needs the permission "hello:read"', requestId } };
    } else {
      try {
        const query = validateQuery(queryOf(ctx.querystring)) as { name: string };
        ctx.body = { greeting: shout(`Hello, ${query.name}`) };
      } catch (error) {
        ctx.status = 400;
        ctx.body = { error: { code: 'bad_request', message: (error as Error).message, requestId } };
      }
    }
  } else if (ctx.path === '/health') {
    ctx.body = { status: 'ok' };
  } else {
    ctx.status = 404;
    ctx.body = { error: { code: 'not_found', message: `Nothing is at ${ctx.method} ${ctx.path}`, requestId } };
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  metrics.observe(ctx.method, ctx.path === ROUTE ? ROUTE : 'unmatched', ctx.status, seconds);
  accessLog.write({ requestId, method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(seconds * 1e5) / 100, user });
});

const server = http.createServer(app.callback());
server.keepAliveTimeout = 65_000; // as the core
server.listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => {
    destination.flushSync();
    process.exit(0);
  });
  server.closeAllConnections();
});
