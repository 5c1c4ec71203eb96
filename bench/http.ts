/**
 * `npm run bench:http`: two comparisons, each in one run of servers measured alternately.
 *
 * `read` suite: throughput of a plugin route through the full stack of the real core
 * (request id, logging at info, metrics, plugin dispatch, bearer authentication, permission check,
 * query validation, the plugin's hook chain) against a bare Koa app returning the same JSON.
 * Goal: full ≥ 0.80 × bare.
 *
 * `audit` suite: the same mutating route (`POST /api/plugins/hello/greetings`: a transaction,
 * an upsert, the hook chain, an event after commit) on two cores, one writing its fail-closed,
 * hash-chained audit row per request in the request's transaction and one started with
 * `AIPLAT_AUDIT_DISABLED_FOR_BENCH=1`, a switch that exists for this benchmark only (it turns the
 * audit writer into a no-op; never set it anywhere else). Goal: audit on ≥ 0.70 × audit off. The
 * audit-on core's log is verified afterwards (one row per request, chain whole).
 *
 * Both servers run as child processes started with the same Node flags; autocannon drives them
 * from this process, one at a time, alternating bare / full so drift (thermal, noisy neighbours)
 * hits both alike. Each measured run follows a warm-up run; the report takes the median per target.
 *
 *   npm run bench:http -- [--duration 10] [--warmup 3] [--connections 10] [--pipelining 1]
 *                         [--rounds 2] [--log-level info] [--suite read|audit|all]
 *                         [--only bare|floor|full|audit-on|audit-off] [--profile]
 *
 * Environment equivalents: BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_PIPELINING,
 * BENCH_ROUNDS, BENCH_LOG_LEVEL, BENCH_SUITE. `--profile` starts the core with `--cpu-prof` and leaves the
 * .cpuprofile under bench/results/profiles/ (open it in Chrome DevTools or speedscope).
 *
 * Exits 0 when every response was a 200 with the expected body, whether or not the goals are met;
 * exits 1 on any non-2xx, mismatched body, socket error or timeout, or when a server fails to start.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type Result } from 'autocannon';
import { TokenService } from '../core/src/auth/tokens.js';
import {
  ADMIN_PASSWORD,
  REPO_ROOT,
  RESULTS_DIR,
  cleanEnv,
  coreEnv,
  fmt,
  freePort,
  machine,
  makeTempDataDir,
  median,
  numberOption,
  processCpuSeconds,
  removeDir,
  systemBusySeconds,
  spawnNode,
  stopGracefully,
  table,
  waitFor200,
  writeResult,
  type NodeChild,
} from './lib.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Target = 'bare' | 'floor' | 'full' | 'audit-on' | 'audit-off';
type Suite = 'read' | 'audit';

/** What each suite measures: its route, its two targets (baseline first) and its goal. */
const SUITES: Record<Suite, { targets: [Target, Target]; reference?: Target; route: string; method: 'GET' | 'POST'; body?: string; goal: number; label: string }> = {
  // `floor` (bench/floor-koa.ts): the same features written by hand for this one route, as a reference point between the two.
  read: { targets: ['bare', 'full'], reference: 'floor', route: '/api/plugins/hello/greeting?name=Ada', method: 'GET', goal: 0.8, label: 'full stack / bare Koa' },
  audit: { targets: ['audit-off', 'audit-on'], route: '/api/plugins/hello/greetings', method: 'POST', body: '{"name":"Ada"}', goal: 0.7, label: 'audit on / audit off' },
};
/** A suite's targets in the order they run: baseline, reference (if any), measured. */
function suiteTargets(suite: Suite): Target[] {
  const { targets, reference } = SUITES[suite];
  return [targets[0], ...(reference ? [reference] : []), targets[1]];
}
const SUITE_OF: Record<Target, Suite> = { bare: 'read', floor: 'read', full: 'read', 'audit-on': 'audit', 'audit-off': 'audit' };
const READ_BODY = '{"greeting":"HELLO, ADA"}';
const GREETINGS_BODY = /^\{"greeting":"HELLO, ADA","count":\d+\}$/;

interface Server {
  proc: NodeChild;
  dataDir?: string;
  base: string;
  url: string;
  headers: Record<string, string>;
}

interface RunSummary {
  target: Target;
  round: number;
  requests: number;
  seconds: number;
  rps: number;
  latencyMs: { p50: number; p99: number; average: number; max: number };
  /** CPU the server process used (all its threads) over the run, as a share of one core. */
  serverCpuPercent?: number;
  /** Server CPU time per request, in microseconds. */
  serverCpuUsPerRequest?: number;
  /** CPU this process (autocannon) used over the run, as a share of one core. */
  clientCpuPercent: number;
  /** CPU every other process on the machine used over the run, as a share of one core (noise). */
  otherCpuPercent?: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      pipelining: { type: 'string' },
      rounds: { type: 'string' },
      'log-level': { type: 'string' },
      suite: { type: 'string' },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:http -- [--duration s] [--warmup s] [--connections n] [--pipelining n] [--rounds n] [--log-level level] [--suite read|audit|all] [--only bare|floor|full|audit-on|audit-off] [--profile]\n',
    );
    process.exit(0);
  }
  const logLevel = values['log-level'] ?? process.env.BENCH_LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const suite = values.suite ?? process.env.BENCH_SUITE ?? 'all';
  if (!['read', 'audit', 'all'].includes(suite)) throw new Error('--suite must be read, audit or all');
  const only = values.only as Target | undefined;
  if (only !== undefined && !(only in SUITE_OF)) throw new Error('--only must be bare, floor, full, audit-on or audit-off');
  const suites = (only ? [SUITE_OF[only]] : suite === 'all' ? ['read', 'audit'] : [suite]) as Suite[];
  const options = {
    duration: numberOption(values, 'duration', 'BENCH_DURATION', 10),
    warmup: numberOption(values, 'warmup', 'BENCH_WARMUP', 3),
    connections: Math.max(1, Math.round(numberOption(values, 'connections', 'BENCH_CONNECTIONS', 10))),
    pipelining: Math.max(1, Math.round(numberOption(values, 'pipelining', 'BENCH_PIPELINING', 1))),
    rounds: Math.max(1, Math.round(numberOption(values, 'rounds', 'BENCH_ROUNDS', 2))),
    logLevel,
    suites,
    targets: only ? [only] : suites.flatMap(suiteTargets),
    profile: values.profile,
  };
  if (options.duration < 1) throw new Error('--duration must be at least 1 second');
  return options;
}

type Options = ReturnType<typeof parseOptions>;

async function login(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  if (res.status !== 200) throw new Error(`login answered ${res.status}: ${await res.text()}`);
  const { accessToken } = (await res.json()) as { accessToken?: string };
  if (!accessToken) throw new Error('login returned no accessToken');
  return accessToken;
}

/** One request before the load, so a wrong body or status fails with a readable message. */
async function checkOnce(target: Target, server: Server): Promise<void> {
  const suite = SUITES[SUITE_OF[target]];
  const res = await fetch(server.url, { method: suite.method, headers: server.headers, body: suite.body });
  const body = await res.text();
  const ok = res.status === 200 && (suite.method === 'GET' ? body === READ_BODY : GREETINGS_BODY.test(body));
  if (!ok) throw new Error(`${target}: ${suite.method} ${server.url} answered ${res.status} ${body} (expected 200 ${suite.method === 'GET' ? READ_BODY : GREETINGS_BODY.source})`);
}

function problems(result: Result): string | undefined {
  const bad = [
    result.non2xx ? `${result.non2xx} non-2xx responses (${JSON.stringify(result.statusCodeStats)})` : '',
    result.errors ? `${result.errors} socket errors` : '',
    result.timeouts ? `${result.timeouts} timeouts` : '',
    result.mismatches ? `${result.mismatches} responses with an unexpected body` : '',
  ].filter(Boolean);
  return bad.length > 0 ? bad.join(', ') : undefined;
}

async function load(target: Target, server: Server, options: Options, seconds: number): Promise<Result> {
  const suite = SUITES[SUITE_OF[target]];
  return autocannon({
    url: server.url,
    method: suite.method,
    headers: server.headers,
    body: suite.body,
    connections: options.connections,
    pipelining: options.pipelining,
    duration: seconds,
    // The greeting count changes with every request: POSTs are checked by status (and once, by shape, before the load).
    ...(suite.method === 'GET' ? { expectBody: READ_BODY } : {}),
  });
}

async function measure(target: Target, round: number, server: Server, options: Options): Promise<RunSummary> {
  if (options.warmup > 0) {
    const warm = await load(target, server, options, options.warmup);
    const bad = problems(warm);
    if (bad) throw new Error(`${target} warm-up: ${bad}`);
  }
  const systemBefore = systemBusySeconds();
  const serverCpuBefore = processCpuSeconds(server.proc.pid);
  const clientCpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await load(target, server, options, options.duration);
  const wallSeconds = (performance.now() - wallBefore) / 1000;
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const serverCpuAfter = processCpuSeconds(server.proc.pid);
  const systemAfter = systemBusySeconds();
  const bad = problems(result);
  if (bad) throw new Error(`${target} round ${round}: ${bad}`);

  const requests = result.requests.total;
  const serverCpu = serverCpuBefore !== undefined && serverCpuAfter !== undefined ? serverCpuAfter - serverCpuBefore : undefined;
  const clientCpuSeconds = (clientCpu.user + clientCpu.system) / 1e6;
  const otherCpu =
    systemBefore !== undefined && systemAfter !== undefined && serverCpu !== undefined
      ? Math.max(0, systemAfter - systemBefore - serverCpu - clientCpuSeconds)
      : undefined;
  return {
    target,
    round,
    requests,
    seconds: result.duration,
    rps: requests / result.duration,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, average: result.latency.average, max: result.latency.max },
    serverCpuPercent: serverCpu === undefined ? undefined : (serverCpu / wallSeconds) * 100,
    serverCpuUsPerRequest: serverCpu === undefined ? undefined : (serverCpu / requests) * 1e6,
    clientCpuPercent: (clientCpuSeconds / wallSeconds) * 100,
    otherCpuPercent: otherCpu === undefined ? undefined : (otherCpu / wallSeconds) * 100,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    mismatches: result.mismatches,
  };
}

function medians(runs: RunSummary[]) {
  const pick = (f: (r: RunSummary) => number | undefined) => {
    const values = runs.map(f).filter((v): v is number => v !== undefined);
    return values.length > 0 ? median(values) : undefined;
  };
  return {
    rps: pick((r) => r.rps)!,
    p50Ms: pick((r) => r.latencyMs.p50)!,
    p99Ms: pick((r) => r.latencyMs.p99)!,
    averageMs: pick((r) => r.latencyMs.average)!,
    serverCpuPercent: pick((r) => r.serverCpuPercent),
    serverCpuUsPerRequest: pick((r) => r.serverCpuUsPerRequest),
    clientCpuPercent: pick((r) => r.clientCpuPercent)!,
    otherCpuPercent: pick((r) => r.otherCpuPercent),
  };
}

type Medians = ReturnType<typeof medians>;

const TARGET_LABEL: Record<Target, string> = { bare: 'bare Koa', floor: 'hand-written floor', full: 'full stack', 'audit-off': 'audit off', 'audit-on': 'audit on' };

/** The table of one suite's medians and, with both targets, its ratio against the goal. */
function report(suite: Suite, runs: RunSummary[], options: Options) {
  const spec = SUITES[suite];
  const present = suiteTargets(suite).filter((t) => options.targets.includes(t));
  const stats = new Map<Target, Medians>(present.map((t) => [t, medians(runs.filter((r) => r.target === t))]));
  const [baseTarget, testTarget] = spec.targets;
  const base = stats.get(baseTarget);
  const test = stats.get(testTarget);

  // Added cost per request. At saturation the server's single JavaScript thread is the
  // bottleneck and handles requests one after another, so 1/rps is the server time one request
  // takes (the number of connections sets how many wait in the queue, i.e. the latency by
  // Little's law, not the time each takes). The difference of the two is what the measured side
  // adds to every request. It is only meaningful when both servers ran on the same machine and
  // were CPU-bound (server CPU near 100 %); the CPU µs/request column measures the same
  // thing from the kernel's accounting, including GC and other threads.
  const ratio = base && test ? test.rps / base.rps : undefined;
  const addedUs = base && test ? 1e6 / test.rps - 1e6 / base.rps : undefined;
  const addedCpuUs =
    base?.serverCpuUsPerRequest !== undefined && test?.serverCpuUsPerRequest !== undefined ? test.serverCpuUsPerRequest - base.serverCpuUsPerRequest : undefined;

  const rows = [['median', ...present.map((t) => TARGET_LABEL[t])]];
  const col = (f: (m: Medians) => string) => present.map((t) => f(stats.get(t)!));
  rows.push(['req/s', ...col((m) => fmt(m.rps))]);
  rows.push(['latency p50 (ms)', ...col((m) => fmt(m.p50Ms, 0))]);
  rows.push(['latency p99 (ms)', ...col((m) => fmt(m.p99Ms, 0))]);
  rows.push(['latency mean (ms)', ...col((m) => fmt(m.averageMs, 2))]);
  // autocannon records latencies in whole milliseconds; Little's law gives the mean finely.
  rows.push(['latency mean, connections/rps (ms)', ...col((m) => fmt((options.connections * options.pipelining * 1000) / m.rps, 2))]);
  rows.push(['server time/req (µs) = 1e6/rps', ...col((m) => fmt(1e6 / m.rps, 1))]);
  rows.push(['server CPU/req (µs)', ...col((m) => (m.serverCpuUsPerRequest === undefined ? '?' : fmt(m.serverCpuUsPerRequest, 1)))]);
  rows.push(['server CPU (% of a core)', ...col((m) => (m.serverCpuPercent === undefined ? '?' : fmt(m.serverCpuPercent)))]);
  rows.push(['client CPU (% of a core)', ...col((m) => fmt(m.clientCpuPercent))]);
  rows.push(['other processes CPU (% of a core)', ...col((m) => (m.otherCpuPercent === undefined ? '?' : fmt(m.otherCpuPercent)))]);
  process.stdout.write(`\n${spec.method} ${spec.route} (${suite} suite)\n${table(rows)}\n(autocannon's latency percentiles have a resolution of 1 ms)\n\n`);
  if (ratio !== undefined && addedUs !== undefined) {
    process.stdout.write(`ratio ${spec.label}: ${fmt(ratio, 3)} (goal ≥ ${spec.goal})\n`);
    if (base?.serverCpuUsPerRequest !== undefined && test?.serverCpuUsPerRequest !== undefined) {
      // Less sensitive than req/s to other processes taking the CPU during one of the runs.
      process.stdout.write(`ratio by server CPU per request (${baseTarget} µs / ${testTarget} µs): ${fmt(base.serverCpuUsPerRequest / test.serverCpuUsPerRequest, 3)}\n`);
    }
    process.stdout.write(
      `added per request: ${fmt(addedUs, 1)} µs (1e6/${testTarget}_rps − 1e6/${baseTarget}_rps)` +
        (addedCpuUs === undefined ? '\n' : `; ${fmt(addedCpuUs, 1)} µs of server CPU\n`),
    );
    const reference = spec.reference ? stats.get(spec.reference) : undefined;
    if (reference) {
      process.stdout.write(
        `reference: ${TARGET_LABEL[spec.reference!]} / ${TARGET_LABEL[baseTarget]}: ${fmt(reference.rps / base!.rps, 3)}; ${TARGET_LABEL[testTarget]} / ${TARGET_LABEL[spec.reference!]}: ${fmt(test!.rps / reference.rps, 3)}` +
          (reference.serverCpuUsPerRequest !== undefined && base?.serverCpuUsPerRequest !== undefined && test?.serverCpuUsPerRequest !== undefined
            ? ` (server CPU per request: ${fmt(base.serverCpuUsPerRequest, 1)} → ${fmt(reference.serverCpuUsPerRequest, 1)} → ${fmt(test.serverCpuUsPerRequest, 1)} µs)\n`
            : '\n'),
      );
    }
    const kept = `${TARGET_LABEL[testTarget]} keeps ${fmt(ratio * 100, 1)}% of ${TARGET_LABEL[baseTarget]} throughput`;
    process.stdout.write(ratio >= spec.goal ? `GOAL MET: ${kept}\n` : `GOAL NOT MET: ${kept} (needs ≥ ${spec.goal * 100}%)\n`);
  }
  return {
    route: `${spec.method} ${spec.route}`,
    median: Object.fromEntries(stats),
    ratio,
    cpuRatio:
      base?.serverCpuUsPerRequest !== undefined && test?.serverCpuUsPerRequest !== undefined ? base.serverCpuUsPerRequest / test.serverCpuUsPerRequest : undefined,
    addedMicrosecondsPerRequest: addedUs,
    addedServerCpuMicrosecondsPerRequest: addedCpuUs,
    goal: { ratio: spec.goal, met: ratio === undefined ? undefined : ratio >= spec.goal },
  };
}

/** The audit-on core wrote one chained row per greeting and its chain verifies; the audit-off core wrote none. */
async function checkAuditLog(servers: Partial<Record<Target, Server>>, runs: RunSummary[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const target of ['audit-on', 'audit-off'] as const) {
    const server = servers[target];
    if (!server) continue;
    const headers = { authorization: server.headers.authorization! };
    const verify = (await (await fetch(`${server.base}/api/v1/audit/verify`, { headers })).json()) as { ok: boolean; checked: number; firstBadId: number | null };
    const page = (await (await fetch(`${server.base}/api/v1/audit?limit=1&action=${encodeURIComponent('hello:POST /greetings')}`, { headers })).json()) as { items: { id: number }[] };
    const measured = runs.filter((r) => r.target === target).reduce((sum, r) => sum + r.requests, 0);
    out[target] = { verify, greetingRows: page.items.length, measuredRequests: measured };
    process.stdout.write(
      `${target} audit log: ${verify.checked} rows, chain ${verify.ok ? 'whole' : `BROKEN at ${verify.firstBadId}`}; ${measured} measured requests (plus warm-ups and checks)\n`,
    );
    if (!verify.ok) throw new Error(`${target}: the audit chain does not verify after the load (first bad row ${verify.firstBadId})`);
    if (target === 'audit-on' && verify.checked < measured) throw new Error(`audit-on: ${verify.checked} audit rows for ${measured} requests`);
    if (target === 'audit-off' && page.items.length > 0) throw new Error('audit-off: the core wrote greeting audit rows; AIPLAT_AUDIT_DISABLED_FOR_BENCH did not apply');
  }
  return out;
}

async function startCoreTarget(target: Target, options: Options, profileDir: string): Promise<Server> {
  const suite = SUITES[SUITE_OF[target]];
  const port = await freePort();
  const dataDir = makeTempDataDir(target);
  const proc = spawnNode(
    'core/src/main.ts',
    // the token outlives any run: it is verified once, then cached
    coreEnv(
      { port, dataDir, pluginDirs: path.join(REPO_ROOT, 'examples'), logLevel: options.logLevel },
      // BENCHMARK ONLY: the audit writer becomes a no-op in the audit-off core.
      { AIPLAT_ACCESS_TOKEN_TTL: '86400', ...(target === 'audit-off' ? { AIPLAT_AUDIT_DISABLED_FOR_BENCH: '1' } : {}) },
    ),
    { nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [] },
  );
  const base = `http://127.0.0.1:${port}`;
  await waitFor200(`${base}/api/v1/health`, proc);
  const token = await login(base);
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(suite.body ? { 'content-type': 'application/json' } : {}) };
  return { proc, dataDir, base, url: `${base}${suite.route}`, headers };
}

/** The hand-written floor (bench/floor-koa.ts) with a signing key of its own, and a token like the core's. */
async function startFloor(options: Options, profileDir: string): Promise<Server> {
  const key = randomBytes(32);
  const port = await freePort();
  const proc = spawnNode('bench/floor-koa.ts', cleanEnv({ PORT: String(port), BENCH_JWT_KEY: key.toString('base64url') }), {
    nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  });
  // Signed as the core signs its access tokens.
  const token = await new TokenService(key, 86_400).signAccess({ id: randomUUID(), username: 'admin', roles: ['Admin'] });
  const base = `http://127.0.0.1:${port}`;
  const server = { proc, base, url: `${base}${SUITES.read.route}`, headers: { authorization: `Bearer ${token}` } };
  await waitFor200(`${base}/health`, proc);
  return server;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const profileDir = path.join(RESULTS_DIR, 'profiles');
  const servers: Partial<Record<Target, Server>> = {};
  try {
    // Start every server before measuring anything, so none starts while another is loaded.
    for (const target of options.targets) {
      if (target === 'bare') {
        const port = await freePort();
        const proc = spawnNode('bench/bare-koa.ts', cleanEnv({ PORT: String(port) }), {
          nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
        });
        const base = `http://127.0.0.1:${port}`;
        servers.bare = { proc, base, url: `${base}${SUITES.read.route}`, headers: {} };
        await waitFor200(servers.bare.url, proc);
      } else if (target === 'floor') {
        servers.floor = await startFloor(options, profileDir);
      } else {
        servers[target] = await startCoreTarget(target, options, profileDir);
      }
      await checkOnce(target, servers[target]!);
    }

    process.stdout.write(
      `${options.suites.map((s) => `${SUITES[s].method} ${SUITES[s].route}`).join(' and ')}: ${options.rounds} round(s) of ${options.targets.join(', ')}; ` +
        `${options.warmup} s warm-up + ${options.duration} s measured each; ${options.connections} connections, pipelining ${options.pipelining}; core LOG_LEVEL=${options.logLevel}\n`,
    );
    const runs: RunSummary[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of options.targets) {
        const run = await measure(target, round, servers[target]!, options);
        runs.push(run);
        process.stdout.write(
          `  round ${round} ${target.padEnd(9)}  ${fmt(run.rps).padStart(7)} req/s  p50 ${run.latencyMs.p50} ms  p99 ${run.latencyMs.p99} ms  ` +
            `server CPU ${run.serverCpuPercent === undefined ? '?' : fmt(run.serverCpuPercent)}% (${run.serverCpuUsPerRequest === undefined ? '?' : fmt(run.serverCpuUsPerRequest, 1)} µs/req)  ` +
            `client CPU ${fmt(run.clientCpuPercent)}%  other processes ${run.otherCpuPercent === undefined ? '?' : fmt(run.otherCpuPercent)}%\n`,
        );
      }
    }

    const results: Partial<Record<Suite, ReturnType<typeof report>>> = {};
    for (const suite of options.suites) results[suite] = report(suite, runs, options);
    const auditLog = options.suites.includes('audit') ? await checkAuditLog(servers, runs) : undefined;

    const maxOther = Math.max(...runs.map((r) => r.otherCpuPercent ?? 0));
    if (maxOther > 20) {
      process.stdout.write(
        `note: other processes used up to ${fmt(maxOther)}% of a core during a run: the figures are skewed (req/s most, CPU µs/req less); rerun on an idle machine.\n`,
      );
    }
    const maxClient = Math.max(...runs.map((r) => r.clientCpuPercent));
    if (maxClient > 90) {
      process.stdout.write(`note: autocannon used up to ${fmt(maxClient)}% of a core; the client may be the bottleneck for the faster target.\n`);
    }

    const file = writeResult('http', {
      benchmark: 'http',
      date: new Date().toISOString(),
      machine: machine(),
      options,
      runs,
      suites: results,
      auditLog,
      // The read suite's figures where earlier results had them.
      ...(results.read ? { route: results.read.route, median: { bare: results.read.median.bare, full: results.read.median.full }, ratio: results.read.ratio, goal: results.read.goal } : {}),
    });
    process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
  } finally {
    for (const server of Object.values(servers)) {
      await stopGracefully(server.proc);
      if (server.dataDir) removeDir(server.dataDir);
    }
    if (options.profile) process.stdout.write(`CPU profiles: ${path.relative(REPO_ROOT, profileDir)}/\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:http failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
