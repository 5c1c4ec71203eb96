/**
 * `npm run bench:stream`: the event stream's fan-out to WebSocket subscribers.
 *
 * 1. Throughput: events delivered per second to N subscribers (default 100) of one core (in-process
 *    bus, the fixture plugin `streamer` publishing), against a bare `ws` broadcast loop in the same
 *    run (bench/bare-ws.ts: the same message shapes, encoded once and sent to every client with
 *    `ws.send`; and `bare+cork`, the same loop writing each tick's messages to a socket at once, as
 *    the core does). Closed
 *    loop: batches of events, at most `window` batches not yet received by every client, so nobody
 *    falls behind far enough to be cut off. Server CPU per delivered message is read from
 *    /proc/<pid>/stat.
 * 2. Latency: publish → receive at a fixed rate (default 1,000 events/s, i.e. 100,000 deliveries/s
 *    with 100 subscribers), p50/p99/max, core and bare.
 * 3. Across two core processes through Redis: subscribers on process B, the publisher on process A,
 *    same rate. Needs PostgreSQL (the two processes share a database) and Redis: BENCH_DATABASE_URL /
 *    TEST_DATABASE_URL (else postgres://postgres@127.0.0.1:5432/postgres) and BENCH_REDIS_URL /
 *    TEST_REDIS_URL (else redis://127.0.0.1:6379); skipped when either does not answer.
 *
 *   npm run bench:stream -- [--subscribers 100] [--events 20000] [--batch 250] [--window 2]
 *                           [--pad 100] [--rate 1000] [--seconds 5] [--rounds 2] [--skip-redis] [--profile]
 *
 * `--profile` starts the one-process core with `--cpu-prof` (bench/results/profiles/; summarise with
 * bench/profile-summary.ts).
 *
 * Publisher and subscribers share this machine: with few cores the clients (this process) compete
 * with the server for CPU, which caps both targets alike; the server CPU per message is the
 * figure that does not depend on that. Writes bench/results/stream-<date>.json.
 */
import { reachable } from '../scripts/reachable.mjs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import WebSocket from 'ws';
import { ADMIN_PASSWORD, cleanEnv, coreEnv, fmt, freePort, machine, makeTempDataDir, median, numberOption, percentile, processCpuSeconds, removeDir, REPO_ROOT, spawnNode, stopGracefully, systemBusySeconds, table, type NodeChild, waitFor200, writeResult } from './lib.js';

const GOAL_RATIO = 0.6;
const GOAL_P99_ONE_MS = 50;
const GOAL_P99_REDIS_MS = 250;
const PLUGIN_DIR = path.join(REPO_ROOT, 'core/test/fixtures/stream-plugin');

function parseOptions() {
  const { values } = parseArgs({
    options: {
      subscribers: { type: 'string' },
      events: { type: 'string' },
      batch: { type: 'string' },
      window: { type: 'string' },
      pad: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      'skip-redis': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:stream -- [--subscribers n] [--events n] [--batch n] [--window n] [--pad bytes] [--rate events/s] [--seconds s] [--rounds n] [--skip-redis] [--profile]\n',
    );
    process.exit(0);
  }
  const int = (flag: string, env: string, fallback: number, min = 1) => Math.max(min, Math.round(numberOption(values, flag, env, fallback)));
  return {
    subscribers: int('subscribers', 'BENCH_SUBSCRIBERS', 100),
    events: int('events', 'BENCH_EVENTS', 20_000),
    batch: int('batch', 'BENCH_BATCH', 250),
    window: int('window', 'BENCH_WINDOW', 2),
    pad: int('pad', 'BENCH_PAD', 100, 0),
    rate: int('rate', 'BENCH_RATE', 1000),
    seconds: numberOption(values, 'seconds', 'BENCH_SECONDS', 5),
    rounds: int('rounds', 'BENCH_ROUNDS', 2),
    skipRedis: values['skip-redis'],
    profile: values.profile,
  };
}
type Options = ReturnType<typeof parseOptions>;

// ---------------------------------------------------------------------------------------------
// Subscribers: lean clients that read `seq` and the payload's `t` without parsing the whole JSON
// (the same cost for both targets, which send identically shaped messages).

const SEQ = Buffer.from('"seq":');
const T = Buffer.from('"t":');
const now = () => performance.timeOrigin + performance.now();

function readNumber(data: Buffer, key: Buffer): number {
  const at = data.indexOf(key);
  if (at < 0) return NaN;
  let end = at + key.length;
  while (end < data.length && data[end] !== 0x2c && data[end] !== 0x7d) end++;
  return Number(data.toString('latin1', at + key.length, end));
}

class Fleet {
  readonly sockets: WebSocket[] = [];
  readonly counts: number[] = [];
  private readonly lastSeq: number[] = [];
  outOfOrder = 0;
  closedEarly: string[] = [];
  latencies: number[] | undefined;
  private target = Infinity;
  private reached = 0;
  private wake: (() => void) | undefined;

  add(ws: WebSocket): void {
    const k = this.sockets.length;
    this.sockets.push(ws);
    this.counts.push(0);
    this.lastSeq.push(-1);
    ws.on('message', (data: Buffer) => {
      if (data[2] === 0x6f /* {"op" */) return;
      const seq = readNumber(data, SEQ);
      if (this.lastSeq[k]! >= 0 && seq !== this.lastSeq[k]! + 1) this.outOfOrder++;
      this.lastSeq[k] = seq;
      if (this.latencies) this.latencies.push(now() - readNumber(data, T));
      if (++this.counts[k]! === this.target && ++this.reached === this.sockets.length) this.wake?.();
    });
    ws.once('close', (code, reason) => {
      this.closedEarly.push(`${code} ${reason.toString()}`);
      this.wake?.();
    });
  }

  /** Resolve when every client has received `n` messages since the counters were reset. */
  until(n: number, timeoutMs = 120_000): Promise<void> {
    this.target = n;
    this.reached = this.counts.filter((c) => c >= n).length;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.closedEarly.length > 0) {
          clearTimeout(timer);
          reject(new Error(`a subscriber was disconnected: ${this.closedEarly[0]}`));
        } else if (this.reached === this.sockets.length) {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        }
      };
      const timer = setTimeout(() => reject(new Error(`timed out: ${this.reached}/${this.sockets.length} subscribers got ${n} messages (min ${Math.min(...this.counts)})`)), timeoutMs);
      this.wake = check;
      check();
    });
  }

  reset(): void {
    this.counts.fill(0);
    this.outOfOrder = 0;
  }

  close(): void {
    for (const ws of this.sockets) {
      ws.removeAllListeners('close');
      ws.terminate();
    }
  }
}

function openSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Targets

interface Target {
  name: 'bare' | 'bare+cork' | 'core' | 'redis';
  /** Publishes (the process whose CPU counts). */
  proc: NodeChild;
  publish(body: { count: number; rate?: number; pad?: number }): Promise<void>;
  fleet: Fleet;
}

async function post(url: string, body: unknown, token?: string): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

async function startCore(env: Record<string, string>, label: string, nodeArgs: string[] = []): Promise<{ proc: NodeChild; base: string; token: string; dataDir: string }> {
  const port = await freePort();
  const dataDir = makeTempDataDir(`stream-${label}`);
  const proc = spawnNode(
    'core/src/main.ts',
    coreEnv({ port, dataDir, pluginDirs: PLUGIN_DIR, logLevel: 'info' }, { AIPLAT_ACCESS_TOKEN_TTL: '86400', ...env }),
    { nodeArgs },
  );
  const base = `http://127.0.0.1:${port}`;
  await waitFor200(`${base}/api/v1/health`, proc);
  const { accessToken } = await post(`${base}/api/v1/auth/login`, { username: 'admin', password: ADMIN_PASSWORD });
  return { proc, base, token: accessToken as string, dataDir };
}

/** Subscribers of a core: a ticket each, then subscribe and wait for the acknowledgement. */
async function coreFleet(base: string, token: string, topic: string, n: number): Promise<Fleet> {
  const fleet = new Fleet();
  for (let k = 0; k < n; k++) {
    const { ticket } = await post(`${base}/api/v1/stream/ticket`, undefined, token);
    const ws = await openSocket(`${base.replace('http', 'ws')}/api/v1/stream?ticket=${ticket}`);
    const acked = new Promise<void>((resolve) => {
      const onMessage = (data: Buffer) => {
        if (data.toString().includes('"op":"subscribed"')) {
          ws.off('message', onMessage);
          resolve();
        }
      };
      ws.on('message', onMessage);
    });
    ws.send(JSON.stringify({ op: 'subscribe', topic }));
    await acked;
    fleet.add(ws);
  }
  return fleet;
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Throughput {
  target: string;
  round: number;
  events: number;
  deliveries: number;
  seconds: number;
  deliveriesPerSecond: number;
  serverCpuPercent?: number;
  serverCpuUsPerDelivery?: number;
  clientCpuPercent: number;
  otherCpuPercent?: number;
  outOfOrder: number;
}

async function throughput(target: Target, round: number, options: Options, events = options.events): Promise<Throughput> {
  const { fleet } = target;
  fleet.reset();
  const batches = Math.ceil(events / options.batch);
  const total = batches * options.batch;
  const system0 = systemBusySeconds();
  const cpu0 = processCpuSeconds(target.proc.pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    if (b >= options.window) await fleet.until((b - options.window + 1) * options.batch);
    await target.publish({ count: options.batch, pad: options.pad });
  }
  await fleet.until(total);
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = processCpuSeconds(target.proc.pid);
  const client = process.cpuUsage(client0);
  const system1 = systemBusySeconds();
  const deliveries = total * fleet.sockets.length;
  const serverCpu = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined;
  const clientCpu = (client.user + client.system) / 1e6;
  return {
    target: target.name,
    round,
    events: total,
    deliveries,
    seconds,
    deliveriesPerSecond: deliveries / seconds,
    serverCpuPercent: serverCpu === undefined ? undefined : (serverCpu / seconds) * 100,
    serverCpuUsPerDelivery: serverCpu === undefined ? undefined : (serverCpu / deliveries) * 1e6,
    clientCpuPercent: (clientCpu / seconds) * 100,
    otherCpuPercent:
      system0 !== undefined && system1 !== undefined && serverCpu !== undefined ? (Math.max(0, system1 - system0 - serverCpu - clientCpu) / seconds) * 100 : undefined,
    outOfOrder: fleet.outOfOrder,
  };
}

interface Latency {
  target: string;
  rate: number;
  seconds: number;
  deliveries: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  serverCpuPercent?: number;
}


async function latency(target: Target, options: Options): Promise<Latency> {
  const { fleet } = target;
  fleet.reset();
  const count = Math.round(options.rate * options.seconds);
  fleet.latencies = [];
  const cpu0 = processCpuSeconds(target.proc.pid);
  const t0 = performance.now();
  await target.publish({ count, rate: options.rate, pad: options.pad });
  await fleet.until(count);
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = processCpuSeconds(target.proc.pid);
  const sorted = Float64Array.from(fleet.latencies).sort();
  fleet.latencies = undefined;
  return {
    target: target.name,
    rate: options.rate,
    seconds,
    deliveries: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1]!,
    serverCpuPercent: cpu0 !== undefined && cpu1 !== undefined ? ((cpu1 - cpu0) / seconds) * 100 : undefined,
  };
}


// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseOptions();
  const started: NodeChild[] = [];
  const dirs: string[] = [];
  const fleets: Fleet[] = [];
  let dropDatabase: (() => Promise<void>) | undefined;
  try {
    // bare ws loop
    const barePort = await freePort();
    const bareProc = spawnNode('bench/bare-ws.ts', cleanEnv({ PORT: String(barePort) }));
    started.push(bareProc);
    const bareBase = `http://127.0.0.1:${barePort}`;
    await waitFor200(`${bareBase}/health`, bareProc);
    const bareFleet = new Fleet();
    for (let k = 0; k < options.subscribers; k++) bareFleet.add(await openSocket(`ws://127.0.0.1:${barePort}/`));
    fleets.push(bareFleet);
    const bare: Target = { name: 'bare', proc: bareProc, fleet: bareFleet, publish: (body) => post(`${bareBase}/publish`, body) };
    const bareCork: Target = { name: 'bare+cork', proc: bareProc, fleet: bareFleet, publish: (body) => post(`${bareBase}/publish`, { ...body, cork: true }) };

    // the core, in-process bus
    const one = await startCore({}, 'one', options.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(REPO_ROOT, 'bench/results/profiles')}`] : []);
    started.push(one.proc);
    dirs.push(one.dataDir);
    const topic = `bench/${randomBytes(3).toString('hex')}`;
    const coreFleetOne = await coreFleet(one.base, one.token, `streamer.${topic}`, options.subscribers);
    fleets.push(coreFleetOne);
    const core: Target = {
      name: 'core',
      proc: one.proc,
      fleet: coreFleetOne,
      publish: (body) => post(`${one.base}/api/plugins/streamer/publish`, { topic, ...body }, one.token),
    };

    process.stdout.write(
      `${options.subscribers} subscribers; throughput: ${options.rounds} round(s) of ${fmt(options.events)} events in batches of ${options.batch} (window ${options.window}), payload pad ${options.pad} B; ` +
        `latency: ${fmt(options.rate)} events/s for ${options.seconds} s\n`,
    );
    // warm-up (JIT, buffers), not recorded
    await throughput(bare, 0, options, Math.min(options.events, 5000));
    await throughput(bareCork, 0, options, Math.min(options.events, 5000));
    await throughput(core, 0, options, Math.min(options.events, 5000));

    const runs: Throughput[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of [bare, bareCork, core]) {
        const run = await throughput(target, round, options);
        runs.push(run);
        process.stdout.write(
          `  round ${round} ${target.name.padEnd(9)}  ${fmt(run.deliveriesPerSecond).padStart(9)} deliveries/s  server CPU ${run.serverCpuPercent === undefined ? '?' : fmt(run.serverCpuPercent)}% ` +
            `(${run.serverCpuUsPerDelivery === undefined ? '?' : fmt(run.serverCpuUsPerDelivery, 2)} µs/delivery)  client CPU ${fmt(run.clientCpuPercent)}%  other ${run.otherCpuPercent === undefined ? '?' : fmt(run.otherCpuPercent)}%` +
            `${run.outOfOrder ? `  OUT OF ORDER: ${run.outOfOrder}` : ''}\n`,
        );
      }
    }
    const latencies: Latency[] = [];
    for (const target of [bare, bareCork, core]) {
      const run = await latency(target, options);
      latencies.push(run);
      process.stdout.write(`  latency ${target.name.padEnd(9)} p50 ${fmt(run.p50Ms, 1)} ms  p99 ${fmt(run.p99Ms, 1)} ms  max ${fmt(run.maxMs, 1)} ms  (${fmt(run.deliveries)} deliveries)\n`);
    }

    // two core processes through Redis
    let redisRun: Latency | undefined;
    let redisThroughput: Throughput | undefined;
    let redisSkipped: string | undefined;
    const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
    const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    if (options.skipRedis) redisSkipped = '--skip-redis';
    else if (!(await reachable(databaseUrl, 5432))) redisSkipped = `no PostgreSQL at ${new URL(databaseUrl).host}`;
    else if (!(await reachable(redisUrl, 6379))) redisSkipped = `no Redis at ${new URL(redisUrl).host}`;
    if (!redisSkipped) {
      const name = `aiplat_bench_${randomBytes(4).toString('hex')}`;
      const admin = new pg.Client({ connectionString: databaseUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      dropDatabase = async () => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await client.end();
      };
      const url = new URL(databaseUrl);
      url.pathname = `/${name}`;
      const shared = { DATABASE_URL: url.toString(), REDIS_URL: redisUrl };
      const a = await startCore(shared, 'a');
      started.push(a.proc);
      dirs.push(a.dataDir);
      const b = await startCore(shared, 'b');
      started.push(b.proc);
      dirs.push(b.dataDir);
      const redisTopic = `bench/${randomBytes(3).toString('hex')}`;
      const fleet = await coreFleet(b.base, b.token, `streamer.${redisTopic}`, options.subscribers);
      fleets.push(fleet);
      const redis: Target = {
        name: 'redis',
        proc: b.proc,
        fleet,
        publish: (body) => post(`${a.base}/api/plugins/streamer/publish`, { topic: redisTopic, ...body }, a.token),
      };
      await throughput(redis, 0, options, Math.min(options.events, 5000));
      redisRun = await latency(redis, options);
      process.stdout.write(
        `  latency redis     p50 ${fmt(redisRun.p50Ms, 1)} ms  p99 ${fmt(redisRun.p99Ms, 1)} ms  max ${fmt(redisRun.maxMs, 1)} ms  (published on process A, ${options.subscribers} subscribers on process B)\n`,
      );
      redisThroughput = await throughput(redis, 1, options);
      process.stdout.write(
        `  throughput redis  ${fmt(redisThroughput.deliveriesPerSecond)} deliveries/s  (process B's CPU ${fmt(redisThroughput.serverCpuUsPerDelivery ?? NaN, 2)} µs/delivery)\n`,
      );
    } else {
      process.stdout.write(`  two processes through Redis: skipped (${redisSkipped})\n`);
    }

    const pick = (name: string, f: (r: Throughput) => number | undefined) => {
      const values = runs.filter((r) => r.target === name).map(f).filter((v): v is number => v !== undefined);
      return values.length > 0 ? median(values) : undefined;
    };
    const bareRate = pick('bare', (r) => r.deliveriesPerSecond)!;
    const corkRate = pick('bare+cork', (r) => r.deliveriesPerSecond)!;
    const coreRate = pick('core', (r) => r.deliveriesPerSecond)!;
    const bareCpu = pick('bare', (r) => r.serverCpuUsPerDelivery);
    const corkCpu = pick('bare+cork', (r) => r.serverCpuUsPerDelivery);
    const coreCpu = pick('core', (r) => r.serverCpuUsPerDelivery);
    const ratio = coreRate / bareRate;
    const ratioCork = coreRate / corkRate;
    const cpuRatio = bareCpu !== undefined && coreCpu !== undefined ? bareCpu / coreCpu : undefined;
    const cpuRatioCork = corkCpu !== undefined && coreCpu !== undefined ? corkCpu / coreCpu : undefined;
    const lat = (name: string) => latencies.find((l) => l.target === name)!;
    const latCore = lat('core');
    const dash = '—';
    const cols = ['bare', 'bare+cork', 'core'];
    const row = (label: string, f: (name: string) => string, redis: string) => [label, ...cols.map(f), redis];
    const cpuCell = (v: number | undefined) => (v === undefined ? '?' : fmt(v, 2));
    const rows = [
      ['median', 'bare ws loop', 'bare ws loop + cork', 'core, one process', 'core, two processes + Redis'],
      row('deliveries/s', (n) => fmt(pick(n, (r) => r.deliveriesPerSecond)!), redisThroughput ? fmt(redisThroughput.deliveriesPerSecond) : dash),
      row('events/s (× subscribers = deliveries)', (n) => fmt(pick(n, (r) => r.deliveriesPerSecond)! / options.subscribers), redisThroughput ? fmt(redisThroughput.deliveriesPerSecond / options.subscribers) : dash),
      row('server CPU per delivery (µs)', (n) => cpuCell(pick(n, (r) => r.serverCpuUsPerDelivery)), redisThroughput?.serverCpuUsPerDelivery === undefined ? dash : fmt(redisThroughput.serverCpuUsPerDelivery, 2)),
      row('server CPU (% of a core)', (n) => fmt(pick(n, (r) => r.serverCpuPercent) ?? NaN), redisThroughput?.serverCpuPercent === undefined ? dash : fmt(redisThroughput.serverCpuPercent)),
      row('client CPU (% of a core)', (n) => fmt(pick(n, (r) => r.clientCpuPercent) ?? NaN), redisThroughput ? fmt(redisThroughput.clientCpuPercent) : dash),
      row(`latency p50 at ${fmt(options.rate)} ev/s (ms)`, (n) => fmt(lat(n).p50Ms, 1), redisRun ? fmt(redisRun.p50Ms, 1) : dash),
      row(`latency p99 at ${fmt(options.rate)} ev/s (ms)`, (n) => fmt(lat(n).p99Ms, 1), redisRun ? fmt(redisRun.p99Ms, 1) : dash),
      row('latency max (ms)', (n) => fmt(lat(n).maxMs, 1), redisRun ? fmt(redisRun.maxMs, 1) : dash),
    ];
    process.stdout.write(`\n${table(rows)}\n\n`);
    const outOfOrder = [...runs, ...(redisThroughput ? [redisThroughput] : [])].reduce((n, r) => n + r.outOfOrder, 0);
    const goals = {
      ratio: { goal: GOAL_RATIO, value: ratio, met: ratio >= GOAL_RATIO },
      p99OneProcessMs: { goal: GOAL_P99_ONE_MS, value: latCore.p99Ms, met: latCore.p99Ms <= GOAL_P99_ONE_MS },
      p99RedisMs: redisRun ? { goal: GOAL_P99_REDIS_MS, value: redisRun.p99Ms, met: redisRun.p99Ms <= GOAL_P99_REDIS_MS } : undefined,
    };
    process.stdout.write(`ratio core/bare deliveries/s: ${fmt(ratio, 3)} (goal ≥ ${GOAL_RATIO}) ${goals.ratio.met ? 'MET' : 'NOT MET'}\n`);
    process.stdout.write(`ratio core/(bare+cork) deliveries/s: ${fmt(ratioCork, 3)} (the bare loop with the core's write coalescing)\n`);
    if (cpuRatio !== undefined && cpuRatioCork !== undefined) {
      process.stdout.write(`server CPU per delivery, bare/core: ${fmt(cpuRatio, 3)}; (bare+cork)/core: ${fmt(cpuRatioCork, 3)} (above 1: the core spends less per message)\n`);
    }
    process.stdout.write(`p99 one process: ${fmt(latCore.p99Ms, 1)} ms (goal ≤ ${GOAL_P99_ONE_MS}) ${goals.p99OneProcessMs.met ? 'MET' : 'NOT MET'}\n`);
    if (goals.p99RedisMs) process.stdout.write(`p99 two processes through Redis: ${fmt(goals.p99RedisMs.value, 1)} ms (goal ≤ ${GOAL_P99_REDIS_MS}) ${goals.p99RedisMs.met ? 'MET' : 'NOT MET'}\n`);
    if (outOfOrder > 0) process.stdout.write(`ERROR: ${outOfOrder} messages arrived out of order\n`);
    const maxClient = Math.max(...runs.map((r) => r.clientCpuPercent));
    if (maxClient > 85) {
      process.stdout.write(`note: the subscribers (this process) used up to ${fmt(maxClient)}% of a core: on this machine they may be what limits the rate of both targets.\n`);
    }
    const file = writeResult('stream', {
      benchmark: 'stream',
      date: new Date().toISOString(),
      machine: machine(),
      options,
      throughput: runs,
      median: {
        bare: { deliveriesPerSecond: bareRate, serverCpuUsPerDelivery: bareCpu },
        bareCork: { deliveriesPerSecond: corkRate, serverCpuUsPerDelivery: corkCpu },
        core: { deliveriesPerSecond: coreRate, serverCpuUsPerDelivery: coreCpu },
      },
      ratio,
      ratioCork,
      cpuRatio,
      cpuRatioCork,
      latency: latencies,
      redis: redisRun ? { latency: redisRun, throughput: redisThroughput } : { skipped: redisSkipped },
      goals,
      outOfOrder,
    });
    process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
    if (outOfOrder > 0) process.exitCode = 1;
  } finally {
    for (const fleet of fleets) fleet.close();
    for (const proc of started.reverse()) await stopGracefully(proc);
    await dropDatabase?.().catch(() => undefined);
    for (const dir of dirs) removeDir(dir);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:stream failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
