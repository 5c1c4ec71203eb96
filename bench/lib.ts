/**
 * Helpers shared by the benchmark scripts: start the real core (or another Node program) as a
 * child process, wait until it answers, stop it, and measure what it cost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');
export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
export const ADMIN_PASSWORD = 'benchmark-admin-password';
/** What bench/mark-preload.mjs writes to stderr. */
export const PRELOAD_MARK = 'aiplat-bench: preload';

/** Environment variables that would change what is measured (external database, Redis, config file…). */
const SCRUBBED_ENV = [
  'PORT',
  'HOST',
  'AIPLAT_DATA_DIR',
  'AIPLAT_CONFIG_FILE',
  'AIPLAT_PLUGIN_DIRS',
  'AIPLAT_ADMIN_PASSWORD',
  'AIPLAT_SECRET_KEY',
  'AIPLAT_METRICS_TOKEN',
  'AIPLAT_ACCESS_TOKEN_TTL',
  'AIPLAT_SHUTDOWN_GRACE',
  'AIPLAT_AUDIT_HEAD_FILE',
  'AIPLAT_AUDIT_DISABLED_FOR_BENCH',
  'DATABASE_URL',
  'REDIS_URL',
  'PUBLIC_URL',
  'LOG_LEVEL',
  'NODE_OPTIONS',
];

/** The environment of a benchmarked core: on this port and data folder, signed in as the bench admin. */
export function coreEnv(options: { port: number; dataDir: string; pluginDirs: string; logLevel: string }, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return cleanEnv({
    PORT: String(options.port),
    HOST: '127.0.0.1',
    AIPLAT_DATA_DIR: options.dataDir,
    AIPLAT_ADMIN_PASSWORD: ADMIN_PASSWORD,
    AIPLAT_PLUGIN_DIRS: options.pluginDirs,
    LOG_LEVEL: options.logLevel,
    ...extra,
  });
}

export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of SCRUBBED_ENV) delete env[key];
  return { ...env, ...extra };
}

/** A TCP port nobody listens on right now (the core does not print the port it got for PORT=0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const tempDirs = new Set<string>();

/** A fresh temporary folder, removed by removeDir or, at the latest, when the benchmark exits. */
export function makeTempDataDir(label: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `aiplat-bench-${label}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

export interface NodeChild {
  child: ChildProcess;
  pid: number;
  spawnedAt: number;
  /** The last few KiB of stderr, for error messages. */
  stderrTail(): string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  hasExited(): boolean;
  /**
   * performance.now() when the first log line with each watched `msg` arrived on stdout, and
   * `preload` when bench/mark-preload.mjs ran (after Node and tsx were ready, before the script).
   */
  marks: Map<string, number>;
}

export interface SpawnOptions {
  /** Node flags placed before the script (after `--import tsx`). */
  nodeArgs?: string[];
  /** pino `msg` values whose first arrival to record in `marks` (stdout is parsed line by line). */
  watch?: string[];
  /**
   * Write stdout (the logs) to this file, as a service logs in production, instead of a pipe this
   * process reads: the reading would cost the benchmark's own process (and its load generator) CPU.
   */
  logFile?: string;
}

const live = new Set<ChildProcess>();

/** Kill every child still running when the benchmark itself ends (error, Ctrl-C), and remove its temporary folders. */
function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}
process.once('exit', killAll);

const interruptHooks: Array<() => Promise<unknown>> = [];
/**
 * Work to do before a benchmark exits on Ctrl-C or SIGTERM, such as stopping what it started
 * gracefully (a core with replicas: killed at once, its replicas would outlive it). Hooks run in
 * the order added, 60 s at most in all; the children are then killed and the process exits 130.
 */
export function onInterrupt(hook: () => Promise<unknown>): void {
  interruptHooks.push(hook);
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // Ctrl-C reaches a benchmark twice (from the terminal and from npm): only the first one counts.
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    void (async () => {
      const deadline = new Promise((resolve) => setTimeout(resolve, 60_000).unref());
      for (const hook of interruptHooks) await Promise.race([hook().catch(() => undefined), deadline]);
      killAll();
      process.exit(130);
    })();
  });
}

/**
 * Spawn `node --import tsx [...nodeArgs] script` in the repository root. Its stdout is read and
 * discarded (so the cost of writing logs is paid, as in production, but nothing is kept).
 */
export function spawnNode(script: string, env: NodeJS.ProcessEnv, options: SpawnOptions = {}): NodeChild {
  const watch = new Set(options.watch ?? []);
  const preload = watch.size > 0 ? ['--import', './bench/mark-preload.mjs'] : [];
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', ...preload, ...(options.nodeArgs ?? []), script], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', options.logFile ? openSync(options.logFile, 'a') : 'pipe', 'pipe'],
  });
  live.add(child);
  const marks = new Map<string, number>();
  if (options.logFile) {
    if (watch.size > 0) throw new Error('spawnNode: watch needs stdout as a pipe, not a log file');
  } else if (watch.size === 0) {
    child.stdout!.resume();
  } else {
    let pending = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const now = performance.now();
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const msg = /"msg":"([^"]*)"/.exec(line)?.[1];
        if (msg !== undefined && watch.has(msg) && !marks.has(msg)) marks.set(msg, now);
      }
    });
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (!marks.has('preload') && chunk.includes(PRELOAD_MARK)) marks.set('preload', performance.now());
    stderr = (stderr + chunk.replace(`${PRELOAD_MARK}\n`, '')).slice(-8192);
  });
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${process.execPath}`);
  return { child, pid: child.pid, spawnedAt, stderrTail: () => stderr, exited, hasExited: () => done, marks };
}

/** One GET without keep-alive; resolves with the status, or undefined when nothing answered. */
export function probe(url: string, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
      res.once('error', () => resolve(undefined));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

/** Poll `url` every `intervalMs` until it answers 200; resolves with the time of that answer (performance.now()). */
export async function waitFor200(url: string, proc: NodeChild, options: { intervalMs?: number; timeoutMs?: number } = {}): Promise<number> {
  const intervalMs = options.intervalMs ?? 20;
  const deadline = performance.now() + (options.timeoutMs ?? 120_000);
  for (;;) {
    const status = await probe(url);
    if (status === 200) return performance.now();
    if (proc.hasExited()) {
      throw new Error(`the process exited before ${url} answered 200 (exit ${String(await proc.exited)}):\n${proc.stderrTail()}`);
    }
    if (performance.now() > deadline) throw new Error(`${url} did not answer 200 in time (last status ${String(status)}):\n${proc.stderrTail()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** SIGTERM and wait for the exit; resolves with the milliseconds it took and the exit code. */
export async function stopGracefully(proc: NodeChild, timeoutMs = 30_000): Promise<{ ms: number; exit: number | string }> {
  if (proc.hasExited()) return { ms: 0, exit: await proc.exited };
  const start = performance.now();
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const exit = await proc.exited;
  clearTimeout(timer);
  return { ms: performance.now() - start, exit };
}

/** CPU seconds (user + system, all threads) a process has used so far; undefined off Linux. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    return ticks / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}
/** CPU seconds all processes on the machine have used so far (every core); undefined off Linux. */
export function systemBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [, ...ticks] = line.trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    const busy = ticks.slice(0, 8).reduce((sum, t, i) => (i === 3 || i === 4 ? sum : sum + t), 0);
    return busy / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}
// USER_HZ is 100 on every mainstream Linux build; `getconf CLK_TCK` would say otherwise.
const clockTicksPerSecond = 100;

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile of values sorted ascending (NaN when there are none). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

/** Write a result file under bench/results/ and return its path. */
export function writeResult(prefix: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = path.join(RESULTS_DIR, `${prefix}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** A number from a flag (`--name 5` / `--name=5`), then an environment variable, then a default. */
export function numberOption(values: Record<string, unknown>, flag: string, envName: string, fallback: number): number {
  const raw = (values[flag] as string | undefined) ?? process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${flag} / ${envName} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return value;
}

export const fmt = (value: number, digits = 0): string =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** A plain-text table with aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
