/**
 * `npm run bench:scheduler`: how fast the scheduler places work, and how soon a submitted job runs.
 *
 * a) Placement decisions per second. A fresh PostgreSQL database (migrated), 100 simulated nodes
 *    × 8 V100S (800 cards, registered through the simulated provider's real discover() and
 *    syncNodes), 10,000 pending jobs inserted directly with SQL (with their workload_replicas
 *    rows): mostly memory slices, some whole cards, a few gangs of 2 to 4 replicas, a mix that
 *    all fits at once. A Scheduler (postgres, binpack) is started and timed until the queue is
 *    empty (its passes idle and no workload pending). The time includes taking the leader lock,
 *    loading the queue and the cluster, placing, and committing every reservation through the
 *    ledger's exclusion constraint, plus one empty pass after (start() asks for two).
 *    Baseline, in the same run on the same database: a bare claim loop over a 10,000-row table,
 *    one transaction per claim (SELECT … ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1,
 *    then UPDATE … SET state = 'claimed'), on one raw pg connection. Goal: decisions/s ≥ 0.5 ×
 *    claims/s. Each is measured `--rounds` times (default 3), alternating, and the median reported.
 *
 * b) Submit → running latency: a real core in this process (startTestCore: HTTP, auth, the
 *    scheduler, the agent, the local executor) on the embedded database and on PostgreSQL, with
 *    2 simulated nodes; 100 jobs of `/bin/true` asking for one card, submitted one at a time over
 *    HTTP (each waits until it runs before the next; 5 more before them as a warm-up). Latency is
 *    the `running` event's time minus the request's start (client), and minus the `pending`
 *    event's time (both from the database's clock). Goal: p99 ≤ 1 s. (A job whose end is recorded
 *    before its start has no `running` event: its end's time counts, and it is reported.)
 *
 *   npm run bench:scheduler -- [--rounds 3] [--workloads 10000] [--submits 100] [--only placement|latency]
 *
 * PostgreSQL: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres (a server the
 * bench may create databases on; they are dropped afterwards). Redis is not used.
 */
import { parseArgs } from 'node:util';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import pino from 'pino';
import { workloadHooks, type EventBus, type Executor, type Logger } from '@aiplat/plugin-sdk';
import { createTestDatabase, startTestCore, type TestCore } from '@aiplat/testing';
import { migrateCore } from '../core/src/db/migrations.js';
import { KernelHooks } from '../core/src/kernel/hooks.js';
import { simulatedProvider } from '../core/src/scheduler/devices/simulated.js';
import { syncNodes } from '../core/src/scheduler/ledger.js';
import { Scheduler } from '../core/src/scheduler/scheduler.js';
import { fmt, machine, median, percentile, table, writeResult } from './lib.js';

process.env.TEST_DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
// The latency cores run without Redis (startTestCore would take TEST_REDIS_URL on PostgreSQL).
delete process.env.TEST_REDIS_URL;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    workloads: { type: 'string', default: '10000' },
    submits: { type: 'string', default: '100' },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write('usage: npm run bench:scheduler -- [--rounds 3] [--workloads 10000] [--submits 100] [--only placement|latency]\n');
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const WORKLOADS = Number(values.workloads);
const SUBMITS = Number(values.submits);
const WARMUP_SUBMITS = 5;
const NODES = 100;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** mulberry32: the same mix every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// -------------------------------------------------------------------------------------------------
// a) placement decisions per second

interface MixItem {
  gpus: number;
  gpuMemoryMiB: number | null;
  replicas: number;
  priority: 'low' | 'normal' | 'high';
}

/**
 * 10,000 jobs that fit at once on 800 cards of 32,510 MiB: 97.4 % memory slices (256 to 2,048
 * MiB), 2 % whole cards (1, 2 or 4), 0.6 % gangs of 2 to 4 replicas (one card, or a 2,048 MiB
 * slice, each). About 700 cards' worth in all.
 */
function mix(count: number): MixItem[] {
  const random = rng(20261126);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const items: MixItem[] = [];
  for (let i = 0; i < count; i++) {
    const p = random();
    const priority = p < 0.2 ? 'low' : p < 0.9 ? 'normal' : 'high';
    const r = random();
    if (r < 0.974) items.push({ gpus: 0, gpuMemoryMiB: pick([256, 512, 1024, 2048]), replicas: 1, priority });
    else if (r < 0.994) items.push({ gpus: pick([1, 1, 1, 1, 1, 2, 2, 4]), gpuMemoryMiB: null, replicas: 1, priority });
    else items.push(random() < 0.5 ? { gpus: 1, gpuMemoryMiB: null, replicas: 2 + Math.floor(random() * 3), priority } : { gpus: 0, gpuMemoryMiB: 2048, replicas: 2 + Math.floor(random() * 3), priority });
  }
  return items;
}

const PRIORITY_VALUE = { low: 0, normal: 100, high: 1000 } as const;

/** Empty the queue and the ledger, and insert the mix as pending jobs (ids fresh per round). */
async function loadQueue(db: Knex, items: MixItem[], round: number): Promise<void> {
  await db.raw('truncate workloads, workload_replicas, gpu_reservations, workload_events, workload_logs, workload_metrics');
  const workloads: Record<string, unknown>[] = [];
  const replicas: Record<string, unknown>[] = [];
  items.forEach((item, n) => {
    const id = `wbench${round}x${String(n).padStart(5, '0')}`;
    const resources = item.gpuMemoryMiB ? { gpuMemoryMiB: item.gpuMemoryMiB } : { gpus: item.gpus };
    const spec = { name: `bench-${n}`, kind: 'job', command: ['/bin/true'], resources, replicas: item.replicas, priority: item.priority, retries: 0, team: 'default' };
    workloads.push({
      id,
      name: spec.name,
      kind: 'job',
      team_id: 'default',
      user_id: null,
      owner: 'bench',
      executor: 'local',
      priority: item.priority,
      priority_value: PRIORITY_VALUE[item.priority],
      state: 'pending',
      reason: 'waiting for the scheduler',
      spec: JSON.stringify(spec),
      replicas: item.replicas,
      gpus: item.gpuMemoryMiB ? 0 : item.gpus,
      gpu_memory_mib: item.gpuMemoryMiB,
      retries: 0,
    });
    for (let r = 0; r < item.replicas; r++) replicas.push({ workload_id: id, replica: r, epoch: 0, state: 'pending' });
  });
  await db.transaction(async (trx) => {
    for (let i = 0; i < workloads.length; i += 1000) await trx('workloads').insert(workloads.slice(i, i + 1000));
    for (let i = 0; i < replicas.length; i += 2000) await trx('workload_replicas').insert(replicas.slice(i, i + 2000));
  });
  await db.raw('vacuum analyze workloads, workload_replicas, gpu_reservations');
}

const silent = pino({ level: 'warn' }) as unknown as Logger;
const noEvents: EventBus = {
  publish: async () => 0,
  subscribe: () => ({ unsubscribe() {} }),
};

async function placementRound(db: Knex, items: MixItem[], round: number): Promise<{ seconds: number; decisions: number; reservations: number; placed: number }> {
  await loadQueue(db, items, round);
  const hooks = new KernelHooks(() => true);
  hooks.declareHook(workloadHooks.beforeSubmit, 'core');
  hooks.declareHook(workloadHooks.stateChanged, 'core');
  const scheduler = new Scheduler({
    db,
    kind: 'postgres',
    events: noEvents,
    hooks,
    logger: silent,
    executors: () => [{ name: 'local' } as Executor],
    strategy: 'binpack',
    preemption: false,
    timeZone: 'UTC',
    onChanges: async () => {},
    canInTeam: () => true,
    teamExists: () => true,
  });
  const pendingNow = async () => Number(((await db('workloads').where({ state: 'pending' }).count('* as n').first()) as { n: string }).n);
  const began = performance.now();
  await scheduler.start();
  for (;;) {
    await scheduler.idle();
    const pending = await pendingNow();
    if (pending === 0) break;
    if (performance.now() - began > 120_000) {
      await scheduler.stop();
      throw new Error(`the queue never emptied: ${pending} still pending after 120 s (does the mix fit?)`);
    }
    await sleep(2);
  }
  const seconds = (performance.now() - began) / 1000;
  await scheduler.stop();
  const reservations = Number(((await db('gpu_reservations').count('* as n').first()) as { n: string }).n);
  const placed = Number(((await db('workloads').where({ state: 'scheduled' }).count('* as n').first()) as { n: string }).n);
  return { seconds, decisions: scheduler.decisions, reservations, placed };
}

async function claimRound(url: string, count: number): Promise<{ seconds: number; claims: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('drop table if exists bench_claims');
    await client.query('create table bench_claims (id bigserial primary key, priority int not null, state text not null)');
    await client.query(`insert into bench_claims (priority, state) select (random() * 1000)::int, 'pending' from generate_series(1, $1)`, [count]);
    await client.query("create index bench_claims_queue on bench_claims (priority desc, id) where state = 'pending'");
    await client.query('vacuum analyze bench_claims');
    let claims = 0;
    const began = performance.now();
    for (;;) {
      await client.query('begin');
      const { rows } = await client.query<{ id: string }>("select id from bench_claims where state = 'pending' order by priority desc, id for update skip locked limit 1");
      if (rows.length === 0) {
        await client.query('commit');
        break;
      }
      await client.query("update bench_claims set state = 'claimed' where id = $1", [rows[0]!.id]);
      await client.query('commit');
      claims++;
    }
    const seconds = (performance.now() - began) / 1000;
    await client.query('drop table bench_claims');
    return { seconds, claims };
  } finally {
    await client.end();
  }
}

async function placementBench() {
  const database = await createTestDatabase();
  const db = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 10 } });
  try {
    await migrateCore(db);
    const nodes = await simulatedProvider({ capture: 'v100s-8', nodes: NODES }).discover();
    await syncNodes(db, 'bench', 'simulated', nodes);
    const cards = nodes.reduce((sum, n) => sum + n.devices.length, 0);
    const items = mix(WORKLOADS);
    const demand = items.reduce((sum, i) => sum + i.replicas * (i.gpuMemoryMiB ? i.gpuMemoryMiB / 32510 : i.gpus), 0);
    if (demand > cards * 0.92) throw new Error(`the mix asks for ${fmt(demand)} cards' worth: too close to the ${cards} there are to fit at once`);
    console.log(
      `placement: ${NODES} simulated nodes, ${cards} cards; ${fmt(WORKLOADS)} pending jobs (${items.filter((i) => i.gpuMemoryMiB && i.replicas === 1).length} slices, ` +
        `${items.filter((i) => !i.gpuMemoryMiB && i.replicas === 1).length} whole-card, ${items.filter((i) => i.replicas > 1).length} gangs; ${fmt(demand)} cards' worth)`,
    );
    const placements: Awaited<ReturnType<typeof placementRound>>[] = [];
    const claims: Awaited<ReturnType<typeof claimRound>>[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const p = await placementRound(db, items, round);
      if (p.placed !== WORKLOADS) throw new Error(`round ${round}: ${p.placed} of ${WORKLOADS} placed`);
      placements.push(p);
      console.log(`  round ${round}: scheduler ${fmt(p.decisions)} decisions in ${fmt(p.seconds, 2)} s (${fmt(p.reservations)} reservations)`);
      const c = await claimRound(database.url, WORKLOADS);
      claims.push(c);
      console.log(`  round ${round}: bare claim loop ${fmt(c.claims)} claims in ${fmt(c.seconds, 2)} s`);
    }
    const decisionsPerSecond = placements.map((p) => p.decisions / p.seconds);
    const claimsPerSecond = claims.map((c) => c.claims / c.seconds);
    return { decisionsPerSecond, claimsPerSecond, ratio: median(decisionsPerSecond) / median(claimsPerSecond), placements, claims };
  } finally {
    await db.destroy();
    await database.drop();
  }
}

// -------------------------------------------------------------------------------------------------
// b) submit → running latency


async function latencyBench(database: 'embedded' | 'postgres') {
  const core: TestCore = await startTestCore({
    database,
    config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'bench-node', stopGrace: 1, redisUrl: undefined },
  });
  try {
    // The core answers before its first device discovery is written.
    for (let i = 0; ; i++) {
      const nodes = await core.client.get('/api/v1/nodes');
      const gpus = (nodes.body.items as { simulated: boolean; gpus: unknown[] }[]).filter((n) => n.simulated).reduce((sum, n) => sum + n.gpus.length, 0);
      if (gpus === 16) break;
      if (i > 200) throw new Error(`the simulated cards never appeared on the ${database} core`);
      await sleep(50);
    }
    const client: number[] = [];
    const dbClock: number[] = [];
    let noRunningEvent = 0;
    for (let n = 0; n < WARMUP_SUBMITS + SUBMITS; n++) {
      const began = Date.now();
      const res = await core.client.post('/api/v1/workloads', { name: `latency-${n}`, command: ['/bin/true'], resources: { gpus: 1 } });
      if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${res.text}`);
      const id = res.body.id as string;
      for (let i = 0; ; i++) {
        const state = (await core.client.get(`/api/v1/workloads/${id}`)).body.state as string;
        if (!['pending', 'scheduled'].includes(state)) break;
        if (i > 3000) throw new Error(`workload ${id} never ran (still ${state})`);
        await sleep(5);
      }
      const events = (await core.client.get(`/api/v1/workloads/${id}/events`)).body.items as { to: string; at: string }[];
      const pending = events.find((e) => e.to === 'pending');
      // A job that ends before its start is recorded goes scheduled → succeeded without a running
      // event: then its end counts (an upper bound of when it ran), and it is counted apart.
      let running = events.find((e) => e.to === 'running');
      if (!running) {
        running = events.find((e) => ['succeeded', 'failed', 'lost', 'cancelled'].includes(e.to));
        if (n >= WARMUP_SUBMITS) noRunningEvent++;
      }
      if (!pending || !running) throw new Error(`workload ${id} has no pending or running event: ${JSON.stringify(events)}`);
      if (n < WARMUP_SUBMITS) continue;
      client.push(Date.parse(running.at) - began);
      dbClock.push(Date.parse(running.at) - Date.parse(pending.at));
    }
    client.sort((a, b) => a - b);
    dbClock.sort((a, b) => a - b);
    const summary = (s: number[]) => ({ p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! });
    return { client: summary(client), db: summary(dbClock), noRunningEvent };
  } finally {
    await core.stop();
  }
}

// -------------------------------------------------------------------------------------------------

const results: Record<string, unknown> = { machine: machine(), rounds: ROUNDS, workloads: WORKLOADS, submits: SUBMITS };
const rows: string[][] = [['measurement', ...Array.from({ length: ROUNDS }, (_, i) => `run ${i + 1}`), 'median', 'goal']];
const latencyRows: string[][] = [['submit → running (ms)', 'p50', 'p99', 'max', 'goal']];

if (values.only !== 'latency') {
  const placement = await placementBench();
  results.placement = placement;
  const blanks = Array.from({ length: ROUNDS }, () => '');
  rows.push(['scheduler: placement decisions/s', ...placement.decisionsPerSecond.map((v) => fmt(v)), fmt(median(placement.decisionsPerSecond)), '']);
  rows.push(['bare claim loop: claims/s', ...placement.claimsPerSecond.map((v) => fmt(v)), fmt(median(placement.claimsPerSecond)), '']);
  rows.push(['ratio (median / median)', ...blanks, `${fmt(placement.ratio, 2)}×`, `≥ 0.50× ${placement.ratio >= 0.5 ? 'met' : 'NOT met'}`]);
}
if (values.only !== 'placement') {
  for (const database of ['embedded', 'postgres'] as const) {
    console.log(`latency: ${WARMUP_SUBMITS} + ${SUBMITS} submits of /bin/true (1 GPU) on the ${database} database`);
    const latency = await latencyBench(database);
    results[`latency_${database}`] = latency;
    latencyRows.push([`${database}: running − request start`, fmt(latency.client.p50), fmt(latency.client.p99), fmt(latency.client.max), `p99 ≤ 1000 ${latency.client.p99 <= 1000 ? 'met' : 'NOT met'}`]);
    latencyRows.push([`${database}: running − pending (DB clock)`, fmt(latency.db.p50), fmt(latency.db.p99), fmt(latency.db.max), `p99 ≤ 1000 ${latency.db.p99 <= 1000 ? 'met' : 'NOT met'}`]);
    if (latency.noRunningEvent > 0) console.log(`  ${database}: ${latency.noRunningEvent} of ${SUBMITS} went scheduled → succeeded with no running event (their end was counted)`);
  }
}

const m = machine();
console.log(`\nscheduler bench on ${m.cpu} (${m.cores} cores), Node ${m.node}\n`);
if (rows.length > 1) console.log(`${table(rows)}\n`);
if (latencyRows.length > 1) console.log(`${table(latencyRows)}\n`);
console.log(`results: ${writeResult('scheduler', results)}`);
