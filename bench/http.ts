/**
 * `npm run bench:http`: throughput of a plugin route through the full stack of the real core
 * (request id, logging at info, metrics, plugin dispatch, bearer authentication, permission check,
 * query validation, the plugin's hook chain) against a bare Koa app returning the same JSON.
 *
 * Both servers run as child processes started with the same Node flags; autocannon drives them
 * from this process, one at a time, alternating bare / full so drift (thermal, noisy neighbours)
 * hits both alike. Each measured run follows a warm-up run; the report takes the median per target.
 *
 *   npm run bench:http -- [--duration 10] [--warmup 3] [--connections 10] [--pipelining 1]
 *                         [--rounds 2] [--log-level info] [--only bare|full] [--profile]
 *
 * Environment equivalents: BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_PIPELINING,
 * BENCH_ROUNDS, BENCH_LOG_LEVEL. `--profile` starts the core with `--cpu-prof` and leaves the
 * .cpuprofile under bench/results/profiles/ (open it in Chrome DevTools or speedscope).
 *
 * Exits 0 when every response was a 200 with the expected body, whether or not the goal is met;
 * exits 1 on any non-2xx, mismatched body, socket error or timeout, or when a server fails to start.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type Result } from 'autocannon';
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

const GOAL_RATIO = 0.8;
const ROUTE = '/api/plugins/hello/greeting?name=Ada';
const EXPECTED_BODY = '{"greeting":"HELLO, ADA"}';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Target = 'bare' | 'full';

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
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:http -- [--duration s] [--warmup s] [--connections n] [--pipelining n] [--rounds n] [--log-level level] [--only bare|full] [--profile]\n',
    );
    process.exit(0);
  }
  const logLevel = values['log-level'] ?? process.env.BENCH_LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const only = values.only as Target | undefined;
  if (only !== undefined && only !== 'bare' && only !== 'full') throw new Error('--only must be bare or full');
  const options = {
    duration: numberOption(values, 'duration', 'BENCH_DURATION', 10),
    warmup: numberOption(values, 'warmup', 'BENCH_WARMUP', 3),
    connections: Math.max(1, Math.round(numberOption(values, 'connections', 'BENCH_CONNECTIONS', 10))),
    pipelining: Math.max(1, Math.round(numberOption(values, 'pipelining', 'BENCH_PIPELINING', 1))),
    rounds: Math.max(1, Math.round(numberOption(values, 'rounds', 'BENCH_ROUNDS', 2))),
    logLevel,
    targets: (only ? [only] : ['bare', 'full']) as Target[],
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
async function checkOnce(url: string, headers: Record<string, string>, label: string): Promise<void> {
  const res = await fetch(url, { headers });
  const body = await res.text();
  if (res.status !== 200 || body !== EXPECTED_BODY) {
    throw new Error(`${label}: GET ${url} answered ${res.status} ${body} (expected 200 ${EXPECTED_BODY})`);
  }
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

async function load(url: string, headers: Record<string, string>, options: Options, seconds: number): Promise<Result> {
  return autocannon({
    url,
    headers,
    connections: options.connections,
    pipelining: options.pipelining,
    duration: seconds,
    expectBody: EXPECTED_BODY,
  });
}

async function measure(
  target: Target,
  round: number,
  server: NodeChild,
  url: string,
  headers: Record<string, string>,
  options: Options,
): Promise<RunSummary> {
  if (options.warmup > 0) {
    const warm = await load(url, headers, options, options.warmup);
    const bad = problems(warm);
    if (bad) throw new Error(`${target} warm-up: ${bad}`);
  }
  const systemBefore = systemBusySeconds();
  const serverCpuBefore = processCpuSeconds(server.pid);
  const clientCpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await load(url, headers, options, options.duration);
  const wallSeconds = (performance.now() - wallBefore) / 1000;
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const serverCpuAfter = processCpuSeconds(server.pid);
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

async function main(): Promise<void> {
  const options = parseOptions();
  const dataDir = makeTempDataDir('http');
  const profileDir = path.join(RESULTS_DIR, 'profiles');
  const servers: Partial<Record<Target, { proc: NodeChild; url: string; headers: Record<string, string> }>> = {};
  const started: NodeChild[] = [];
  try {
    // Start both servers before measuring anything, so neither starts while the other is loaded.
    if (options.targets.includes('full')) {
      const port = await freePort();
      const proc = spawnNode(
        'core/src/main.ts',
        // the token outlives any run: it is verified once, then cached
        coreEnv({ port, dataDir, pluginDirs: path.join(REPO_ROOT, 'examples'), logLevel: options.logLevel }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }),
        { nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [] },
      );
      started.push(proc);
      const base = `http://127.0.0.1:${port}`;
      await waitFor200(`${base}/api/v1/health`, proc);
      const token = await login(base);
      const headers = { authorization: `Bearer ${token}` };
      await checkOnce(`${base}${ROUTE}`, headers, 'full stack');
      servers.full = { proc, url: `${base}${ROUTE}`, headers };
    }
    if (options.targets.includes('bare')) {
      const port = await freePort();
      const proc = spawnNode('bench/bare-koa.ts', cleanEnv({ PORT: String(port) }), {
        nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      });
      started.push(proc);
      const url = `http://127.0.0.1:${port}${ROUTE}`;
      await waitFor200(url, proc);
      await checkOnce(url, {}, 'bare Koa');
      servers.bare = { proc, url, headers: {} };
    }

    process.stdout.write(
      `GET ${ROUTE}: ${options.rounds} round(s) of ${options.targets.join(', ')}; ${options.warmup} s warm-up + ${options.duration} s measured each; ` +
        `${options.connections} connections, pipelining ${options.pipelining}; core LOG_LEVEL=${options.logLevel}\n`,
    );
    const runs: RunSummary[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of options.targets) {
        const server = servers[target]!;
        const run = await measure(target, round, server.proc, server.url, server.headers, options);
        runs.push(run);
        process.stdout.write(
          `  round ${round} ${target.padEnd(4)}  ${fmt(run.rps).padStart(7)} req/s  p50 ${run.latencyMs.p50} ms  p99 ${run.latencyMs.p99} ms  ` +
            `server CPU ${run.serverCpuPercent === undefined ? '?' : fmt(run.serverCpuPercent)}% (${run.serverCpuUsPerRequest === undefined ? '?' : fmt(run.serverCpuUsPerRequest, 1)} µs/req)  ` +
            `client CPU ${fmt(run.clientCpuPercent)}%  other processes ${run.otherCpuPercent === undefined ? '?' : fmt(run.otherCpuPercent)}%\n`,
        );
      }
    }

    const bare = options.targets.includes('bare') ? medians(runs.filter((r) => r.target === 'bare')) : undefined;
    const full = options.targets.includes('full') ? medians(runs.filter((r) => r.target === 'full')) : undefined;

    // Added cost per request. At saturation the server's single JavaScript thread is the
    // bottleneck and handles requests one after another, so 1/rps is the server time one request
    // takes (the number of connections sets how many wait in the queue, i.e. the latency by
    // Little's law, not the time each takes). The difference of the two is what the full stack
    // adds to every request. It is only meaningful when both servers ran on the same machine and
    // were CPU-bound (server CPU near 100 %); the CPU µs/request column measures the same
    // thing from the kernel's accounting, including GC and other threads.
    const ratio = bare && full ? full.rps / bare.rps : undefined;
    const addedUs = bare && full ? 1e6 / full.rps - 1e6 / bare.rps : undefined;
    const addedCpuUs =
      bare?.serverCpuUsPerRequest !== undefined && full?.serverCpuUsPerRequest !== undefined
        ? full.serverCpuUsPerRequest - bare.serverCpuUsPerRequest
        : undefined;

    const rows = [['median', ...(bare ? ['bare Koa'] : []), ...(full ? ['full stack'] : [])]];
    const col = (f: (m: NonNullable<typeof bare>) => string) => [...(bare ? [f(bare)] : []), ...(full ? [f(full)] : [])];
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
    process.stdout.write(`\n${table(rows)}\n(autocannon's latency percentiles have a resolution of 1 ms)\n\n`);
    if (ratio !== undefined && addedUs !== undefined) {
      process.stdout.write(`ratio full/bare: ${fmt(ratio, 3)} (goal ≥ ${GOAL_RATIO})\n`);
      process.stdout.write(
        `added per request: ${fmt(addedUs, 1)} µs (1e6/full_rps − 1e6/bare_rps)` +
          (addedCpuUs === undefined ? '\n' : `; ${fmt(addedCpuUs, 1)} µs of server CPU\n`),
      );
      process.stdout.write(ratio >= GOAL_RATIO ? `GOAL MET: full stack keeps ${fmt(ratio * 100, 1)}% of bare Koa throughput\n` : `GOAL NOT MET: full stack keeps ${fmt(ratio * 100, 1)}% of bare Koa throughput (needs ≥ ${GOAL_RATIO * 100}%)\n`);
    }
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
      route: `GET ${ROUTE}`,
      machine: machine(),
      options,
      runs,
      median: { bare, full },
      ratio,
      addedMicrosecondsPerRequest: addedUs,
      addedServerCpuMicrosecondsPerRequest: addedCpuUs,
      goal: { ratio: GOAL_RATIO, met: ratio === undefined ? undefined : ratio >= GOAL_RATIO },
    });
    process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
  } finally {
    for (const proc of started) await stopGracefully(proc);
    if (options.profile) process.stdout.write(`CPU profiles: ${path.relative(REPO_ROOT, profileDir)}/\n`);
    removeDir(dataDir);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:http failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
