/**
 * The gateway behind `/v1`: forwards an OpenAI request, by its `model`, to a ready replica of the
 * deployment's live revision(s), chosen by the traffic weights (canary), then within the revision
 * round-robin or by fewest requests in flight (the deployment's `gateway.balancing`). A replica
 * that fails `ejectAfterFailures` times in a row (refused connection, timeout, 5xx, a cut stream)
 * leaves the rotation for `ejectSeconds`, then comes back once its readiness check answers. Streams
 * pass through event by event as they come (their `usage` and first token are noted on the way);
 * a client that goes away cancels the upstream request; a replica that cannot be reached is
 * skipped for another, and one that closes the connection before answering is retried once on
 * another. Replicas are called through undici pools (upstream.ts). Every answer is one sample for
 * the meter (metrics, usage). Runtimes that do not speak OpenAI (Triton's KServe v2) answer through
 * their adapter.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { AiplatError, coreServices, type PluginContext, type RouteContext } from '@aiplat/plugin-sdk';
import type { GatewaySettings, ServingRuntime } from '../api/index.js';
import { runtimeOf, type ServingSettings } from './controller.js';
import type { Caller, Meter } from './meter.js';
import { T, gatewayOf, parsed, type DeploymentRow, type RevisionRow } from './store.js';
import type { Pool } from 'undici';
import { Upstreams, UpstreamError, type Answer, type Exchange } from './upstream.js';

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
  /** The smallest context length of the targets (Infinity when none says). */
  maxModelLen: number;
  at: number;
}

function maxModelLenOf(targets: Target[]): number {
  let limit = Infinity;
  for (const t of targets) if (t.maxModelLen !== null && t.maxModelLen < limit) limit = t.maxModelLen;
  return limit;
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
  /** Its kept-alive connections (made at the first call). */
  pool?: Pool;
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
  /** Kept-alive connections to the replicas. */
  readonly upstreams = new Upstreams();

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
    const route = { deployment, gateway: gatewayOf(deployment), targets, maxModelLen: maxModelLenOf(targets), at: Date.now() };
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
    // Replicas that are gone (and have nothing in flight) are forgotten, with their connections.
    for (const [key, state] of this.states) {
      if (state.workloadId !== workloadId || state.outstanding > 0 || list.some((r) => r.state === state)) continue;
      this.states.delete(key);
      if (![...this.states.values()].some((o) => o.host === state.host && o.port === state.port)) this.upstreams.forget(state.host, state.port);
    }
    return list;
  }

  /** The plugin stops: close every connection. */
  async close(): Promise<void> {
    this.invalidate();
    this.states.clear();
    await this.upstreams.close();
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
    if (targets.length < 2) return targets;
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
    if (list.length < 2) {
      // The only one is tried even when ejected (rather than none); the check starts its probe.
      if (list.length === 1) this.admitted(list[0]!.state);
      return list;
    }
    const n = (this.turn.get(workloadId) ?? 0) % list.length;
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
class EventTap {
  private readonly needle: string;
  private readonly replacement: string;
  private tail = '';

  constructor(
    private readonly facts: StreamFacts,
    private readonly rename: { from: string; to: string } | undefined,
    private readonly dropUsageOnly: boolean,
  ) {
    this.needle = rename ? JSON.stringify(rename.from) : '';
    this.replacement = rename ? JSON.stringify(rename.to) : '';
  }

  /** What to pass on of a chunk: its complete events (the rest waits for the next chunk). */
  push(chunk: Buffer): string {
    const text = this.tail + chunk.toString('utf8');
    const events = text.split('\n\n');
    this.tail = events.pop()!;
    let out = '';
    for (const e of events) out += this.pass(e);
    return out;
  }

  /** What is left at the end. */
  flush(): string {
    const tail = this.tail;
    this.tail = '';
    return tail && this.rename ? tail.split(this.needle).join(this.replacement) : tail;
  }

  private pass(event: string): string {
    const facts = this.facts;
    if (CONTENT.test(event)) {
      facts.firstTokenAt ??= performance.now();
      facts.contentEvents++;
    }
    if (event.includes('"usage":{')) {
      try {
        const data = JSON.parse(event.slice(event.indexOf('{'))) as { choices?: unknown[]; usage?: { prompt_tokens?: number; completion_tokens?: number } };
        if (data.usage) facts.usage = { prompt: Number(data.usage.prompt_tokens ?? 0), completion: Number(data.usage.completion_tokens ?? 0) };
        if (this.dropUsageOnly && Array.isArray(data.choices) && data.choices.length === 0) return '';
      } catch {
        // Not one JSON event: passed on as it is.
      }
    }
    const out = this.rename ? event.split(this.needle).join(this.replacement) : event;
    return `${out}\n\n`;
  }
}

const PROMPT_TOKENS = /"prompt_tokens"\s*:\s*(\d+)/;
const COMPLETION_TOKENS = /"completion_tokens"\s*:\s*(\d+)/;

/** The usage of a whole answer (its `usage` object), found without parsing (or decoding) the rest. */
function usageOf(bytes: Buffer): { prompt: number; completion: number } {
  const at = bytes.lastIndexOf('"usage"');
  if (at < 0) return { prompt: 0, completion: 0 };
  const part = bytes.toString('latin1', at, Math.min(bytes.length, at + 256));
  return { prompt: Number(PROMPT_TOKENS.exec(part)?.[1] ?? 0), completion: Number(COMPLETION_TOKENS.exec(part)?.[1] ?? 0) };
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
  checkLimits(body, targets === route.targets ? route.maxModelLen : maxModelLenOf(targets));

  // A client that goes away cancels the call to the replica.
  let exchange: Exchange | undefined;
  let gone = false;
  const res = ctx.res;
  res.once('close', () => {
    if (res.writableFinished) return;
    gone = true;
    exchange?.cancel();
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
  // A replica that closed the connection before answering (it died with the request on its way) is
  // retried on another once; one that was never reached, on every other.
  let resetRetried = false;
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
    let requestPath = `/v1${path}`;
    let payload: Buffer;
    if (options.raw && !adapter && !askUsage && !target.upstreamModel) payload = options.raw;
    else {
      const upstreamBody = { ...body, ...(target.upstreamModel ? { model: target.upstreamModel } : {}), ...(askUsage ? { stream_options: { ...(body.stream_options as object | undefined), include_usage: true } } : {}) };
      const request = adapter ? adapter.request(path, upstreamBody, { servedModelName: model }) : { path: requestPath, body: upstreamBody };
      requestPath = request.path;
      payload = Buffer.from(JSON.stringify(request.body));
    }
    for (const replica of replicas) {
      const state = replica.state;
      let answer: Answer;
      state.outstanding++;
      try {
        exchange = router.upstreams.post(state, requestPath, payload, timeoutMs);
        if (gone) exchange.cancel();
        answer = await exchange.started;
      } catch (err) {
        state.outstanding--;
        if (gone) return ctx.takeOver();
        router.failed(state);
        lastError = `replica ${replica.replica} of revision ${target.revision}: ${(err as Error).message}`;
        const e = err as UpstreamError;
        if (e.connect || (e.reset && !resetRetried)) {
          if (e.reset) resetRetried = true;
          ctx.log.warn({ err, revision: target.revision, replica: replica.replica }, e.connect ? 'a replica refused the connection; trying another' : 'a replica closed the connection before answering; trying another');
          continue;
        }
        sample(target.revision, 504, true, null, NONE);
        throw new AiplatError('unavailable', `The model "${model}" did not answer: ${lastError}`);
      }
      ctx.takeOver();
      const call = exchange;
      res.setHeader('x-aiplat-revision', String(target.revision));
      res.setHeader('x-aiplat-replica', String(replica.replica));
      const serverFault = answer.status >= 500;
      try {
        if (adapter) {
          let ok = true;
          try {
            await answerThroughAdapter(res, answer, call, adapter, path, body, model);
          } catch (err) {
            // The route took the response over: answer (or close) it here, never leave it hanging.
            ok = false;
            ctx.log.warn({ err, revision: target.revision }, 'a runtime’s answer could not be adapted');
            writeError(res, 502, `The ${target.runtime!.id} runtime's answer could not be read: ${(err as Error).message}`, 'bad_gateway');
          }
          if (ok && !serverFault) router.succeeded(state);
          else router.failed(state);
          sample(target.revision, ok ? answer.status : 502, !ok || serverFault, null, NONE);
          return;
        }
        const type = headerOf(answer, 'content-type') ?? 'application/json';
        const rename = target.upstreamModel && target.upstreamModel !== model ? { from: target.upstreamModel, to: model } : undefined;
        if (!type.includes('event-stream')) {
          // A whole answer (small): one write with its length.
          let bytes: Buffer;
          try {
            bytes = await call.bytes();
          } catch (err) {
            if (!gone) {
              ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
              router.failed(state);
            }
            sample(target.revision, 502, !gone, null, NONE);
            res.destroy();
            return;
          }
          const out = rename ? Buffer.from(bytes.toString('utf8').split(JSON.stringify(rename.from)).join(JSON.stringify(rename.to))) : bytes;
          res.writeHead(answer.status, { 'content-type': type, 'content-length': out.length });
          res.end(out);
          if (serverFault) router.failed(state);
          else router.succeeded(state);
          sample(target.revision, answer.status, serverFault, null, answer.status < 400 ? usageOf(out) : NONE);
          return;
        }
        // A stream: passed on event by event as it comes; the replica is held back while the client does not read.
        res.writeHead(answer.status, { 'content-type': type, 'cache-control': 'no-cache' });
        res.flushHeaders();
        const facts: StreamFacts = { firstTokenAt: null, usage: null, contentEvents: 0 };
        const tap = new EventTap(facts, rename, askUsage);
        const onDrain = () => call.resume();
        res.on('drain', onDrain);
        let complete: boolean;
        try {
          await call.read((chunk) => {
            const out = tap.push(chunk);
            return out === '' || res.write(out);
          });
          res.end(tap.flush());
          complete = !gone;
        } catch (err) {
          if (!gone) ctx.log.warn({ err, revision: target.revision }, 'an upstream answer broke off');
          res.destroy();
          complete = false;
        } finally {
          res.off('drain', onDrain);
        }
        const broken = !complete && !gone;
        if (broken || serverFault) router.failed(state);
        else router.succeeded(state);
        sample(target.revision, broken ? 502 : answer.status, broken || serverFault, facts.firstTokenAt, facts.usage ?? { prompt: 0, completion: facts.contentEvents });
        return;
      } finally {
        state.outstanding--;
      }
    }
  }
  sample(lastRevision, 503, true, null, NONE);
  throw new AiplatError('unavailable', `The model "${model}" cannot answer now: ${lastError}`);
}

function headerOf(answer: Answer, name: string): string | undefined {
  const value = answer.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** `max_tokens` (or `max_completion_tokens`) beyond what the model takes is refused before any replica is asked. */
function checkLimits(body: Record<string, unknown>, limit: number): void {
  if (!Number.isFinite(limit)) return;
  for (const field of ['max_tokens', 'max_completion_tokens']) {
    const asked = body[field];
    if (typeof asked === 'number' && asked > limit) {
      throw new AiplatError('validation_failed', `${field} is ${asked}, but the model takes at most ${limit} tokens (prompt and answer together)`, { field, openaiCode: 'context_length_exceeded' });
    }
  }
}

async function answerThroughAdapter(res: http.ServerResponse, attempt: Answer, call: Exchange, adapter: NonNullable<ServingRuntime['openai']>, path: string, request: Record<string, unknown>, model: string): Promise<void> {
  const text = await call.text();
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
