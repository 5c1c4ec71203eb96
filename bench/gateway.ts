/**
 * `npm run bench:gateway`: what the serving plugin's OpenAI-compatible gateway (`/v1`) adds to a
 * request, against a fast upstream: a minimal OpenAI-compatible responder in Node
 * (bench/fixtures/openai-responder.mjs; it measures the gateway, not a model), deployed through the
 * real platform (a real core in its own process, embedded database; the models and serving plugins
 * and the bench-only runtime plugin bench/fixtures/serving-responder), so the gateway forwards to a
 * ready replica of a real deployment. Four targets, all reaching that very replica process:
 *
 * - `direct`: the replica's own port;
 * - `gateway`: the core's `POST /v1/chat/completions` with a team API key, as OpenAI clients call
 *   it (key lookup, route lookup, replica choice, forwarding, metering);
 * - `node-proxy`: the floor for any gateway on Node's http module: a reverse proxy with nothing in it
 *   (bench/fixtures/node-proxy.mjs, its own process, kept-alive upstream connections);
 * - `nginx`: Debian's nginx as a plain reverse proxy (one worker, upstream keep-alive, no
 *   buffering), the yardstick (installed by bench/fixtures/provision-nginx.sh when missing).
 *
 * Logs: the core writes its log (an access line per request at the default level `info`) to a
 * file, as a service does in production, and nginx then writes its access log to a file too (its
 * Debian default); with `--log-level warn` neither logs requests.
 *
 * Latency: alternating rounds (the order rotates every round), each a run of sequential requests
 * on one keep-alive connection per target, timed with performance.now(); per round p50 and p99 per
 * target and the added p50/p99 (target − direct, same round); the report takes medians over rounds.
 * Goals: added p50 ≤ 1 ms, p99 ≤ 5 ms.
 * Streaming: the same with `"stream": true`, time to the first byte of the body (the first SSE
 * chunk). Goal: added ≤ 2 ms.
 * Throughput at saturation: autocannon, N connections for D seconds per target, alternating rounds.
 * Goal: gateway ≥ 0.5 × nginx.
 * Published anchors: TensorZero 0.35 ms p50 added (vendor, Rust), LiteLLM about 4 ms (third party).
 *
 *   npm run bench:gateway -- [--rounds 5] [--requests 2000] [--stream-requests 500]
 *                            [--connections 32] [--duration 10] [--throughput-rounds 2]
 *                            [--log-level info] [--no-nginx] [--profile] [--hold] [--workers 1]
 *
 * Exits 0 when every answer was a 200 with the expected body, whether or not the goals are met; 1
 * on any error. `--profile` starts the core with `--cpu-prof` (bench/results/profiles/). `--hold` sets
 * everything up, prints the targets (port, path, headers, process ids) as JSON and keeps them up without
 * measuring until Ctrl-C, for probing by hand (perf, strace, another load generator).
 * `--workers N` runs the two yardsticks in N processes each (nginx's `worker_processes`, the bare
 * Node proxy through node:cluster), to see whether the machine has room for more than one: their
 * CPU per request is then summed over those processes.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type Result } from 'autocannon';
import {
  ADMIN_PASSWORD,
  REPO_ROOT,
  RESULTS_DIR,
  coreEnv,
  fmt,
  freePort,
  machine,
  makeTempDataDir,
  median,
  numberOption,
  percentile,
  processCpuSeconds,
  removeDir,
  spawnNode,
  onInterrupt,
  stopGracefully,
  table,
  waitFor200,
  writeResult,
} from './lib.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    requests: { type: 'string' },
    'stream-requests': { type: 'string' },
    connections: { type: 'string' },
    duration: { type: 'string' },
    'throughput-rounds': { type: 'string' },
    'log-level': { type: 'string' },
    'no-nginx': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    hold: { type: 'boolean', default: false },
    workers: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: npm run bench:gateway -- [--rounds 5] [--requests 2000] [--stream-requests 500] [--connections 32] [--duration 10] [--throughput-rounds 2] [--log-level info] [--no-nginx] [--profile] [--hold] [--workers 1]\n',
  );
  process.exit(0);
}
const ROUNDS = Math.max(1, Math.round(numberOption(values, 'rounds', 'BENCH_ROUNDS', 5)));
const REQUESTS = Math.max(100, Math.round(numberOption(values, 'requests', 'BENCH_REQUESTS', 2000)));
const STREAM_REQUESTS = Math.max(50, Math.round(numberOption(values, 'stream-requests', 'BENCH_STREAM_REQUESTS', 500)));
const CONNECTIONS = Math.max(1, Math.round(numberOption(values, 'connections', 'BENCH_CONNECTIONS', 32)));
const DURATION = Math.max(1, numberOption(values, 'duration', 'BENCH_DURATION', 10));
const THROUGHPUT_ROUNDS = Math.max(1, Math.round(numberOption(values, 'throughput-rounds', 'BENCH_THROUGHPUT_ROUNDS', 2)));
/** Requests before each timed run (not recorded): the connection, JIT, caches. */
const WARMUP_REQUESTS = 100;
/** Seconds of load before each measured throughput run. */
const WARMUP_SECONDS = 1;
/** Processes of each yardstick: nginx's workers, the bare Node proxy's (node:cluster). */
const WORKERS = Math.max(1, Math.round(numberOption(values, 'workers', 'BENCH_WORKERS', 1)));
const LOG_LEVEL = values['log-level'] ?? process.env.BENCH_LOG_LEVEL ?? 'info';
const GOALS = { addedP50Ms: 1, addedP99Ms: 5, throughputVsNginx: 0.5, addedTtfbMs: 2 };
const ANCHORS = { tensorzeroP50Ms: 0.35, litellmP50Ms: 4 };
const MODEL = 'bench-gateway';

type TargetName = 'direct' | 'gateway' | 'nginx' | 'node-proxy';
interface Target {
  name: TargetName;
  port: number;
  path: string;
  headers: Record<string, string>;
  /** The processes whose CPU time is counted per request at saturation (the gateway's core, nginx's workers, the replica). */
  pids: () => number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PLAIN_BODY = Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 16, temperature: 0 }));
const STREAM_BODY = Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 16, temperature: 0, stream: true }));

// ---- nginx ----

const NGINX = process.env.AIPLAT_NGINX || '/usr/sbin/nginx';

/** The nginx executable, installed when missing (Debian's package), or undefined with a reason printed. */
function provisionNginx(): string | undefined {
  if (values['no-nginx']) return undefined;
  if (existsSync(NGINX)) return NGINX;
  try {
    execFileSync('sh', [path.join(REPO_ROOT, 'bench/fixtures/provision-nginx.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
    return existsSync(NGINX) ? NGINX : undefined;
  } catch (err) {
    process.stderr.write(`nginx is not available, its comparison is skipped: ${(err as Error).message}\n`);
    return undefined;
  }
}

/** nginx as a plain reverse proxy to 127.0.0.1:upstreamPort on listenPort, configured and logging in `dir`. */
async function startNginx(binary: string, dir: string, listenPort: number, upstreamPort: number, accessLog: boolean, workers: number): Promise<{ child: ChildProcess; port: number; version: string }> {
  // The workers drop root for `nobody`: they must be able to enter the folder.
  chmodSync(dir, 0o755);
  const conf = `daemon off;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  ${accessLog ? `access_log ${dir}/access.log;` : 'access_log off;'}
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  upstream responder {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://responder;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
  const confFile = path.join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  // `nginx -v` prints to stderr.
  const v = spawnSync(binary, ['-v'], { encoding: 'utf8' });
  const version = `${v.stderr ?? ''}${v.stdout ?? ''}`.trim().replace(/^nginx version: /, '');
  const child = spawn(binary, ['-p', dir, '-c', confFile, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
  process.once('exit', () => child.kill('SIGKILL'));
  const deadline = performance.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr}${readOr(path.join(dir, 'error.log'))}`);
    if ((await statusOf(listenPort, '/health')) === 200) break;
    if (performance.now() > deadline) throw new Error(`nginx did not answer in 10 s: ${stderr}${readOr(path.join(dir, 'error.log'))}`);
    await sleep(50);
  }
  return { child, port: listenPort, version };
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2048);
  } catch {
    return '';
  }
}

/** The child process ids of `pid` (Linux), or none. */
function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return [];
  }
}

/** CPU seconds the processes have used so far, or undefined when there are none or one cannot be read. */
function cpuOf(pids: number[]): number | undefined {
  if (pids.length === 0) return undefined;
  let sum = 0;
  for (const pid of pids) {
    const seconds = processCpuSeconds(pid);
    if (seconds === undefined) return undefined;
    sum += seconds;
  }
  return sum;
}

/** The process listening on the replica: a descendant of the core whose command line runs the responder. */
function responderPid(corePid: number): number | undefined {
  const queue = [corePid];
  while (queue.length) {
    const pid = queue.shift()!;
    for (const child of childrenOf(pid)) {
      if (readOr(`/proc/${child}/cmdline`).includes('openai-responder.mjs')) return child;
      queue.push(child);
    }
  }
  return undefined;
}

// ---- one request ----

function statusOf(port: number, urlPath: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

interface Timing {
  /** ms to the end of the answer. */
  total: number;
  /** ms to the first byte of the body. */
  ttfb: number;
}

/** One POST on `agent`'s kept-alive connection; rejects on anything but a 200 with the expected body. */
function once(agent: http.Agent, target: Target, body: Buffer, stream: boolean): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttfb = -1;
    const req = http.request(
      {
        host: '127.0.0.1',
        port: target.port,
        path: target.path,
        method: 'POST',
        agent,
        headers: { ...target.headers, 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (ttfb < 0) ttfb = performance.now() - t0;
          text += chunk;
        });
        res.on('end', () => {
          const total = performance.now() - t0;
          const ok = res.statusCode === 200 && (stream ? text.endsWith('data: [DONE]\n\n') && text.includes(`"model":"${MODEL}"`) : text.includes('"object":"chat.completion"') && text.includes(`"model":"${MODEL}"`));
          if (!ok) reject(new Error(`${target.name}: POST ${target.path} answered ${res.statusCode}: ${text.slice(0, 500)}`));
          else resolve({ total, ttfb });
        });
        res.on('error', reject);
      },
    );
    req.on('error', (err) => reject(new Error(`${target.name}: ${err.message}`)));
    req.end(body);
  });
}

interface LatencyRun {
  target: TargetName;
  round: number;
  stream: boolean;
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
}

/** `n` sequential requests on one keep-alive connection (after a warm-up on it), timed one by one. */
async function latencyRun(target: Target, round: number, n: number, stream: boolean): Promise<LatencyRun> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = stream ? STREAM_BODY : PLAIN_BODY;
  try {
    for (let i = 0; i < WARMUP_REQUESTS; i++) await once(agent, target, body, stream);
    const total = new Float64Array(n);
    const ttfb = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t = await once(agent, target, body, stream);
      total[i] = t.total;
      ttfb[i] = t.ttfb;
    }
    total.sort();
    ttfb.sort();
    return {
      target: target.name,
      round,
      stream,
      requests: n,
      p50Ms: percentile(total, 50),
      p90Ms: percentile(total, 90),
      p99Ms: percentile(total, 99),
      maxMs: total[n - 1]!,
      meanMs: total.reduce((a, b) => a + b, 0) / n,
      ttfbP50Ms: percentile(ttfb, 50),
      ttfbP99Ms: percentile(ttfb, 99),
    };
  } finally {
    agent.destroy();
  }
}

// ---- throughput ----

interface ThroughputRun {
  target: TargetName;
  round: number;
  requests: number;
  seconds: number;
  rps: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** CPU time of the target's own process per request (µs): the core, nginx's worker, the replica. */
  cpuUsPerRequest?: number;
  /** CPU of the replica (upstream) per request (µs), the same work behind every target. */
  upstreamCpuUsPerRequest?: number;
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

function load(target: Target, seconds: number): Promise<Result> {
  return autocannon({
    url: `http://127.0.0.1:${target.port}${target.path}`,
    method: 'POST',
    headers: { ...target.headers, 'content-type': 'application/json' },
    body: PLAIN_BODY.toString('utf8'),
    connections: CONNECTIONS,
    duration: seconds,
  });
}

async function throughputRun(target: Target, round: number, upstreamPid: number | undefined): Promise<ThroughputRun> {
  const warm = await load(target, WARMUP_SECONDS);
  const warmBad = problems(warm);
  if (warmBad) throw new Error(`${target.name} warm-up: ${warmBad}`);
  const pids = target.pids();
  const cpuBefore = cpuOf(pids);
  const upstreamPids = upstreamPid === undefined ? [] : [upstreamPid];
  const upBefore = cpuOf(upstreamPids);
  const result = await load(target, DURATION);
  const cpuAfter = cpuOf(pids);
  const upAfter = cpuOf(upstreamPids);
  const bad = problems(result);
  if (bad) throw new Error(`${target.name} round ${round}: ${bad}`);
  const requests = result.requests.total;
  return {
    target: target.name,
    round,
    requests,
    seconds: result.duration,
    rps: requests / result.duration,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    cpuUsPerRequest: cpuBefore !== undefined && cpuAfter !== undefined && target.name !== 'direct' ? ((cpuAfter - cpuBefore) / requests) * 1e6 : undefined,
    upstreamCpuUsPerRequest: upBefore !== undefined && upAfter !== undefined ? ((upAfter - upBefore) / requests) * 1e6 : undefined,
  };
}

// ---- the platform: core, model version, deployment ----

/** A model folder the models plugin accepts (a Llama's config, one small tensor: the responder never reads it). */
async function configOnlyModel(folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  await writeFile(
    path.join(folder, 'config.json'),
    JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 512, torch_dtype: 'float32' }),
  );
  // safetensors: an 8-byte little-endian header length, the JSON header, the tensor bytes.
  const header = Buffer.from(JSON.stringify({ 'lm_head.weight': { dtype: 'F32', shape: [1, 4], data_offsets: [0, 16] } }));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path.join(folder, 'model.safetensors'), Buffer.concat([size, header, Buffer.alloc(16)]));
  return folder;
}

const nginxBinary = provisionNginx();
const dataDir = makeTempDataDir('gateway');
const scratch = makeTempDataDir('gateway-scratch');
const modelDir = await configOnlyModel(path.join(scratch, 'models', 'tiny'));

const corePort = await freePort();
const base = `http://127.0.0.1:${corePort}`;
const pluginDirs = [path.join(REPO_ROOT, 'plugins', 'models'), path.join(REPO_ROOT, 'plugins', 'serving'), path.join(REPO_ROOT, 'bench', 'fixtures', 'serving-responder')].join(path.delimiter);
const profileDir = path.join(RESULTS_DIR, 'profiles');
if (values.profile) mkdirSync(profileDir, { recursive: true });
const core = spawnNode(
  'core/src/main.ts',
  coreEnv({ port: corePort, dataDir, pluginDirs, logLevel: LOG_LEVEL }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }),
  // Node names each thread's profile (tsx's loader runs in a worker): the core's main thread is the largest file.
  // Its logs (a line per request at info) go to a file, as in production; nginx logs to a file too (below).
  { logFile: path.join(dataDir, 'core.log'), ...(values.profile ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}) },
);
await waitFor200(`${base}/api/v1/health`, core, { timeoutMs: 120_000 });
const login = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
if (login.status !== 200) throw new Error(`login answered ${login.status}: ${await login.text()}`);
const token = ((await login.json()) as { accessToken: string }).accessToken;
const auth = { authorization: `Bearer ${token}` };

async function api<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${url}`, { method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

await api('PUT', '/api/v1/plugins/models/config', { importRoots: [path.dirname(modelDir)] });
const model = await api('POST', '/api/plugins/models/models', { name: 'bench-gateway-model' });
const op = await api('POST', `/api/plugins/models/models/${model.id}/versions/import`, { path: modelDir });
let version: string | undefined;
while (!version) {
  const o = await api('GET', `/api/v1/operations/${op.operationId}`);
  if (o.state === 'succeeded') version = o.result.versionId;
  else if (o.state !== 'running' && o.state !== 'pending') throw new Error(`the import ${o.state}: ${JSON.stringify(o.error)}`);
  else await sleep(100);
}

const deployT0 = performance.now();
const created = await api('POST', '/api/plugins/serving/deployments', { name: MODEL, modelVersion: version, runtime: 'responder' });
let replicaPort: number | undefined;
for (;;) {
  const d = await api('GET', `/api/plugins/serving/deployments/${created.id}`);
  if (d.state === 'ready' && d.traffic.length === 1) {
    replicaPort = (d.replicas as { port: number | null; inRotation: boolean }[]).find((r) => r.inRotation && r.port)?.port ?? undefined;
    if (replicaPort) break;
  }
  if (d.state === 'failed') throw new Error(`the deployment failed: ${d.reason}`);
  if (performance.now() - deployT0 > 120_000) throw new Error(`the deployment was not ready in 120 s (${d.state})`);
  await sleep(50);
}
const deployReadyMs = performance.now() - deployT0;
const upstreamPid = responderPid(core.pid);

// The gateway as OpenAI clients call it: with a team API key (no rate limit on it; metered).
const key = await api<{ secret: string }>('POST', '/api/plugins/serving/keys', { name: 'bench-gateway' });
const targets: Target[] = [
  { name: 'direct', port: replicaPort, path: '/v1/chat/completions', headers: {}, pids: () => (upstreamPid === undefined ? [] : [upstreamPid]) },
  { name: 'gateway', port: corePort, path: '/v1/chat/completions', headers: { authorization: `Bearer ${key.secret}` }, pids: () => [core.pid!] },
];
// The floor for a gateway on Node's http module: a bare reverse proxy with nothing in it.
const nodeProxyPort = await freePort();
const nodeProxy = spawn(process.execPath, [path.join(REPO_ROOT, 'bench', 'fixtures', 'node-proxy.mjs')], { env: { ...process.env, PORT: String(nodeProxyPort), UPSTREAM_PORT: String(replicaPort), WORKERS: String(WORKERS) }, stdio: ['ignore', 'pipe', 'inherit'] });
process.once('exit', () => nodeProxy.kill('SIGKILL'));
await new Promise<void>((resolve, reject) => {
  nodeProxy.stdout!.once('data', () => resolve());
  nodeProxy.once('exit', (code) => reject(new Error(`node-proxy exited (${code})`)));
});
nodeProxy.stdout!.resume();
// The proxy and its workers, if any (with several, the primary only hands connections out; its CPU counts too).
targets.push({ name: 'node-proxy', port: nodeProxyPort, path: '/v1/chat/completions', headers: {}, pids: () => [nodeProxy.pid!, ...childrenOf(nodeProxy.pid!)] });
let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
const nginxDir = makeTempDataDir('gateway-nginx');
if (nginxBinary) {
  // Like the core, nginx writes an access line per request (Debian's default) while the core logs requests (info and below).
  nginx = await startNginx(nginxBinary, nginxDir, await freePort(), replicaPort, ['trace', 'debug', 'info'].includes(LOG_LEVEL), WORKERS);
  const master = nginx.child.pid!;
  targets.push({ name: 'nginx', port: nginx.port, path: '/v1/chat/completions', headers: {}, pids: () => childrenOf(master) });
}
process.stdout.write(
  `deployment ${MODEL} ready in ${fmt(deployReadyMs / 1000, 2)} s; replica on :${replicaPort}${upstreamPid ? ` (pid ${upstreamPid})` : ''}; gateway :${corePort} (log level ${LOG_LEVEL})` +
    `; bare Node proxy :${nodeProxyPort}` +
    (nginx ? `; ${nginx.version} on :${nginx.port}` : '; nginx skipped') +
    (WORKERS > 1 ? `; ${WORKERS} processes for the bare proxy and nginx each (the gateway: one core process)` : '') +
    '\n',
);

let stopping: Promise<Awaited<ReturnType<typeof stopGracefully>>> | undefined;
/** The replica is the platform's to stop: deletes the deployment, then stops the core, the replica should it outlive both, the bare proxy and nginx (once). */
function stopAll(): Promise<Awaited<ReturnType<typeof stopGracefully>>> {
  stopping ??= stopEverything();
  return stopping;
}
async function stopEverything(): Promise<Awaited<ReturnType<typeof stopGracefully>>> {
  await api('DELETE', `/api/plugins/serving/deployments/${created.id}`);
  const stopped = await stopGracefully(core);
  if (upstreamPid !== undefined && readOr(`/proc/${upstreamPid}/cmdline`).includes('openai-responder.mjs')) {
    try {
      process.kill(upstreamPid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  nodeProxy.kill('SIGTERM');
  if (nginx) {
    nginx.child.kill('SIGQUIT');
    await new Promise((r) => (nginx!.child.exitCode !== null ? r(undefined) : nginx!.child.once('exit', r)));
  }
  return stopped;
}

// Ctrl-C (or SIGTERM) from here on stops everything gracefully, so that no replica is left behind.
onInterrupt(stopAll);

if (values.hold) {
  process.stdout.write(`${JSON.stringify({ targets: targets.map((t) => ({ ...t, pids: t.pids() })), body: PLAIN_BODY.toString('utf8') })}\nholding the targets up; Ctrl-C stops them\n`);
  await new Promise(() => {
    // until Ctrl-C: the interrupt hook stops everything, and the process exits
  });
}

/** The targets in this round's order: rotated every round, so none always goes first. */
const rotated = (round: number) => targets.map((_, i) => targets[(i + round) % targets.length]!);

// ---- latency, plain and streamed ----

const latency: LatencyRun[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const target of rotated(round)) latency.push(await latencyRun(target, round, REQUESTS, false));
  for (const target of rotated(round)) latency.push(await latencyRun(target, round, STREAM_REQUESTS, true));
  process.stdout.write(`latency round ${round}/${ROUNDS} done\n`);
}

// ---- throughput at saturation ----

const throughput: ThroughputRun[] = [];
for (let round = 1; round <= THROUGHPUT_ROUNDS; round++) {
  for (const target of rotated(round)) throughput.push(await throughputRun(target, round, upstreamPid));
  process.stdout.write(`throughput round ${round}/${THROUGHPUT_ROUNDS} done\n`);
}

// ---- report ----

const names = targets.map((t) => t.name);
const runOf = (name: TargetName, round: number, stream: boolean) => latency.find((r) => r.target === name && r.round === round && r.stream === stream)!;
const rounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
const med = (name: TargetName, stream: boolean, f: (r: LatencyRun) => number) => median(rounds.map((round) => f(runOf(name, round, stream))));
const added = (name: TargetName, stream: boolean, f: (r: LatencyRun) => number) => median(rounds.map((round) => f(runOf(name, round, stream)) - f(runOf('direct', round, stream))));
const tput = (name: TargetName, f: (r: ThroughputRun) => number | undefined) => {
  const v = throughput.filter((r) => r.target === name).map(f).filter((x): x is number => x !== undefined);
  return v.length ? median(v) : undefined;
};

function stats(name: TargetName) {
  return {
    p50Ms: med(name, false, (r) => r.p50Ms),
    p90Ms: med(name, false, (r) => r.p90Ms),
    p99Ms: med(name, false, (r) => r.p99Ms),
    meanMs: med(name, false, (r) => r.meanMs),
    addedP50Ms: added(name, false, (r) => r.p50Ms),
    addedP99Ms: added(name, false, (r) => r.p99Ms),
    streamTtfbP50Ms: med(name, true, (r) => r.ttfbP50Ms),
    streamTtfbP99Ms: med(name, true, (r) => r.ttfbP99Ms),
    streamTotalP50Ms: med(name, true, (r) => r.p50Ms),
    addedStreamTtfbP50Ms: added(name, true, (r) => r.ttfbP50Ms),
    rps: tput(name, (r) => r.rps)!,
    saturationLatencyP50Ms: tput(name, (r) => r.latencyP50Ms)!,
    saturationLatencyP99Ms: tput(name, (r) => r.latencyP99Ms)!,
    cpuUsPerRequest: tput(name, (r) => r.cpuUsPerRequest),
    upstreamCpuUsPerRequest: tput(name, (r) => r.upstreamCpuUsPerRequest),
  };
}
type Stats = ReturnType<typeof stats>;
const summary = Object.fromEntries(names.map((name) => [name, stats(name)])) as Partial<Record<TargetName, Stats>>;

const ms = (v: number | undefined, digits = 3) => (v === undefined || Number.isNaN(v) ? '–' : fmt(v, digits));
const row = (label: string, key: string, digits = 3, skipDirect = false) => [label, ...names.map((n) => (skipDirect && n === 'direct' ? '–' : ms((summary[n] as Record<string, number | undefined> | undefined)?.[key], digits)))];
process.stdout.write(
  `\nPOST /v1/chat/completions, ${ROUNDS} alternating rounds × ${REQUESTS} sequential requests (stream: ${STREAM_REQUESTS}) on one keep-alive connection; medians over rounds\n` +
    table([
      ['median over rounds', ...names],
      row('latency p50 (ms)', 'p50Ms'),
      row('latency p90 (ms)', 'p90Ms'),
      row('latency p99 (ms)', 'p99Ms'),
      row('latency mean (ms)', 'meanMs'),
      row('added p50 vs direct (ms)', 'addedP50Ms', 3, true),
      row('added p99 vs direct (ms)', 'addedP99Ms', 3, true),
      row('stream TTFB p50 (ms)', 'streamTtfbP50Ms'),
      row('stream TTFB p99 (ms)', 'streamTtfbP99Ms'),
      row('stream whole answer p50 (ms)', 'streamTotalP50Ms'),
      row('added stream TTFB p50 (ms)', 'addedStreamTtfbP50Ms', 3, true),
      row(`req/s at saturation (${CONNECTIONS} conns, ${DURATION} s)`, 'rps', 0),
      row('saturation latency p50 (ms, 1 ms res.)', 'saturationLatencyP50Ms', 0),
      row('saturation latency p99 (ms, 1 ms res.)', 'saturationLatencyP99Ms', 0),
      row(`proxy CPU/req (µs: core / Node proxy / nginx${WORKERS > 1 ? `, ${WORKERS} processes each` : ' worker'})`, 'cpuUsPerRequest', 1, true),
      row('upstream CPU/req (µs)', 'upstreamCpuUsPerRequest', 1),
    ]) +
    '\n\n',
);

const g = summary.gateway!;
const d = summary.direct!;
const n = nginx ? summary.nginx : undefined;
const ratio = n ? g.rps! / n.rps! : undefined;
const bare = summary['node-proxy']!;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
const lines = [
  `${verdict(g.addedP50Ms! <= GOALS.addedP50Ms)}: gateway added latency p50 ${ms(g.addedP50Ms)} ms (goal ≤ ${GOALS.addedP50Ms} ms${n ? `; nginx adds ${ms(n.addedP50Ms)} ms` : ''}; anchors: TensorZero ${ANCHORS.tensorzeroP50Ms} ms, LiteLLM ≈ ${ANCHORS.litellmP50Ms} ms)`,
  `${verdict(g.addedP99Ms! <= GOALS.addedP99Ms)}: gateway added latency p99 ${ms(g.addedP99Ms)} ms (goal ≤ ${GOALS.addedP99Ms} ms${n ? `; nginx adds ${ms(n.addedP99Ms)} ms` : ''})`,
  ratio === undefined
    ? `SKIP: throughput at saturation vs nginx (nginx not available); gateway ${ms(g.rps, 0)} req/s, direct ${ms(d.rps, 0)} req/s`
    : `${verdict(ratio >= GOALS.throughputVsNginx)}: throughput at saturation gateway/nginx ${fmt(ratio, 3)} (${ms(g.rps, 0)} vs ${ms(n!.rps, 0)} req/s${WORKERS > 1 ? `, nginx with ${WORKERS} workers` : ''}; goal ≥ ${GOALS.throughputVsNginx}; direct ${ms(d.rps, 0)} req/s)`,
  `INFO: a bare Node reverse proxy (nothing in it${WORKERS > 1 ? `, ${WORKERS} processes` : ''}) does ${ms(bare.rps, 0)} req/s${n ? ` = ${fmt(bare.rps! / n.rps!, 3)} × nginx` : ''}; the gateway does ${fmt(g.rps! / bare.rps!, 3)} × that (CPU per request: gateway ${ms(g.cpuUsPerRequest, 1)} µs, bare Node proxy ${ms(bare.cpuUsPerRequest, 1)} µs)`,
  `${verdict(g.addedStreamTtfbP50Ms! <= GOALS.addedTtfbMs)}: streaming time to first byte added p50 ${ms(g.addedStreamTtfbP50Ms)} ms (goal ≤ ${GOALS.addedTtfbMs} ms${n ? `; nginx adds ${ms(n.addedStreamTtfbP50Ms)} ms` : ''})`,
];

const stop = await stopAll();
const file = writeResult('gateway', {
  machine: machine(),
  options: { rounds: ROUNDS, requests: REQUESTS, streamRequests: STREAM_REQUESTS, warmupRequests: WARMUP_REQUESTS, connections: CONNECTIONS, durationS: DURATION, throughputRounds: THROUGHPUT_ROUNDS, logLevel: LOG_LEVEL, yardstickWorkers: WORKERS },
  nginx: nginx?.version ?? null,
  deployReadyMs,
  summary,
  throughputRatioGatewayVsNginx: ratio,
  throughputRatioGatewayVsBareNodeProxy: g.rps! / bare.rps!,
  throughputRatioBareNodeProxyVsNginx: n ? bare.rps! / n.rps! : undefined,
  goals: {
    ...GOALS,
    met: {
      addedP50: g.addedP50Ms! <= GOALS.addedP50Ms,
      addedP99: g.addedP99Ms! <= GOALS.addedP99Ms,
      throughput: ratio === undefined ? null : ratio >= GOALS.throughputVsNginx,
      addedTtfb: g.addedStreamTtfbP50Ms! <= GOALS.addedTtfbMs,
    },
  },
  anchors: ANCHORS,
  latency,
  throughput,
  coreStop: stop,
});
process.stdout.write(`${lines.join('\n')}\nresults: ${file}\n`);
if (values.profile) process.stdout.write(`profiles: ${profileDir} (the core's main thread is the largest CPU.*.cpuprofile of this run; summarise it with bench/profile-summary.ts)\n`);
removeDir(dataDir);
removeDir(scratch);
removeDir(nginxDir);
