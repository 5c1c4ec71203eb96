/**
 * The floor for `npm run bench:http`'s read suite: the least a Koa app can do and still give the
 * greeting route what the full stack gives it, written by hand in one middleware with nothing
 * general about it. Started by bench/http.ts as a child process with the same Node flags as the
 * core, on PORT, with the access token's signing key in BENCH_JWT_KEY (base64url).
 *
 * Per request, as the core does it (same libraries, same output):
 * - a request id (an incoming `x-request-id` when well-formed, else a random UUID), echoed back;
 * - bearer authentication: the JWT verified with jose (HS256, issuer, audience) the first time it
 *   is seen, then found in a map until it expires;
 * - a permission check against the caller's permission set;
 * - the query parsed and validated with the core's own functions (ajv, compiled once; name: 1–64
 *   characters), 400 otherwise;
 * - the handler and an extension point (a function that upper-cases the greeting);
 * - request count and latency histogram in plain arrays;
 * - one JSON access-log line in pino's format on a buffered pino destination (stdout).
 *
 * What it leaves out, because only the core needs it: plugin discovery and dispatch, the route
 * contract's generality (body modes, path parameters, error styles, audit of refusals), secret
 * redaction of log lines, the hooks registry. Its distance from bare Koa is what the features
 * themselves cost; the full stack's distance from it is what the core's generality costs.
 */
import http from 'node:http';
import { createSecretKey, randomUUID } from 'node:crypto';
import Koa from 'koa';
import { jwtVerify } from 'jose';
import pino from 'pino';
import { queryValidator } from '../core/src/http/validation.js';
import { queryOf } from '../core/src/http/route-contract.js';

const key = createSecretKey(Buffer.from(process.env.BENCH_JWT_KEY ?? '', 'base64url'));
const log = pino.destination({ dest: 1, sync: false, minLength: 4096 });
// The core's own query validator (ajv, compiled once), on the hello plugin's schema; it throws a 400.
const validateQuery = queryValidator({ type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 64 } } });

interface Caller {
  username: string;
  permissions: Set<string>;
  exp: number;
}
const tokens = new Map<string, Caller>();
const BEARER = /^Bearer\s+(.+)$/i;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const histogram = new Array<number>(BUCKETS.length + 1).fill(0);
const counts = new Map<number, number>();
const shout = (text: string) => text.toUpperCase();

/** A token seen before and not expired answers at once (no await), as in the core. */
function cachedCaller(token: string | undefined): Caller | undefined {
  const hit = token ? tokens.get(token) : undefined;
  return hit && hit.exp > Date.now() / 1000 ? hit : undefined;
}

async function verifiedCaller(token: string | undefined): Promise<Caller | undefined> {
  if (!token) return undefined;
  try {
    const { payload } = await jwtVerify(token, key, { issuer: 'aiplat', audience: 'aiplat-api', algorithms: ['HS256'] });
    const found = { username: String(payload.name), permissions: new Set(['hello:read']), exp: payload.exp ?? 0 };
    tokens.set(token, found);
    return found;
  } catch {
    return undefined;
  }
}

const app = new Koa({ proxy: true });
app.use(async (ctx) => {
  const started = process.hrtime.bigint();
  const incoming = ctx.get('x-request-id');
  const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  ctx.set('x-request-id', requestId);
  let user: Caller | undefined;
  if (ctx.method === 'GET' && ctx.path === '/api/plugins/hello/greeting') {
    const header = ctx.headers.authorization;
    const token = header ? BEARER.exec(header)?.[1] : undefined;
    user = cachedCaller(token) ?? (await verifiedCaller(token));
    if (!user) {
      ctx.status = 401;
      ctx.body = { error: { code: 'unauthenticated', message: 'Sign in first', requestId } };
    } else if (!user.permissions.has('hello:read')) {
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
  let bucket = 0;
  while (bucket < BUCKETS.length && seconds > BUCKETS[bucket]!) bucket++;
  histogram[bucket]!++;
  counts.set(ctx.status, (counts.get(ctx.status) ?? 0) + 1);
  const name = user === undefined ? '' : `,"user":${JSON.stringify(user.username)}`;
  log.write(
    `{"level":30,"time":${Date.now()},"service":"aiplat","reqId":${JSON.stringify(requestId)},"method":${JSON.stringify(ctx.method)},` +
      `"url":${JSON.stringify(ctx.url)},"status":${ctx.status},"ms":${Math.round(seconds * 1e5) / 100}${name},"msg":"request"}\n`,
  );
});

const server = http.createServer(app.callback());
server.keepAliveTimeout = 65_000; // as the core
server.listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => {
    log.flushSync();
    process.exit(0);
  });
  server.closeAllConnections();
});
