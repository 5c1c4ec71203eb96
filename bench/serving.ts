/**
 * `npm run bench:serving`: what the platform adds to getting a model served, on a real core in its
 * own process (embedded database; the models, serving and serving-cpu plugins) and the real CPU
 * runtime (`transformers serve`, one replica, the tiny chat model the suites use).
 *
 * Deploy overhead: from the API call (POST /deployments) to the deployment being ready (its
 * revision's replica passes the readiness check and the revision takes the traffic, polled every
 * 20 ms) and answering a first chat completion through /v1, against the runtime started alone: the
 * revision's own argv, environment and working folder (read back from its workload) spawned
 * directly, to its readiness path answering 200 and a first chat completion. Alternating rounds in
 * one run. Goal: overhead ≤ 10 s (the seed's bar is 5 minutes end to end).
 *
 *   npm run bench:serving -- [--rounds 3]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_PASSWORD, coreEnv, fmt, freePort, machine, makeTempDataDir, median, probe, REPO_ROOT, removeDir, spawnNode, stopGracefully, table, waitFor200, writeResult } from './lib.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, help: { type: 'boolean', short: 'h', default: false } } });
if (values.help) {
  process.stdout.write('usage: npm run bench:serving -- [--rounds 3]\n');
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const GOAL_S = 10;

const python = execFileSync('sh', [path.join(REPO_ROOT, 'plugins/serving-cpu/setup.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
const dataDir = makeTempDataDir('serving');
const scratch = makeTempDataDir('serving-direct');
const modelDir = path.join(scratch, 'models', 'tiny');
mkdirSync(path.dirname(modelDir), { recursive: true });
execFileSync(python, [path.join(REPO_ROOT, 'plugins/serving/test/fixtures/make_tiny_chat_model.py'), modelDir, '--seed', '1'], { stdio: 'ignore' });

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const plugins = ['models', 'serving', 'serving-cpu'].map((p) => path.join(REPO_ROOT, 'plugins', p)).join(path.delimiter);
const proc = spawnNode('core/src/main.ts', coreEnv({ port, dataDir, pluginDirs: plugins, logLevel: 'warn' }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }));
await waitFor200(`${base}/api/v1/health`, proc, { timeoutMs: 120_000 });
const login = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
const auth = { authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}` };

async function api<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${url}`, { method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chatBody = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 4, temperature: 0 });

await api('PUT', '/api/v1/plugins/models/config', { importRoots: [path.dirname(modelDir)] });
const model = await api('POST', '/api/plugins/models/models', { name: 'bench-tiny-chat' });
const op = await api('POST', `/api/plugins/models/models/${model.id}/versions/import`, { path: modelDir });
let version: string | undefined;
while (!version) {
  const o = await api('GET', `/api/v1/operations/${op.operationId}`);
  if (o.state === 'succeeded') version = o.result.versionId;
  else if (o.state !== 'running' && o.state !== 'pending') throw new Error(`the import ${o.state}: ${JSON.stringify(o.error)}`);
  else await sleep(100);
}

interface Measured {
  /** ms to the readiness answer (direct) or to the deployment being ready with its traffic (aiplat). */
  readyMs: number;
  /** ms to the first chat completion answered. */
  firstAnswerMs: number;
}

/** Through the platform: POST → ready → first answer through /v1; then the deployment is deleted. */
async function viaAiplat(round: number): Promise<Measured & { command: string[]; env: Record<string, string>; workingDir: string }> {
  const t0 = performance.now();
  const created = await api('POST', '/api/plugins/serving/deployments', { name: `bench-${round}`, modelVersion: version, runtime: 'cpu', options: { threads: 1 } });
  let readyMs: number;
  for (;;) {
    const d = await api('GET', `/api/plugins/serving/deployments/${created.id}`);
    if (d.state === 'ready' && d.traffic.length === 1) {
      readyMs = performance.now() - t0;
      break;
    }
    if (d.state === 'failed') throw new Error(`deployment failed: ${d.reason}`);
    await sleep(20);
  }
  const answer = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: chatBody(`bench-${round}`) });
  if (answer.status !== 200) throw new Error(`/v1 answered ${answer.status}: ${await answer.text()}`);
  await answer.text();
  const firstAnswerMs = performance.now() - t0;
  const detail = await api('GET', `/api/plugins/serving/deployments/${created.id}`);
  const workload = await api('GET', `/api/v1/workloads/${detail.revisions[0].workloadId}`);
  await api('DELETE', `/api/plugins/serving/deployments/${created.id}`);
  return { readyMs, firstAnswerMs, command: workload.spec.command, env: workload.spec.env ?? {}, workingDir: workload.spec.workingDir };
}

/** The runtime alone: the revision's argv and environment spawned directly, to its readiness path and a first answer. */
async function direct(launch: { command: string[]; env: Record<string, string>; workingDir: string }): Promise<Measured> {
  const p = await freePort();
  const workingDir = path.join(scratch, `direct-${p}`);
  mkdirSync(workingDir, { recursive: true });
  // The revision folder holds the runtime's caches: give the direct run a folder of its own.
  const command = launch.command.map((a) => (a === launch.workingDir ? workingDir : a.startsWith(`${launch.workingDir}/`) ? path.join(workingDir, a.slice(launch.workingDir.length + 1)) : a));
  const t0 = performance.now();
  const child = spawn(command[0]!, command.slice(1), { cwd: workingDir, env: { ...process.env, ...launch.env, PORT: String(p), PORT_HTTP: String(p) }, stdio: 'ignore', detached: true });
  try {
    let readyMs: number;
    for (;;) {
      if ((await probe(`http://127.0.0.1:${p}/health`, 1000)) === 200) {
        readyMs = performance.now() - t0;
        break;
      }
      if (child.exitCode !== null) throw new Error(`the runtime exited with ${child.exitCode}`);
      if (performance.now() - t0 > 300_000) throw new Error('the runtime was not ready in 300 s');
      await sleep(20);
    }
    // A pinned transformers serve takes a request without "model" (the alias sends its own name for it).
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 4, temperature: 0 });
    const answer = await fetch(`http://127.0.0.1:${p}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (answer.status !== 200) throw new Error(`the runtime answered ${answer.status}: ${await answer.text()}`);
    await answer.text();
    return { readyMs, firstAnswerMs: performance.now() - t0 };
  } finally {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// A warm-up deployment: the first start of torch and transformers reads them from disk.
const warm = await viaAiplat(0);
const rows: { round: number; aiplat: Measured; direct: Measured }[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  // Alternate which goes first.
  if (round % 2 === 1) {
    const d = await direct(warm);
    const a = await viaAiplat(round);
    rows.push({ round, aiplat: a, direct: d });
  } else {
    const a = await viaAiplat(round);
    const d = await direct(warm);
    rows.push({ round, aiplat: a, direct: d });
  }
}
await stopGracefully(proc);

const s = (ms: number) => fmt(ms / 1000, 2);
process.stdout.write(
  table([
    ['round', 'aiplat ready s', 'direct ready s', 'overhead s', 'aiplat 1st answer s', 'direct 1st answer s', 'overhead s'],
    ...rows.map((r) => [String(r.round), s(r.aiplat.readyMs), s(r.direct.readyMs), s(r.aiplat.readyMs - r.direct.readyMs), s(r.aiplat.firstAnswerMs), s(r.direct.firstAnswerMs), s(r.aiplat.firstAnswerMs - r.direct.firstAnswerMs)]),
  ]) + '\n',
);
const overheadReady = median(rows.map((r) => r.aiplat.readyMs - r.direct.readyMs)) / 1000;
const overheadAnswer = median(rows.map((r) => r.aiplat.firstAnswerMs - r.direct.firstAnswerMs)) / 1000;
const file = writeResult('serving', { machine: machine(), rounds: ROUNDS, rows, overheadReadyS: overheadReady, overheadFirstAnswerS: overheadAnswer, goalS: GOAL_S });
process.stdout.write(
  `${overheadAnswer <= GOAL_S ? 'PASS' : 'FAIL'}: deploy overhead (API call → ready and answering, minus the runtime alone) median ${fmt(overheadAnswer, 2)} s (to ready: ${fmt(overheadReady, 2)} s; goal ≤ ${GOAL_S} s)\nresults: ${file}\n`,
);
removeDir(dataDir);
removeDir(scratch);
