/**
 * `npm run bench:training`: what the platform costs a training run, on a real core in its own
 * process (embedded database; the datasets, models, lineage and training plugins) and the real
 * Python worker on the CPU.
 *
 * 1. Platform overhead on throughput: the same tiny Llama run (same spec file, same interpreter,
 *    same environment) through aiplat (POST /runs: scheduler, local executor, metric capture into
 *    the database, the plugin following the run) and as the worker script run directly, in
 *    alternating rounds. Throughput is steps per second between the first and the last metric point
 *    (as the core recorded them, and as the bench read them from the worker's stdout), times the
 *    tokens per step; also the worker's own tokens/s (its step timer). Goal: aiplat ≥ 0.95× direct.
 * 2. Submit → first metric point on the local executor: from the POST to the first loss point the
 *    metrics API answers (polled every 20 ms), beside spawn → first metric line of the direct run
 *    (Python, torch and the data loading, which both pay).
 *
 *   npm run bench:training -- [--steps 200] [--rounds 2]
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_PASSWORD, processCpuSeconds, coreEnv, fmt, freePort, machine, makeTempDataDir, median, REPO_ROOT, removeDir, spawnNode, stopGracefully, table, waitFor200, writeResult } from './lib.js';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '200' }, rounds: { type: 'string', default: '2' }, help: { type: 'boolean', short: 'h', default: false } } });
if (values.help) {
  process.stdout.write('usage: npm run bench:training -- [--steps 200] [--rounds 2]\n');
  process.exit(0);
}
const STEPS = Number(values.steps);
const ROUNDS = Number(values.rounds);
const GOAL = 0.95;
const MODEL = { hidden_size: 128, intermediate_size: 344, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 256 };
const HYPER = { learningRate: 0.002, warmupSteps: 5, maxSteps: STEPS, batchSize: 16, sequenceLength: 128, evalSplit: 0.05, evalInterval: 0, checkpointInterval: 0, seed: 3 };
const TOKENS_PER_STEP = HYPER.batchSize * HYPER.sequenceLength;

const python = execFileSync('sh', [path.join(REPO_ROOT, 'plugins/training/runtime/worker/setup.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
const workerDir = path.join(REPO_ROOT, 'plugins/training/runtime/worker');
const dataDir = makeTempDataDir('training');
const scratch = makeTempDataDir('training-direct');
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const plugins = ['datasets', 'models', 'lineage', 'training'].map((p) => path.join(REPO_ROOT, 'plugins', p)).join(path.delimiter);
const proc = spawnNode('core/src/main.ts', coreEnv({ port, dataDir, pluginDirs: plugins, logLevel: 'warn' }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }));
await waitFor200(`${base}/api/v1/health`, proc, { timeoutMs: 120_000 });
const login = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
const auth = { authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}` };

async function api<T = any>(method: string, url: string, body?: unknown, raw?: Buffer): Promise<T> {
  const headers: Record<string, string> = { ...auth };
  if (raw) headers['content-type'] = 'application/octet-stream';
  else if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${url}`, { method, headers, body: raw ?? (body !== undefined ? JSON.stringify(body) : undefined) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

// A text corpus with a learnable pattern, as one dataset version.
const words = 'the cat sat on a mat and the dog ran to the park while birds sang in old green trees'.split(' ');
const corpus = Array.from({ length: 6000 }, (_, i) => Array.from({ length: 16 }, (_, j) => words[(i + j) % words.length]).join(' ')).join('\n') + '\n';
const dataset = await api('POST', '/api/plugins/datasets/datasets', { name: 'bench-corpus', taskType: 'other' });
const commit = (await api('POST', `/api/plugins/datasets/datasets/${dataset.id}/commits`, {})).id;
await api('PUT', `/api/plugins/datasets/commits/${commit}/files/content?path=corpus.txt&sha256=${createHash('sha256').update(corpus).digest('hex')}`, undefined, Buffer.from(corpus));
const datasetVersion = (await api('POST', `/api/plugins/datasets/commits/${commit}/finish`, {})).id as string;
const outputModel = (await api('POST', '/api/plugins/models/models', { name: 'bench-tiny' })).id as string;

interface Measured {
  /** ms from submit (or spawn) to the first loss point. */
  firstMetricMs: number;
  /** Steps per second between the first and the last loss point, times tokens per step. */
  tokensPerS: number;
  /** The worker's own step timer, mean over the steps after the third. */
  workerTokensPerS: number;
  wallS: number;
  /** CPU seconds the core's process spent during the run (aiplat only). */
  coreCpuS?: number;
}

const workerMean = (points: { step: number; value: number }[]) => {
  const later = points.filter((p) => p.step > 3);
  return later.reduce((a, p) => a + p.value, 0) / later.length;
};

async function throughAiplat(round: number): Promise<Measured & { specFile: string }> {
  const cpuBefore = processCpuSeconds(proc.child.pid!) ?? 0;
  const started = performance.now();
  const run = await api('POST', '/api/plugins/training/runs', {
    name: `bench-${round}`,
    template: { type: 'llama', config: MODEL },
    datasetVersion,
    datasetFormat: 'text',
    hyper: HYPER,
    strategy: { id: 'single' },
    resources: { gpusPerNode: 0 },
    output: { model: outputModel },
  });
  let firstMetricMs: number;
  for (;;) {
    const m = await api('GET', `/api/v1/workloads/${run.workloadId}/metrics?name=loss`);
    if (m.series[0]?.points.length) {
      firstMetricMs = performance.now() - started;
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  for (;;) {
    const r = await api('GET', `/api/plugins/training/runs/${run.id}`);
    if (r.state === 'succeeded') break;
    if (r.state === 'failed' || r.state === 'cancelled') throw new Error(`bench run ${r.state}: ${r.reason}`);
    // Seldom: the bench's own requests are CPU the worker would otherwise have.
    await new Promise((res) => setTimeout(res, 1000));
  }
  const wallS = (performance.now() - started) / 1000;
  const coreCpuS = (processCpuSeconds(proc.child.pid!) ?? 0) - cpuBefore;
  const loss = (await api('GET', `/api/v1/workloads/${run.workloadId}/metrics?name=loss`)).series[0].points as { step: number; at: string }[];
  const tps = (await api('GET', `/api/v1/workloads/${run.workloadId}/metrics?name=tokens_per_s`)).series[0].points as { step: number; value: number }[];
  const first = loss[0]!;
  const last = loss.at(-1)!;
  const seconds = (Date.parse(last.at) - Date.parse(first.at)) / 1000;
  return {
    firstMetricMs,
    tokensPerS: ((last.step - first.step) * TOKENS_PER_STEP) / seconds,
    workerTokensPerS: workerMean(tps),
    wallS,
    coreCpuS,
    specFile: path.join(dataDir, 'plugins', 'training', 'runs', run.id, 'spec.json'),
  };
}

/** The same spec, output elsewhere, run as `python train.py --spec` with the core's environment. */
function direct(specFile: string, round: number): Promise<Measured> {
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as Record<string, unknown>;
  const out = path.join(scratch, `direct-${round}`);
  mkdirSync(out, { recursive: true });
  const mine = path.join(scratch, `direct-${round}.json`);
  writeFileSync(mine, JSON.stringify({ ...spec, output: out }));
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(python, ['train.py', '--spec', mine], { cwd: workerDir, env: { ...process.env, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
    let pending = '';
    let firstMetricMs = 0;
    const seen: { step: number; t: number; tps: number | undefined }[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        const parsed = JSON.parse(line) as { type: string; step?: number; loss?: number; tokens_per_s?: number };
        if (parsed.type !== 'metric' || parsed.loss === undefined) continue;
        if (!firstMetricMs) firstMetricMs = performance.now() - started;
        seen.push({ step: parsed.step!, t: performance.now(), tps: parsed.tokens_per_s });
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || seen.length < 2) return reject(new Error(`the direct run exited ${code}`));
      const first = seen[0]!;
      const last = seen.at(-1)!;
      resolve({
        firstMetricMs,
        tokensPerS: ((last.step - first.step) * TOKENS_PER_STEP) / ((last.t - first.t) / 1000),
        workerTokensPerS: workerMean(seen.map((s) => ({ step: s.step, value: s.tps ?? 0 }))),
        wallS: (performance.now() - started) / 1000,
      });
    });
  });
}

const rows: { round: number; aiplat: Measured; direct: Measured }[] = [];
try {
  // A warm-up pair: the first Python start pays for cold file caches.
  const warm = await throughAiplat(0);
  await direct(warm.specFile, 0);
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternate which goes first, so a drift of the machine does not favour one side.
    if (round % 2 === 1) {
      const a = await throughAiplat(round);
      rows.push({ round, aiplat: a, direct: await direct(a.specFile, round) });
    } else {
      // The same spec as the warm-up's (only the run id and output differ).
      const d = await direct(warm.specFile, round);
      rows.push({ round, aiplat: await throughAiplat(round), direct: d });
    }
    const r = rows.at(-1)!;
    process.stdout.write(`round ${round}: aiplat ${fmt(r.aiplat.tokensPerS)} tokens/s, direct ${fmt(r.direct.tokensPerS)} tokens/s\n`);
  }
} finally {
  await stopGracefully(proc);
}

const ratio = median(rows.map((r) => r.aiplat.tokensPerS / r.direct.tokensPerS));
const workerRatio = median(rows.map((r) => r.aiplat.workerTokensPerS / r.direct.workerTokensPerS));
const firstAiplat = median(rows.map((r) => r.aiplat.firstMetricMs));
const firstDirect = median(rows.map((r) => r.direct.firstMetricMs));
process.stdout.write(
  `\n${table([
    ['', 'through aiplat', 'worker direct', 'ratio'],
    ['tokens/s (first → last metric point)', fmt(median(rows.map((r) => r.aiplat.tokensPerS))), fmt(median(rows.map((r) => r.direct.tokensPerS))), `${fmt(ratio, 3)} (goal ≥ ${GOAL})`],
    ["tokens/s (the worker's step timer)", fmt(median(rows.map((r) => r.aiplat.workerTokensPerS))), fmt(median(rows.map((r) => r.direct.workerTokensPerS))), fmt(workerRatio, 3)],
    ['submit → first metric point (ms)', fmt(firstAiplat), fmt(firstDirect), `+${fmt(firstAiplat - firstDirect)} ms`],
    ["the core's CPU time during the run (s)", fmt(median(rows.map((r) => r.aiplat.coreCpuS ?? 0)), 2), '', ''],
    ['wall time of the run (s)', fmt(median(rows.map((r) => r.aiplat.wallS)), 1), fmt(median(rows.map((r) => r.direct.wallS)), 1), ''],
  ])}\n`,
);
const file = writeResult('training', { machine: machine(), steps: STEPS, rounds: ROUNDS, model: MODEL, hyper: HYPER, rows, ratio, workerRatio, firstMetricMs: { aiplat: firstAiplat, direct: firstDirect }, goal: GOAL });
process.stdout.write(`${ratio >= GOAL ? 'PASS' : 'FAIL'}: aiplat reaches ${fmt(ratio * 100, 1)}% of the direct worker's throughput (goal ≥ ${GOAL * 100}%)\nresults: ${file}\n`);
removeDir(dataDir);
removeDir(scratch);
