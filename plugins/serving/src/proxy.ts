/**
 * The gateway behind `/v1`: forwards an OpenAI request, by its `model`, to a ready replica of the
 * deployment's live revision(s), chosen by the traffic weights (canary), then within the revision
 * round-robin or by fewest requests in flight (the deployment's `gateway.balancing`). A replica
 * that fails `ejectAfterFailures` times in a row (refused connection, timeout, 5xx, a cut stream)
 * leaves the rotation for `ejectSeconds`, then comes back once its readiness check answers. Streams
 * pass through event by event as they come (their `usage` and first token are noted on the way);
 * a client that goes away cancels the upstream request; a replica that cannot be reached before
 * anything was sent is skipped for another. Every answer is one sample for the meter (metrics,
 * usage). Runtimes that do not speak OpenAI (Triton's KServe v2) answer through their adapter.
 */
import http from 'node:http';
import { Transform } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { AiplatError, coreServices, type PluginContext, type RouteContext } from '@aiplat/plugin-sdk';
import type { GatewaySettings, ServingRuntime } from '../api/index.js';
import { runtimeOf, type ServingSettings } from './controller.js';
import type { Caller, Meter } from './meter.js';
import { T, gatewayOf, parsed, type DeploymentRow, type RevisionRow } from './store.js';

export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

interface Target {
  revision: number;
  weight: number;
  runtime: ServingRuntime | undefined;
  upstreamModel: string | null;
  workloadId: string;
  maxModelLen: number | null;
}

export interface Route {
  deployment: DeploymentRow;
  gateway: GatewaySettings;
  targets: Target[];
  at: number;
}

interface Replica {
  host: string;
  port: number;
  replica: number;
  /** The gateway's view of it: shared by every request, kept while the replica is. */
  state: ReplicaState;
}

/** Requests in flight and passive ejection, per replica (workload, replica, host and port). */
export interface ReplicaState {
  workloadId: string;
  replica: number;
  outstanding: number;
  consecutiveFailures: number;
  ejectedUntil: number | null;
  probing: boolean;
  readinessPath: string | null;
  host: string;
  port: number;
}

/** How the gateway treats failing replicas (the plugin's settings). */
export interface EjectionSettings {
  ejectAfterFailures: number;
  ejectSeconds: number;
}

/** Routes by served model name, and ready replicas by workload, each kept for a second. */
export class Router {
  private readonly routes = new Map<string, Route>();
  private readonly replicas = new Map<string, { at: number; list: Replica[] }>();
  private readonly turn = new Map<string, number>();
  private readonly hosts = new Map<string, string>();
  /** By `workload/replica/host:port`: a restarted replica on a new port starts afresh. */
  readonly states = new Map<string, ReplicaState>();

  constructor(
    private readonly plugin: () => PluginContext,
    private readonly ejection: () => EjectionSettings,
  ) {}

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
      targets.push({ revision: r.number, weight: t.weight, runtime: runtimeOf(plugin, r.runtime), upstreamModel: r.upstream_model, workloadId: r.workload_id, maxModelLen: r.max_model_len });
    }
    const route = { deployment, gateway: gatewayOf(deployment), targets, at: Date.now() };
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
    const readinessPath = workload?.spec.readiness?.httpGet?.path ?? null;
    for (const p of workload?.placements ?? []) {
      const port = p.ports?.http;
      if (p.state !== 'ready' || !port) continue;
      const host = await this.hostOf(p.nodeId);
      const key = `${workloadId}/${p.replica}/${host}:${port}`;
      let state = this.states.get(key);
      if (!state) {
        state = { workloadId, replica: p.replica, outstanding: 0, consecutiveFailures: 0, ejectedUntil: null, probing: false, readinessPath, host, port };
        this.states.set(key, state);
      }
      list.push({ host, port, replica: p.replica, state });
    }
    this.replicas.set(workloadId, { at: Date.now(), list });
    // Replicas that are gone (and have nothing in flight) are forgotten.
    for (const [key, state] of this.states) if (state.workloadId === workloadId && state.outstanding === 0 && !list.some((r) => r.state === state)) this.states.delete(key);
    return list;
  }

  /** A request to a replica failed (nothing usable came back): out of the rotation after enough in a row. */
  failed(state: ReplicaState): void {
    state.consecutiveFailures++;
    const { ejectAfterFailures, ejectSeconds } = this.ejection();
    if (state.consecutiveFailures >= ejectAfterFailures && state.ejectedUntil === null) {
      state.ejectedUntil = Date.now() + ejectSeconds * 1000;
      this.plugin().logger.warn({ workload: state.workloadId, replica: state.replica, failures: state.consecutiveFailures }, `a replica failed ${state.consecutiveFailures} times in a row: out of the rotation for ${ejectSeconds} s`);
    }
  }

  succeeded(state: ReplicaState): void {
    state.consecutiveFailures = 0;
  }

  /** Whether an ejected replica may take requests again: after its time out, once its readiness check answers. */
  private admitted(state: ReplicaState): boolean {
    if (state.ejectedUntil === null) return true;
    if (Date.now() < state.ejectedUntil || state.probing) return false;
    state.probing = true;
    void probe(state).then((ok) => {
      state.probing = false;
      if (ok) {
        state.ejectedUntil = null;
        state.consecutiveFailures = 0;
        this.plugin().logger.info({ workload: state.workloadId, replica: state.replica }, 'an ejected replica answers its readiness check again: back in the rotation');
      } else state.ejectedUntil = Date.now() + this.ejection().ejectSeconds * 1000;
    });
    return false;
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

  /**
   * The replicas of a workload in the order to try: those in the rotation first, round-robin or
   * fewest in flight first; ejected ones last (when all are out, they are tried rather than none).
   */
  next(workloadId: string, list: Replica[], balancing: GatewaySettings['balancing']): Replica[] {
    const n = (this.turn.get(workloadId) ?? 0) % Math.max(1, list.length);
    this.turn.set(workloadId, n + 1);
    const rotated = n === 0 ? list : [...list.slice(n), ...list.slice(0, n)];
    const inRotation = rotated.filter((r) => this.admitted(r.state));
    if (balancing === 'least-outstanding') inRotation.sort((a, b) => a.state.outstanding - b.state.outstanding);
    return inRotation.length === rotated.length ? inRotation : [...inRotation, ...rotated.filter((r) => !inRotation.includes(r))];
  }
}

/** An ejected replica's readiness check (its HTTP path, else a TCP connect by a request to `/`). */
function probe(state: ReplicaState): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: state.host, port: state.port, path: state.readinessPath ?? '/', timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(state.readinessPath ? (res.statusCode ?? 500) < 400 : true);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
  });
}

/**
 * The request body, at most `MAX_REQUEST_BYTES`, parsed as a JSON object; with its bytes, which go
 * on to the replica as they are when nothing in them changes. Past the limit the rest is read and
 * dropped, and the caller answers 413.
 */
export function readJsonBody(ctx: RouteContext): Promise<{ body: Record<string, unknown>; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = ctx.req;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        over = true;
        chunks.length = 0;
        reject(new AiplatError('payload_too_large', `The request body is larger than ${MAX_REQUEST_BYTES / 1024 / 1024} MiB`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('error', reject);
    req.once('end', () => {
      if (over) return;
      const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return reject(new AiplatError('invalid_json', 'The request body is not valid JSON'));
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return reject(new AiplatError('validation_failed', 'The request body must be a JSON object', { field: 'body' }));
      resolve({ body: body as Record<string, unknown>, raw });
    });
  });
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

/** What a stream's events told on the way through. */
interface StreamFacts {
  firstTokenAt: number | null;
  usage: { prompt: number; completion: number } | null;
  /** Events that carried content: the completion tokens when the runtime gives no usage. */
  contentEvents: number;
}

const CONTENT = /"(?:content|text)":"(?!")/;

/**
 * Passes a server-sent event stream on event by event as its chunks come: renames the upstream's
 * model to the served name, notes the first token and the usage, and drops the usage-only event
 * the gateway asked for when the client did not (`stream_options.include_usage`).
 */
function tapEvents(facts: StreamFacts, rename: { from: string; to: string } | undefined, dropUsageOnly: boolean): Transform {
  const needle = rename ? JSON.stringify(rename.from) : '';
  const replacement = rename ? JSON.stringify(rename.to) : '';
  let tail = '';
  const pass = (event: string): string => {
    if (CONTENT.test(event)) {
      facts.firstTokenAt ??= performance.now();
      facts.contentEvents++;
    }
    if (event.includes('"usage":{')) {
      try {
        const data = JSON.parse(event.slice(event.indexOf('{'))) as { choices?: unknown[]; usage?: { prompt_tokens?: number; completion_tokens?: number } };
        if (data.usage) facts.usage = { prompt: Number(data.usage.prompt_tokens ?? 0), completion: Number(data.usage.completion_tokens ?? 0) };
        if (dropUsageOnly && Array.isArray(data.choices) && data.choices.length === 0) return '';
      } catch {
        // Not one JSON event: passed on as it is.
      }
    }
    const out = rename ? event.split(needle).join(replacement) : event;
    return `${out}\n\n`;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const text = tail + chunk.toString('utf8');
      const events = text.split('\n\n');
      tail = events.pop()!;
      let out = '';
      for (const e of events) out += pass(e);
      done(null, out);
    },
    flush(done) {
      done(null, tail ? (rename ? tail.split(needle).join(replacement) : tail) : '');
    },
  });
}

const PROMPT_TOKENS = /"prompt_tokens"\s*:\s*(\d+)/;
const COMPLETION_TOKENS = /"completion_tokens"\s*:\s*(\d+)/;

/** The usage of a whole answer (its `usage` object), found without parsing the rest. */
function usageOf(text: string): { prompt: number; completion: number } {
  const at = text.lastIndexOf('"usage"');
  if (at < 0) return { prompt: 0, completion: 0 };
  const part = text.slice(at);
  return { prompt: Number(PROMPT_TOKENS.exec(part)?.[1] ?? 0), completion: Number(COMPLETION_TOKENS.exec(part)?.[1] ?? 0) };
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
    // A kept-alive connection the replica closed (it died, or dropped it idle) fails before any
    // answer: as good as not reaching it (Node's advice for reused sockets).
    req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { connect: !connected || (req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) })));
    req.end(body);
  });
}

async function readAll(stream: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

export interface ForwardOptions {
  caller: Caller;
  /** Whether the caller may call this deployment (its key's team and models, or the user's permission). */
  may(deployment: DeploymentRow): boolean;
  /** Only this revision (the playground's comparison); it must be in the traffic. */
  revision?: number;
  meter: Meter;
  /** The tokens an answer used (prompt + completion), for the caller's token budget. */
  onTokens?(total: number): void;
  /** The request's bytes as the client sent them, when `body` is them unchanged: sent on as they are where the gateway changes nothing. */
  raw?: Buffer;
}

/**
 * Forward an OpenAI request (`path` below `/v1`, e.g. `/chat/completions`) to the deployment
 * serving `body.model`. Takes over the response.
 */
export async function forward(ctx: RouteContext, router: Router, settings: ServingSettings, path: string, body: Record<string, unknown>, options: ForwardOptions): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model === '') throw new AiplatError('validation_failed', 'Name the model: the request body needs "model" (GET /v1/models lists them)', { field: 'model' });
  const route = await router.route(model);
  if (!route || !options.may(route.deployment)) throw new AiplatError('not_found', `The model "${model}" does not exist or you do not have access to it`, { field: 'model', openaiCode: 'model_not_found' });
  if (route.deployment.stopped) throw new AiplatError('unavailable', `The model "${model}" is stopped: start its deployment first`);
  let targets = route.targets;
  if (options.revision !== undefined) {
    targets = targets.filter((t) => t.revision === options.revision).map((t) => ({ ...t, weight: 100 }));
    if (targets.length === 0) throw new AiplatError('conflict', `Revision ${options.revision} of "${model}" takes no traffic now: pick a revision that serves`, { field: 'revision' });
  }
  if (targets.length === 0) throw new AiplatError('unavailable', `The model "${model}" has no ready revision yet (${route.deployment.state}${route.deployment.reason ? `: ${route.deployment.reason}` : ''})`);
  checkLimits(body, targets);

  // A client that goes away cancels the request to the replica (no AbortSignal: it costs every request).
  let upstream: http.ClientRequest | undefined;
  let gone = false;
  ctx.res.once('close', () => {
    if (ctx.res.writableFinished) return;
    gone = true;
    upstream?.destroy();
  });
  const started = performance.now();
  const sample = (revision: number, status: number, error: boolean, ttft: number | null, usage: { prompt: number; completion: number }) => {
    options.meter.record({
      deploymentId: route.deployment.id,
      team: route.deployment.team_id,
      revision,
      caller: options.caller,
      status,
      error,
      latencyMs: performance.now() - started,
      ttftMs: ttft === null ? null : ttft - started,
      promptTokens: usage.prompt,
      completionTokens: usage.completion,
    });
    if (options.onTokens && usage.prompt + usage.completion > 0) options.onTokens(usage.prompt + usage.completion);
  };
  const NONE = { prompt: 0, completion: 0 };
  const timeoutMs = settings.upstreamTimeoutSeconds * 1000;
  const streaming = body.stream === true;
  let lastError = 'no replica is ready';
  let lastRevision = targets[0]!.revision;
  for (const target of router.order(targets)) {
    const adapter = target.runtime?.openai;
    if (target.runtime && target.runtime.protocol !== 'openai' && target.runtime.protocol !== 'tgi' && !adapter) {
      lastError = `the ${target.runtime.id} runtime has no OpenAI adapter`;
      continue;
    }
    if (adapter && !adapter.paths.includes(path)) {
      lastError = `the ${target.runtime!.id} runtime does not answer ${path}`;
      continue;
    }
    lastRevision = target.revision;
    const replicas = router.next(target.workloadId, await router.ready(target.workloadId), route.gateway.balancing);
    // The usage of a stream comes in its last event: asked for when the client did not ask.
    const askUsage = streaming && !adapter && !(body.stream_options as { include_usage?: unknown } | undefined)?.include_usage;
    const upstreamBody = { ...body, ...(target.upstreamModel ? { model: target.upstreamModel } : {}), ...(askUsage ? { stream_options: { ...(body.stream_options as object | undefined), include_usage: true } } : {}) };
    const request = adapter ? adapter.request(path, upstreamBody, { servedModelName: model }) : { path: `/v1${path}`, body: upstreamBody };
    const payload = options.raw && !adapter && !askUsage && !target.upstreamModel ? options.raw : Buffer.from(JSON.stringify(request.body));
    for (const replica of replicas) {
      const state = replica.state;
      let attempt: Attempt;
      state.outstanding++;
      try {
        attempt = await call(replica, request.path, payload, timeoutMs, (req) => {
          upstream = req;
          if (gone) req.destroy();
        });
      } catch (err) {
        state.outstanding--;
        if (gone) return ctx.takeOver();
        router.failed(state);
        lastError = `replica ${replica.replica} of revision ${target.revision}: ${(err as Error).message}`;
        if ((err as { connect?: boolean }).connect) {
          ctx.log.warn({ err, revision: target.revision, replica: replica.replica }, 'a replica refused the connection; trying another');
          continue;
        }
        sample(target.revision, 504, true, null, NONE);
        throw new AiplatError('unavailable', `The model "${model}" did not answer: ${lastError}`);
      }
      ctx.takeOver();
      const res = ctx.res;
      res.setHeader('x-aiplat-revision', String(target.revision));
      res.setHeader('x-aiplat-replica', String(replica.replica));
      const serverFault = attempt.status >= 500;
      try {
        if (adapter) {
          let ok = true;
          try {
            await answerThroughAdapter(res, attempt, adapter, path, body, model);
          } catch (err) {
            // The route took the response over: answer (or close) it here, never leave it hanging.
            ok = false;
            ctx.log.warn({ err, revision: target.revision }, 'a runtime’s answer could not be adapted');
            writeError(res, 502, `The ${target.runtime!.id} runtime's answer could not be read: ${(err as Error).message}`, 'bad_gateway');
          }
          if (ok && !serverFault) router.succeeded(state);
          else router.failed(state);
          sample(target.revision, ok ? attempt.status : 502, !ok || serverFault, null, NONE);
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
            if (!gone) {
              ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
              router.failed(state);
            }
            sample(target.revision, 502, !gone, null, NONE);
            res.destroy();
            return;
          }
          const out = Buffer.from(rename ? text.split(JSON.stringify(rename.from)).join(JSON.stringify(rename.to)) : text);
          res.writeHead(attempt.status, { 'content-type': type, 'content-length': out.length });
          res.end(out);
          if (serverFault) router.failed(state);
          else router.succeeded(state);
          sample(target.revision, attempt.status, serverFault, null, attempt.status < 400 ? usageOf(text) : NONE);
          return;
        }
        // A stream: passed on event by event as it comes.
        res.writeHead(attempt.status, { 'content-type': type, 'cache-control': 'no-cache' });
        res.flushHeaders();
        const facts: StreamFacts = { firstTokenAt: null, usage: null, contentEvents: 0 };
        const source = attempt.stream.pipe(tapEvents(facts, rename, askUsage));
        const complete = await new Promise<boolean>((resolve) => {
          const broke = (err: Error) => {
            if (!gone) ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
            res.destroy();
            resolve(false);
          };
          attempt.stream.once('error', broke);
          source.once('error', broke);
          res.once('close', () => {
            attempt.stream.destroy();
            resolve(res.writableFinished);
          });
          source.pipe(res);
        });
        const broken = !complete && !gone;
        if (broken || serverFault) router.failed(state);
        else router.succeeded(state);
        sample(target.revision, broken ? 502 : attempt.status, broken || serverFault, facts.firstTokenAt, facts.usage ?? { prompt: 0, completion: facts.contentEvents });
        return;
      } finally {
        state.outstanding--;
      }
    }
  }
  sample(lastRevision, 503, true, null, NONE);
  throw new AiplatError('unavailable', `The model "${model}" cannot answer now: ${lastError}`);
}

/** `max_tokens` (or `max_completion_tokens`) beyond what the model takes is refused before any replica is asked. */
function checkLimits(body: Record<string, unknown>, targets: Target[]): void {
  const limit = Math.min(...targets.map((t) => t.maxModelLen ?? Infinity));
  if (!Number.isFinite(limit)) return;
  for (const field of ['max_tokens', 'max_completion_tokens']) {
    const asked = body[field];
    if (typeof asked === 'number' && asked > limit) {
      throw new AiplatError('validation_failed', `${field} is ${asked}, but the model takes at most ${limit} tokens (prompt and answer together)`, { field, openaiCode: 'context_length_exceeded' });
    }
  }
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
export async function listModels(ctx: RouteContext, may: (d: DeploymentRow) => boolean): Promise<Record<string, unknown>> {
  const rows = (await ctx.plugin.db(T.deployments).whereNot({ state: 'failed' }).orderBy('served_model_name')) as DeploymentRow[];
  return {
    object: 'list',
    data: rows
      .filter(may)
      .map((d) => ({ id: d.served_model_name, object: 'model', created: Math.floor(new Date(d.created_at).getTime() / 1000), owned_by: d.team_id })),
  };
}
