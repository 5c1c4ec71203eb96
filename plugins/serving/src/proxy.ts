/**
 * The `/v1` alias: a plain OpenAI-compatible entry that forwards a request, by its `model`, to a
 * ready replica of the deployment's live revision(s), chosen by the traffic weights (canary) and
 * round-robin within a revision. Streams pass through chunk by chunk; a client that goes away
 * cancels the upstream request; a replica that refuses the connection before answering is
 * skipped for another. Runtimes that do not speak OpenAI (Triton's KServe v2) answer through
 * their adapter. (Serving II grows this into the gateway: API keys, balancing policies, metering.)
 */
import http from 'node:http';
import { Transform } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { AiplatError, coreServices, type PluginContext, type RouteContext } from '@aiplat/plugin-sdk';
import type { ServingRuntime } from '../api/index.js';
import { runtimeOf, type ServingSettings } from './controller.js';
import { T, parsed, type DeploymentRow, type RevisionRow } from './store.js';

export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

interface Target {
  revision: number;
  weight: number;
  runtime: ServingRuntime | undefined;
  upstreamModel: string | null;
  workloadId: string;
}

interface Route {
  deployment: DeploymentRow;
  targets: Target[];
  at: number;
}

interface Replica {
  host: string;
  port: number;
  replica: number;
}

/** Routes by served model name, and ready replicas by workload, each kept for a second. */
export class Router {
  private readonly routes = new Map<string, Route>();
  private readonly replicas = new Map<string, { at: number; list: Replica[] }>();
  private readonly turn = new Map<string, number>();
  private readonly hosts = new Map<string, string>();

  constructor(private readonly plugin: () => PluginContext) {}

  /** Forget what is cached (a deployment or a workload changed). */
  invalidate(): void {
    this.routes.clear();
    this.replicas.clear();
  }

  async route(model: string): Promise<Route | undefined> {
    const cached = this.routes.get(model);
    if (cached && Date.now() - cached.at < 1000) return cached;
    const plugin = this.plugin();
    const deployment = (await plugin.db(T.deployments).where({ served_model_name: model }).first()) as DeploymentRow | undefined;
    if (!deployment) return undefined;
    const traffic = parsed(deployment.traffic);
    const revisions = traffic.length ? ((await plugin.db(T.revisions).where({ deployment_id: deployment.id }).whereIn('number', traffic.map((t) => t.revision))) as RevisionRow[]) : [];
    const targets: Target[] = [];
    for (const t of traffic) {
      const r = revisions.find((x) => x.number === t.revision);
      if (!r?.workload_id || t.weight <= 0) continue;
      targets.push({ revision: r.number, weight: t.weight, runtime: runtimeOf(plugin, r.runtime), upstreamModel: r.upstream_model, workloadId: r.workload_id });
    }
    const route = { deployment, targets, at: Date.now() };
    this.routes.set(model, route);
    return route;
  }

  /** The ready replicas of a workload (those whose readiness check passes). */
  async ready(workloadId: string): Promise<Replica[]> {
    const cached = this.replicas.get(workloadId);
    if (cached && Date.now() - cached.at < 1000) return cached.list;
    const plugin = this.plugin();
    const workload = await plugin.service(coreServices.workloads).get(workloadId);
    const list: Replica[] = [];
    for (const p of workload?.placements ?? []) {
      const port = p.ports?.http;
      if (p.state !== 'ready' || !port) continue;
      list.push({ host: await this.hostOf(p.nodeId), port, replica: p.replica });
    }
    this.replicas.set(workloadId, { at: Date.now(), list });
    return list;
  }

  /** Replicas on this machine are reached on 127.0.0.1; on a host added through the API, at its address. */
  private async hostOf(nodeId: string): Promise<string> {
    const known = this.hosts.get(nodeId);
    if (known) return known;
    const node = (await this.plugin().db('nodes').where({ id: nodeId }).first('address', 'connector')) as { address: string | null; connector: string | null } | undefined;
    const host = node?.connector && node.address ? node.address : '127.0.0.1';
    this.hosts.set(nodeId, host);
    return host;
  }

  /** Targets in the order to try: one drawn by weight first, then the rest. */
  order(targets: Target[]): Target[] {
    const total = targets.reduce((a, t) => a + t.weight, 0);
    let draw = Math.random() * total;
    const first = targets.find((t) => (draw -= t.weight) < 0) ?? targets[0];
    return first ? [first, ...targets.filter((t) => t !== first)] : [];
  }

  /** The next replica of a workload, round-robin. */
  next(workloadId: string, list: Replica[]): Replica[] {
    const n = (this.turn.get(workloadId) ?? 0) % Math.max(1, list.length);
    this.turn.set(workloadId, n + 1);
    return [...list.slice(n), ...list.slice(0, n)];
  }
}

/** The request body, at most `MAX_REQUEST_BYTES`, parsed as a JSON object. */
export async function readJsonBody(ctx: RouteContext): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES) throw new AiplatError('payload_too_large', `The request body is larger than ${MAX_REQUEST_BYTES / 1024 / 1024} MiB`);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new AiplatError('invalid_json', 'The request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AiplatError('validation_failed', 'The request body must be a JSON object', { field: 'body' });
  return body as Record<string, unknown>;
}

/** An OpenAI-style error written by hand (after the route took over the response). */
function writeError(res: http.ServerResponse, status: number, message: string, code: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code } }));
}

/** Rewrites `"model":"<upstream>"` to the served name in a stream of JSON or SSE lines. */
function renameModel(from: string, to: string): Transform {
  const needle = JSON.stringify(from);
  const replacement = JSON.stringify(to);
  let tail = '';
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const text = tail + chunk.toString('utf8');
      const cut = text.lastIndexOf('\n') + 1;
      tail = text.slice(cut);
      done(null, cut > 0 ? text.slice(0, cut).split(needle).join(replacement) : '');
    },
    flush(done) {
      done(null, tail.split(needle).join(replacement));
    },
  });
}

interface Attempt {
  status: number;
  headers: http.IncomingHttpHeaders;
  stream: http.IncomingMessage;
}

/** Keep-alive connections to the replicas, shared by every request (not the process-wide agent). */
const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });

/**
 * One upstream call; rejects with `connect` when the replica cannot be reached (nothing was sent).
 * `onRequest` gets the request, so a client that goes away can destroy it.
 */
function call(replica: Replica, path: string, body: Buffer, timeoutMs: number, onRequest: (req: http.ClientRequest) => void): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: replica.host,
        port: replica.port,
        path,
        method: 'POST',
        agent: upstreamAgent,
        headers: { 'content-type': 'application/json', 'content-length': body.length, accept: 'application/json, text/event-stream' },
        timeout: timeoutMs,
      },
      (res) => resolve({ status: res.statusCode ?? 502, headers: res.headers, stream: res }),
    );
    onRequest(req);
    // Whether the request reached the replica: only a request that did not may go to another.
    let connected = false;
    req.on('socket', (socket) => {
      if (!socket.connecting) connected = true;
      else socket.once('connect', () => (connected = true));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { connect: !connected })));
    req.end(body);
  });
}

async function readAll(stream: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Forward an OpenAI request (`path` below `/v1`, e.g. `/chat/completions`) to the deployment
 * serving `body.model`. Takes over the response.
 */
export async function forward(ctx: RouteContext, router: Router, settings: ServingSettings, path: string, body: Record<string, unknown>): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model === '') throw new AiplatError('validation_failed', 'Name the model: the request body needs "model" (GET /v1/models lists them)', { field: 'model' });
  const route = await router.route(model);
  if (!route || !ctx.can('serving:invoke', route.deployment.team_id)) throw new AiplatError('not_found', `The model "${model}" does not exist or you do not have access to it`, { field: 'model' });
  if (route.deployment.stopped) throw new AiplatError('unavailable', `The model "${model}" is stopped: start its deployment first`);
  if (route.targets.length === 0) throw new AiplatError('unavailable', `The model "${model}" has no ready revision yet (${route.deployment.state}${route.deployment.reason ? `: ${route.deployment.reason}` : ''})`);

  // A client that goes away cancels the request to the replica (no AbortSignal: it costs every request).
  let upstream: http.ClientRequest | undefined;
  let gone = false;
  ctx.res.once('close', () => {
    if (ctx.res.writableFinished) return;
    gone = true;
    upstream?.destroy();
  });
  const timeoutMs = settings.upstreamTimeoutSeconds * 1000;
  let lastError = 'no replica is ready';
  for (const target of router.order(route.targets)) {
    const adapter = target.runtime?.openai;
    if (target.runtime && target.runtime.protocol !== 'openai' && target.runtime.protocol !== 'tgi' && !adapter) {
      lastError = `the ${target.runtime.id} runtime has no OpenAI adapter`;
      continue;
    }
    if (adapter && !adapter.paths.includes(path)) {
      lastError = `the ${target.runtime!.id} runtime does not answer ${path}`;
      continue;
    }
    const replicas = router.next(target.workloadId, await router.ready(target.workloadId));
    for (const replica of replicas) {
      const upstreamBody = { ...body, ...(target.upstreamModel ? { model: target.upstreamModel } : {}) };
      const request = adapter ? adapter.request(path, upstreamBody, { servedModelName: model }) : { path: `/v1${path}`, body: upstreamBody };
      let attempt: Attempt;
      try {
        attempt = await call(replica, request.path, Buffer.from(JSON.stringify(request.body)), timeoutMs, (req) => {
          upstream = req;
          if (gone) req.destroy();
        });
      } catch (err) {
        if (gone) return ctx.takeOver();
        lastError = `replica ${replica.replica} of revision ${target.revision}: ${(err as Error).message}`;
        if ((err as { connect?: boolean }).connect) {
          ctx.log.warn({ err, revision: target.revision, replica: replica.replica }, 'a replica refused the connection; trying another');
          continue;
        }
        throw new AiplatError('unavailable', `The model "${model}" did not answer: ${lastError}`);
      }
      ctx.takeOver();
      const res = ctx.res;
      res.setHeader('x-aiplat-revision', String(target.revision));
      res.setHeader('x-aiplat-replica', String(replica.replica));
      if (adapter) {
        try {
          await answerThroughAdapter(res, attempt, adapter, path, body, model);
        } catch (err) {
          // The route took the response over: answer (or close) it here, never leave it hanging.
          ctx.log.warn({ err, revision: target.revision }, 'a runtime’s answer could not be adapted');
          writeError(res, 502, `The ${target.runtime!.id} runtime's answer could not be read: ${(err as Error).message}`, 'bad_gateway');
        }
        return;
      }
      const type = attempt.headers['content-type'] ?? 'application/json';
      const rename = target.upstreamModel && target.upstreamModel !== model ? { from: target.upstreamModel, to: model } : undefined;
      if (!type.includes('event-stream')) {
        // A whole answer (small): one write with its length.
        let text: string;
        try {
          text = await readAll(attempt.stream);
        } catch (err) {
          if (!gone) ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
          res.destroy();
          return;
        }
        const out = Buffer.from(rename ? text.split(JSON.stringify(rename.from)).join(JSON.stringify(rename.to)) : text);
        res.writeHead(attempt.status, { 'content-type': type, 'content-length': out.length });
        res.end(out);
        return;
      }
      // A stream: passed on chunk by chunk as it comes.
      res.writeHead(attempt.status, { 'content-type': type, 'cache-control': 'no-cache' });
      res.flushHeaders();
      const source = rename ? attempt.stream.pipe(renameModel(rename.from, rename.to)) : attempt.stream;
      await new Promise<void>((resolve) => {
        const broke = (err: Error) => {
          if (!gone) ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
          res.destroy();
          resolve();
        };
        attempt.stream.once('error', broke);
        if (source !== attempt.stream) source.once('error', broke);
        res.once('close', () => {
          attempt.stream.destroy();
          resolve();
        });
        source.pipe(res);
      });
      return;
    }
  }
  throw new AiplatError('unavailable', `The model "${model}" cannot answer now: ${lastError}`);
}

async function answerThroughAdapter(res: http.ServerResponse, attempt: Attempt, adapter: NonNullable<ServingRuntime['openai']>, path: string, request: Record<string, unknown>, model: string): Promise<void> {
  const text = await readAll(attempt.stream);
  let upstream: unknown;
  try {
    upstream = JSON.parse(text);
  } catch {
    return writeError(res, 502, `The runtime answered something that is not JSON (status ${attempt.status})`, 'bad_gateway');
  }
  if (attempt.status >= 400) {
    const message = (upstream as { error?: unknown })?.error;
    return writeError(res, attempt.status >= 500 ? 502 : attempt.status, typeof message === 'string' ? message : `The runtime refused the request (status ${attempt.status})`, 'upstream_error');
  }
  const answer = adapter.response(path, upstream, { servedModelName: model, request });
  if (request.stream !== true) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
    return;
  }
  // The runtime answers whole: stream it as one chunk, then [DONE].
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const chunk of asChunks(answer)) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  res.end('data: [DONE]\n\n');
}

/** A whole OpenAI answer as stream chunks (`chat.completion.chunk` / `text_completion`). */
export function asChunks(answer: Record<string, unknown>): Record<string, unknown>[] {
  const choices = (answer.choices as Record<string, any>[] | undefined) ?? [];
  const id = (answer.id as string | undefined) ?? `chatcmpl-${randomUUID()}`;
  if (answer.object === 'chat.completion') {
    const base = { id, object: 'chat.completion.chunk', created: answer.created, model: answer.model };
    return [
      { ...base, choices: choices.map((c) => ({ index: c.index ?? 0, delta: { role: 'assistant', content: c.message?.content ?? '' }, finish_reason: null })) },
      { ...base, choices: choices.map((c) => ({ index: c.index ?? 0, delta: {}, finish_reason: c.finish_reason ?? 'stop' })), ...(answer.usage ? { usage: answer.usage } : {}) },
    ];
  }
  return [answer];
}

/** `GET /v1/models`: the served models the caller may call. */
export async function listModels(ctx: RouteContext): Promise<Record<string, unknown>> {
  const rows = (await ctx.plugin.db(T.deployments).whereNot({ state: 'failed' }).orderBy('served_model_name')) as DeploymentRow[];
  return {
    object: 'list',
    data: rows
      .filter((d) => ctx.can('serving:invoke', d.team_id))
      .map((d) => ({ id: d.served_model_name, object: 'model', created: Math.floor(new Date(d.created_at).getTime() / 1000), owned_by: d.team_id })),
  };
}
