/**
 * What the gateway saw: every request through `/v1` (and the playground) is one sample — its
 * deployment, revision, caller, status, latency, time to first token and tokens. Samples feed:
 *
 * - live metrics per deployment and revision in 5-second steps over the last hour (QPS, p50/p99
 *   latency, TTFT, tokens/s, error rate, the top callers), for the UI and `serving.sloBreached`;
 * - Prometheus series in the core's `/metrics`;
 * - metered usage per minute, deployment, revision and caller, written to `p_serving_usage` every
 *   few seconds (added to what is there), for the usage and cost reports.
 *
 * Kept in this process: with several core processes each counts its own requests (Prometheus sums
 * them; the usage table adds them up).
 */
import type { Knex, MetricSample } from '@aiplat/plugin-sdk';
import type { DeploymentMetrics, GatewaySettings, MetricsPoint } from '../api/index.js';
import { T, type UsageRow } from './store.js';

export const STEP_SECONDS = 5;
const KEEP_STEPS = 3600 / STEP_SECONDS;
/** Latencies kept per step and revision for the percentiles (a uniform sample beyond that). */
const RESERVOIR = 512;

export interface Caller {
  /** The API key's id, or null for a platform user. */
  keyId: string | null;
  userId: string | null;
  /** The key's name or the user's name. */
  name: string;
  team: string;
}

export interface Sample {
  deploymentId: string;
  /** The deployment's team (usage is billed to the caller's team: a key's team, else this). */
  team: string;
  revision: number;
  caller: Caller;
  status: number;
  /** A failure of the model's side: status ≥ 500, an upstream that could not be reached, a cut stream. */
  error: boolean;
  latencyMs: number;
  /** Streamed answers: time to the first token. */
  ttftMs: number | null;
  promptTokens: number;
  completionTokens: number;
}

interface Cell {
  requests: number;
  errors: number;
  latencies: number[];
  latencySeen: number;
  ttfts: number[];
  ttftSeen: number;
  promptTokens: number;
  completionTokens: number;
}

interface Step {
  /** Step index: epoch seconds / STEP_SECONDS. */
  index: number;
  revisions: Map<number, Cell>;
  callers: Map<string, { caller: Caller; requests: number; tokens: number }>;
}

function cell(): Cell {
  return { requests: 0, errors: 0, latencies: [], latencySeen: 0, ttfts: [], ttftSeen: 0, promptTokens: 0, completionTokens: 0 };
}

/** Keep a uniform sample of at most RESERVOIR values (Vitter's algorithm R). */
function keep(list: number[], seen: number, value: number): void {
  if (list.length < RESERVOIR) list.push(value);
  else {
    const j = Math.floor(Math.random() * seen);
    if (j < RESERVOIR) list[j] = value;
  }
}

function quantile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;

function pointOf(at: number, cells: Cell[], seconds: number): MetricsPoint {
  let requests = 0;
  let errors = 0;
  let promptTokens = 0;
  let completionTokens = 0;
  const latencies: number[] = [];
  const ttfts: number[] = [];
  for (const c of cells) {
    requests += c.requests;
    errors += c.errors;
    promptTokens += c.promptTokens;
    completionTokens += c.completionTokens;
    for (const v of c.latencies) latencies.push(v);
    for (const v of c.ttfts) ttfts.push(v);
  }
  latencies.sort((a, b) => a - b);
  ttfts.sort((a, b) => a - b);
  const p = (v: number | null) => (v === null ? null : round(v, 2));
  return {
    at: new Date(at * 1000).toISOString(),
    requests,
    qps: round(requests / seconds),
    errors,
    errorRate: requests ? round(errors / requests, 4) : 0,
    p50Ms: p(quantile(latencies, 0.5)),
    p99Ms: p(quantile(latencies, 0.99)),
    ttftMs: p(quantile(ttfts, 0.5)),
    tokensPerSecond: round(completionTokens / seconds),
    promptTokens,
    completionTokens,
  };
}

/** A usage row as the meter adds it up (its minute as ISO text). */
type UsageCell = UsageRow & { minute: string };

/** The cumulative Prometheus counters of one deployment (by name) and revision. */
interface Series {
  ok: number;
  clientErrors: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  durationSum: number;
  durationCount: number;
}

/**
 * What the requests of one caller to one revision of one deployment share, found once and then
 * reused, so that a request builds no key strings: its Prometheus series, its name among the
 * step's callers, and its usage row for the current minute (valid while `usageMinute` and
 * `usageGeneration` still match).
 */
interface Slot {
  name: string;
  /** The usage row's team, key and user (a key's calls: user ''; a user's calls: key ''). */
  team: string;
  keyId: string;
  userId: string;
  series: Series;
  who: string;
  /** The usage key without its minute: `deployment|revision|team|key|user` (as `flush` rebuilds it). */
  usageKeyTail: string;
  usage: UsageCell | undefined;
  usageMinute: string;
  usageGeneration: number;
}

export class Meter {
  private readonly steps = new Map<string, Step[]>();
  private usage = new Map<string, UsageCell>();
  private lastUsed = new Map<string, number>();
  /** Cumulative counters for Prometheus, by deployment name and revision. */
  private readonly series = new Map<string, Map<number, Series>>();
  /** Per API key's caller object (one object while the key's row is cached), deployment and revision. */
  private readonly slots = new WeakMap<Caller, Map<string, Map<number, Slot>>>();
  /** Counts the usage maps flushed: a slot's cached usage row is only good for the current map. */
  private generation = 0;
  /** Deployment names for labels (kept by the plugin as deployments are read). */
  readonly names = new Map<string, string>();

  private minute = { start: 0, iso: '' };

  /** The minute's start as ISO text, made once a minute. */
  private minuteOf(now: number): string {
    const start = Math.floor(now / 60_000) * 60_000;
    if (start !== this.minute.start) this.minute = { start, iso: new Date(start).toISOString() };
    return this.minute.iso;
  }

  record(s: Sample): void {
    const now = Date.now();
    const slot = this.slotOf(s);
    const index = Math.floor(now / 1000 / STEP_SECONDS);
    let list = this.steps.get(s.deploymentId);
    if (!list) this.steps.set(s.deploymentId, (list = []));
    let step = list.at(-1);
    if (!step || step.index !== index) {
      step = { index, revisions: new Map(), callers: new Map() };
      list.push(step);
      while (list.length > 0 && list[0]!.index <= index - KEEP_STEPS) list.shift();
    }
    let c = step.revisions.get(s.revision);
    if (!c) step.revisions.set(s.revision, (c = cell()));
    c.requests++;
    if (s.error) c.errors++;
    keep(c.latencies, ++c.latencySeen, s.latencyMs);
    if (s.ttftMs !== null) keep(c.ttfts, ++c.ttftSeen, s.ttftMs);
    c.promptTokens += s.promptTokens;
    c.completionTokens += s.completionTokens;
    const caller = step.callers.get(slot.who);
    const tokens = s.promptTokens + s.completionTokens;
    if (caller) {
      caller.requests++;
      caller.tokens += tokens;
    } else step.callers.set(slot.who, { caller: s.caller, requests: 1, tokens });

    // Metered usage, per minute.
    const minute = this.minuteOf(now);
    let u = slot.usage;
    if (!u || slot.usageMinute !== minute || slot.usageGeneration !== this.generation) {
      const key = `${minute}|${slot.usageKeyTail}`;
      u = this.usage.get(key);
      if (!u) {
        u = { minute, deployment_id: s.deploymentId, revision: s.revision, team_id: slot.team, key_id: slot.keyId, user_id: slot.userId, requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 };
        this.usage.set(key, u);
      }
      slot.usage = u;
      slot.usageMinute = minute;
      slot.usageGeneration = this.generation;
    }
    u.requests++;
    if (s.error) u.errors++;
    u.prompt_tokens += s.promptTokens;
    u.completion_tokens += s.completionTokens;
    if (s.caller.keyId) this.lastUsed.set(s.caller.keyId, now);

    // Prometheus.
    const series = slot.series;
    if (s.error) series.errors++;
    else if (s.status >= 400) series.clientErrors++;
    else series.ok++;
    series.promptTokens += s.promptTokens;
    series.completionTokens += s.completionTokens;
    series.durationSum += s.latencyMs / 1000;
    series.durationCount++;
  }

  /** The slot of a sample's caller, deployment and revision (made again when the deployment's name or the billed team changed). */
  private slotOf(s: Sample): Slot {
    const name = this.names.get(s.deploymentId) ?? s.deploymentId;
    // Usage is billed to the caller's team: a key's team, else the deployment's.
    const team = s.caller.keyId ? s.caller.team : s.team;
    // A signed-in user's caller is made per request (the playground): nothing to keep it on.
    let byRevision: Map<number, Slot> | undefined;
    if (s.caller.keyId) {
      let byDeployment = this.slots.get(s.caller);
      if (!byDeployment) this.slots.set(s.caller, (byDeployment = new Map()));
      byRevision = byDeployment.get(s.deploymentId);
      if (!byRevision) byDeployment.set(s.deploymentId, (byRevision = new Map()));
    }
    let slot = byRevision?.get(s.revision);
    if (!slot || slot.name !== name || slot.team !== team) {
      let byName = this.series.get(name);
      if (!byName) this.series.set(name, (byName = new Map()));
      let series = byName.get(s.revision);
      if (!series) byName.set(s.revision, (series = { ok: 0, clientErrors: 0, errors: 0, promptTokens: 0, completionTokens: 0, durationSum: 0, durationCount: 0 }));
      const keyId = s.caller.keyId ?? '';
      const userId = s.caller.keyId ? '' : (s.caller.userId ?? '');
      slot = {
        name,
        team,
        keyId,
        userId,
        series,
        who: s.caller.keyId ? `k:${s.caller.keyId}` : `u:${s.caller.userId ?? ''}`,
        usageKeyTail: `${s.deploymentId}|${s.revision}|${team}|${keyId}|${userId}`,
        usage: undefined,
        usageMinute: '',
        usageGeneration: -1,
      };
      byRevision?.set(s.revision, slot);
    }
    return slot;
  }

  /** The steps of a deployment within the last `windowSeconds`. */
  private recent(deploymentId: string, windowSeconds: number): { steps: Step[]; first: number; last: number } {
    const last = Math.floor(Date.now() / 1000 / STEP_SECONDS);
    const first = last - Math.ceil(windowSeconds / STEP_SECONDS) + 1;
    return { steps: (this.steps.get(deploymentId) ?? []).filter((s) => s.index >= first), first, last };
  }

  /** The live view of a deployment over the last `windowSeconds`. */
  metrics(deploymentId: string, windowSeconds: number): Omit<DeploymentMetrics, 'replicas' | 'slo'> {
    const { steps, first, last } = this.recent(deploymentId, windowSeconds);
    const byIndex = new Map(steps.map((s) => [s.index, s]));
    const revisions = new Set<number>();
    for (const s of steps) for (const r of s.revisions.keys()) revisions.add(r);
    const points: MetricsPoint[] = [];
    const perRevision = new Map<number, MetricsPoint[]>([...revisions].map((r) => [r, []]));
    for (let i = first; i <= last; i++) {
      const s = byIndex.get(i);
      const at = i * STEP_SECONDS;
      points.push(pointOf(at, s ? [...s.revisions.values()] : [], STEP_SECONDS));
      for (const r of revisions) perRevision.get(r)!.push(pointOf(at, s?.revisions.get(r) ? [s.revisions.get(r)!] : [], STEP_SECONDS));
    }
    const callers = new Map<string, { caller: Caller; requests: number; tokens: number }>();
    for (const s of steps)
      for (const [who, c] of s.callers) {
        const sum = callers.get(who);
        if (sum) {
          sum.requests += c.requests;
          sum.tokens += c.tokens;
        } else callers.set(who, { ...c });
      }
    const seconds = (last - first + 1) * STEP_SECONDS;
    return {
      deploymentId,
      windowSeconds: seconds,
      stepSeconds: STEP_SECONDS,
      points,
      revisions: [...perRevision].sort((a, b) => a[0] - b[0]).map(([revision, pts]) => ({ revision, points: pts })),
      totals: pointOf(first * STEP_SECONDS, steps.flatMap((s) => [...s.revisions.values()]), seconds),
      topKeys: [...callers.values()]
        .sort((a, b) => b.requests - a.requests || b.tokens - a.tokens)
        .slice(0, 10)
        .map((c) => ({ keyId: c.caller.keyId, name: c.caller.name, team: c.caller.team, requests: c.requests, totalTokens: c.tokens })),
    };
  }

  /** The window's totals, for the objectives (the steps that cover at least the window). */
  observed(deploymentId: string, windowSeconds: number): { requests: number; errorRate: number; p99Ms: number | null } {
    const { steps } = this.recent(deploymentId, windowSeconds + STEP_SECONDS);
    const p = pointOf(0, steps.flatMap((s) => [...s.revisions.values()]), windowSeconds);
    return { requests: p.requests, errorRate: p.errorRate, p99Ms: p.p99Ms };
  }

  deployments(): string[] {
    return [...this.steps.keys()];
  }

  /** Write the metered minutes to the usage table (added to what is there) and the keys' last use. */
  async flush(db: Knex): Promise<void> {
    if (this.usage.size === 0 && this.lastUsed.size === 0) return;
    const rows = [...this.usage.values()];
    const used = this.lastUsed;
    this.generation++;
    this.usage = new Map();
    this.lastUsed = new Map();
    try {
      if (rows.length) {
        await db(T.usage)
          .insert(rows)
          .onConflict(['minute', 'deployment_id', 'revision', 'team_id', 'key_id', 'user_id'])
          .merge({
            requests: db.raw('?? + excluded.requests', [`${T.usage}.requests`]),
            errors: db.raw('?? + excluded.errors', [`${T.usage}.errors`]),
            prompt_tokens: db.raw('?? + excluded.prompt_tokens', [`${T.usage}.prompt_tokens`]),
            completion_tokens: db.raw('?? + excluded.completion_tokens', [`${T.usage}.completion_tokens`]),
          });
      }
      for (const [id, at] of used) await db(T.keys).where({ id }).update({ last_used_at: new Date(at).toISOString() });
    } catch (err) {
      // Not lost: counted again at the next flush.
      for (const r of rows) {
        const key = `${r.minute}|${r.deployment_id}|${r.revision}|${r.team_id}|${r.key_id}|${r.user_id}`;
        const now = this.usage.get(key);
        if (now) {
          now.requests += r.requests;
          now.errors += r.errors;
          now.prompt_tokens += r.prompt_tokens;
          now.completion_tokens += r.completion_tokens;
        } else this.usage.set(key, r);
      }
      for (const [id, at] of used) if (!this.lastUsed.has(id)) this.lastUsed.set(id, at);
      throw err;
    }
  }

  /** Prometheus samples: cumulative counters and the last minute's quantiles. */
  prometheus(): {
    requests: MetricSample[];
    tokens: MetricSample[];
    duration: MetricSample[];
    ttft: MetricSample[];
    qps: MetricSample[];
    errorRate: MetricSample[];
  } {
    const requests: MetricSample[] = [];
    const tokens: MetricSample[] = [];
    const duration: MetricSample[] = [];
    const ttft: MetricSample[] = [];
    const qps: MetricSample[] = [];
    const errorRate: MetricSample[] = [];
    for (const [deployment, byRevision] of this.series) {
      for (const [r, x] of byRevision) {
        const labels = { deployment, revision: String(r) };
        // An outcome appears once it has happened.
        for (const [outcome, value] of [['ok', x.ok], ['4xx', x.clientErrors], ['error', x.errors]] as const) {
          if (value > 0) requests.push({ labels: { ...labels, outcome }, value });
        }
        tokens.push({ labels: { ...labels, kind: 'prompt' }, value: x.promptTokens }, { labels: { ...labels, kind: 'completion' }, value: x.completionTokens });
        duration.push({ labels, value: x.durationSum, suffix: '_sum' }, { labels, value: x.durationCount, suffix: '_count' });
      }
    }
    for (const id of this.steps.keys()) {
      const deployment = this.names.get(id) ?? id;
      const { steps, first, last } = this.recent(id, 60);
      const seconds = (last - first + 1) * STEP_SECONDS;
      const byRevision = new Map<number, Cell[]>();
      for (const s of steps) for (const [r, c] of s.revisions) byRevision.set(r, [...(byRevision.get(r) ?? []), c]);
      for (const [r, cells] of byRevision) {
        const labels = { deployment, revision: String(r) };
        const reqs = cells.reduce((a, c) => a + c.requests, 0);
        const errs = cells.reduce((a, c) => a + c.errors, 0);
        qps.push({ labels, value: round(reqs / seconds) });
        errorRate.push({ labels, value: reqs ? round(errs / reqs, 4) : 0 });
        const lat = cells.flatMap((c) => c.latencies).sort((a, b) => a - b);
        const tt = cells.flatMap((c) => c.ttfts).sort((a, b) => a - b);
        for (const q of [0.5, 0.99]) {
          const ql = { ...labels, quantile: String(q) };
          const l = quantile(lat, q);
          if (l !== null) duration.push({ labels: ql, value: l / 1000 });
          const t = quantile(tt, q);
          if (t !== null) ttft.push({ labels: ql, value: t / 1000 });
        }
      }
    }
    return { requests, tokens, duration, ttft, qps, errorRate };
  }

  /** Forget a deleted deployment's live view (its metered usage stays). */
  forget(deploymentId: string): void {
    this.steps.delete(deploymentId);
  }
}

/** Which objective a window breaks, if any (error rate first). */
export function breachOf(slo: GatewaySettings['slo'], observed: { requests: number; errorRate: number; p99Ms: number | null }): { objective: 'errorRate' | 'p99LatencyMs'; limit: number; observed: number } | null {
  if (observed.requests === 0) return null;
  if (slo.errorRate !== null && observed.errorRate > slo.errorRate) return { objective: 'errorRate', limit: slo.errorRate, observed: observed.errorRate };
  if (slo.p99LatencyMs !== null && observed.p99Ms !== null && observed.p99Ms > slo.p99LatencyMs) return { objective: 'p99LatencyMs', limit: slo.p99LatencyMs, observed: observed.p99Ms };
  return null;
}
