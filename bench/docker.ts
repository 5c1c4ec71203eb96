/**
 * `npm run bench:docker`: how soon a workload on the docker executor runs, against the engine's
 * own time to run a container.
 *
 * Ours: a real core in this process (startTestCore on the embedded database: HTTP, auth, the
 * scheduler, the agent, the executor-docker plugin) with one SIMULATED 8× V100S node (a fake
 * nvidia-smi; no GPU is asked of the engine). Each run submits a trivial job over HTTP
 * (`local/busybox:1` running `true`, one card) and waits until it has ended and its container is
 * removed before the next; its latency is the `running` event's time minus the request's start.
 * (A job whose end is recorded before its start has no `running` event: its end counts, reported.)
 *
 * Baselines, interleaved with ours run by run on the same engine:
 *  - `docker run --rm local/busybox:1 true` with the CLI: the whole run (create, start, exit, remove);
 *  - dockerode create + start (the part our `running` waits for), then wait and remove, untimed.
 *
 * Goal: ours p50 ≤ 1.3 × the CLI's `docker run --rm` p50.
 *
 *   npm run bench:docker -- [--runs 30] [--warmup 3]
 *
 * Needs the engine and the image: scripts/provision-docker.sh (run first, quick when all is there).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { startTestCore } from '@aiplat/testing';
import { fmt, machine, percentile, REPO_ROOT, table, writeResult } from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write('usage: npm run bench:docker -- [--runs 30] [--warmup 3]\n');
  process.exit(0);
}
const RUNS = Number(values.runs);
const WARMUP = Number(values.warmup);
const IMAGE = 'local/busybox:1';
const SOCKET = '/var/run/docker.sock';
const GOAL = 1.3;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));


function summary(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]!, n: s.length };
}

// The engine and the image (quick when both are there).
execFileSync('sh', [path.join(REPO_ROOT, 'scripts', 'provision-docker.sh')], { stdio: 'inherit' });
const docker = new Docker({ socketPath: SOCKET });
const engine = (await docker.version()) as { Version: string; ApiVersion: string };

function cliRun(): number {
  const began = performance.now();
  const result = spawnSync('docker', ['run', '--rm', IMAGE, 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - began;
  if (result.status !== 0) throw new Error(`docker run --rm ${IMAGE} true failed: ${result.stderr.toString()}`);
  return ms;
}

async function dockerodeRun(): Promise<number> {
  const began = performance.now();
  const container = await docker.createContainer({ Image: IMAGE, Cmd: ['true'] });
  await container.start();
  const ms = performance.now() - began;
  await container.wait();
  await container.remove();
  return ms;
}

const core = await startTestCore({
  plugins: ['plugins/executor-docker'],
  database: 'embedded',
  config: { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'bench-node', stopGrace: 1, redisUrl: undefined },
});
const ours: number[] = [];
const cli: number[] = [];
const dockerode: number[] = [];
let noRunningEvent = 0;
try {
  // The core answers before its first device discovery is written.
  for (let i = 0; ; i++) {
    const nodes = (await core.client.get('/api/v1/nodes')).body.items as { simulated: boolean; executors: string[]; gpus: unknown[] }[];
    if (nodes.some((n) => n.simulated && n.gpus.length === 8 && n.executors.includes('docker'))) break;
    if (i > 200) throw new Error('the simulated node with the docker executor never appeared');
    await sleep(50);
  }

  async function oursRun(n: number): Promise<number> {
    const began = Date.now();
    const res = await core.client.post('/api/v1/workloads', { name: `docker-latency-${n}`, executor: 'docker', image: IMAGE, command: ['true'], resources: { gpus: 1 } });
    if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${res.text}`);
    const id = res.body.id as string;
    for (let i = 0; ; i++) {
      const w = (await core.client.get(`/api/v1/workloads/${id}`)).body as { state: string; reason: string | null };
      if (w.state === 'succeeded') break;
      if (['failed', 'lost', 'cancelled'].includes(w.state)) throw new Error(`workload ${id} ${w.state}: ${w.reason}`);
      if (i > 3000) throw new Error(`workload ${id} never finished (still ${w.state})`);
      await sleep(5);
    }
    // Quiet engine for the next run: the container is gone (the agent removes it after the end).
    for (let i = 0; (await docker.listContainers({ all: true, filters: { label: [`aiplat.workload=${id}`] } })).length > 0; i++) {
      if (i > 1000) throw new Error(`the container of ${id} was never removed`);
      await sleep(5);
    }
    const events = (await core.client.get(`/api/v1/workloads/${id}/events`)).body.items as { to: string; at: string }[];
    let running = events.find((e) => e.to === 'running');
    if (!running) {
      running = events.find((e) => ['succeeded', 'failed', 'lost', 'cancelled'].includes(e.to));
      if (n >= WARMUP) noRunningEvent++;
    }
    if (!running) throw new Error(`workload ${id} has no running event: ${JSON.stringify(events)}`);
    return Date.parse(running.at) - began;
  }

  console.log(`docker bench: ${WARMUP} + ${RUNS} runs each, interleaved (engine ${engine.Version}, API ${engine.ApiVersion})`);
  for (let n = 0; n < WARMUP + RUNS; n++) {
    const c = cliRun();
    const d = await dockerodeRun();
    const o = await oursRun(n);
    if (n < WARMUP) continue;
    cli.push(c);
    dockerode.push(d);
    ours.push(o);
  }
} finally {
  await core.stop();
}

const oursS = summary(ours);
const cliS = summary(cli);
const dockerodeS = summary(dockerode);
const ratio50 = oursS.p50 / cliS.p50;
const ratio99 = oursS.p99 / cliS.p99;
const rows: string[][] = [
  ['ms', 'p50', 'p99', 'max', 'runs'],
  ['ours: submit → running (docker executor)', fmt(oursS.p50), fmt(oursS.p99), fmt(oursS.max), String(oursS.n)],
  [`plain: docker run --rm ${IMAGE} true (CLI)`, fmt(cliS.p50), fmt(cliS.p99), fmt(cliS.max), String(cliS.n)],
  ['plain: dockerode create + start', fmt(dockerodeS.p50), fmt(dockerodeS.p99), fmt(dockerodeS.max), String(dockerodeS.n)],
];
const m = machine();
console.log(`\ndocker executor bench on ${m.cpu} (${m.cores} cores), Node ${m.node}\n`);
console.log(`${table(rows)}\n`);
console.log(`ratio ours / docker run --rm: p50 ${fmt(ratio50, 2)}×, p99 ${fmt(ratio99, 2)}× (goal p50 ≤ ${GOAL}×: ${ratio50 <= GOAL ? 'met' : 'NOT met'})`);
console.log(`ratio ours / dockerode create + start: p50 ${fmt(oursS.p50 / dockerodeS.p50, 2)}×, p99 ${fmt(oursS.p99 / dockerodeS.p99, 2)}×`);
if (noRunningEvent > 0) console.log(`${noRunningEvent} of ${RUNS} went scheduled → succeeded with no running event (their end was counted)`);
const file = writeResult('docker', {
  machine: m,
  engine,
  runs: RUNS,
  warmup: WARMUP,
  ours: oursS,
  cliDockerRun: cliS,
  dockerodeCreateStart: dockerodeS,
  ratio: { p50: ratio50, p99: ratio99 },
  goal: GOAL,
  noRunningEvent,
});
console.log(`results: ${file}`);
