/**
 * The chaos harness: one real core process (`npm start`'s entry, core/test/helpers/spawn-core.ts)
 * on PostgreSQL and simulated GPUs that a killer SIGKILLs at random moments and starts again on the
 * same data folder and database, and submitters that keep making reservation attempts over HTTP
 * through it all, retrying what a dead process left unanswered.
 *
 * Every replica runs a journalled command (`journalledCommand`): a tiny `sh` script that records,
 * outside the run folders (which the agent removes once a replica is settled), when the command of
 * one workload / replica / epoch really started and ended. The offline checker (checker.ts) reads
 * that journal to prove that no workload ever ran twice at once.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { spawnCore, type SpawnedCore } from '../../helpers/spawn-core.js';

export const ADMIN_PASSWORD = 'chaos-admin-password';

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed with its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The command every chaos replica runs. Its journal entry is a folder named
 * `<workload>.r<replica>.e<epoch>` made with mkdir (which succeeds once: a second run of the same
 * epoch leaves a `.dup.<pid>` marker and exits 90), holding `start` and `end` in nanoseconds since
 * the epoch. A SIGTERM (cancel, preemption, a failed gang member) still writes `end`.
 */
export function journalledCommand(inner: string): string[] {
  const script = [
    'd="$CHAOS_JOURNAL/$AIPLAT_WORKLOAD_ID.r$AIPLAT_REPLICA.e$AIPLAT_EPOCH"',
    'mkdir "$d" 2>/dev/null || { : > "$d.dup.$$"; exit 90; }',
    'date +%s%N > "$d/start"',
    'trap \'date +%s%N > "$d/end"; exit 143\' TERM INT',
    inner,
    'date +%s%N > "$d/end"',
  ].join('\n');
  return ['/bin/sh', '-c', script];
}

export interface ChaosSpec {
  name: string;
  command: string[];
  env: Record<string, string>;
  resources: { gpus: number } | { gpuMemoryMiB: number };
  replicas: number;
  priority: 'low' | 'normal' | 'high';
  retries: number;
}

/**
 * One reservation attempt of the mix: whole cards (1, 2, 4, 8), memory slices (4,000 to 16,000
 * MiB), gangs of 2 to 4 replicas; mostly `/bin/true` and `sleep 0.05`, a few longer ones so that
 * kills land while replicas run (and the next core has to re-attach); mixed priorities; a fifth
 * with one retry (a lost replica then runs again under a new epoch).
 */
export function chaosSpec(random: () => number, n: number, journalDir: string): ChaosSpec {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const r = random();
  let resources: ChaosSpec['resources'];
  let replicas = 1;
  const slice = (lo: number, hi: number) => ({ gpuMemoryMiB: lo + Math.round((random() * (hi - lo)) / 250) * 250 });
  if (r < 0.4) resources = slice(4000, 16_000);
  else if (r < 0.75) resources = { gpus: pick([1, 1, 1, 2, 2, 4, 8] as const) };
  else {
    replicas = 2 + Math.floor(random() * 3);
    resources = random() < 0.5 ? { gpus: pick([1, 1, 2] as const) } : slice(4000, 8000);
  }
  const c = random();
  const inner = c < 0.45 ? '/bin/true' : c < 0.92 ? '/bin/sleep 0.05' : `/bin/sleep ${pick(['0.5', '1', '2', '3'])}`;
  const p = random();
  return {
    name: `chaos-${n}`,
    command: journalledCommand(inner),
    env: { CHAOS_JOURNAL: journalDir },
    resources,
    replicas,
    priority: p < 0.3 ? 'low' : p < 0.8 ? 'normal' : 'high',
    retries: random() < 0.2 ? 1 : 0,
  };
}

/** Output lines of the core at warn and above, counted by message (printed with the summary). */
export type LogTally = Map<string, number>;

/**
 * The core under chaos: started, SIGKILLed and started again on one data folder and database.
 * `ready` is the URL of the process that is up now, or a promise of the next one's while none is.
 */
export class ChaosCore {
  private current: SpawnedCore | undefined;
  private resolveReady: ((url: string) => void) | undefined;
  ready: Promise<string>;
  /** Bumped at every start: a submitter that saw an error waits for a new one. */
  generation = 0;
  kills = 0;
  readonly startMs: number[] = [];
  readonly warnings: LogTally = new Map();
  /** The last few processes' output, for a failure's message. */
  private readonly tails: string[] = [];
  /** Kills and starts with their wall-clock times, for lining up a violation with the chaos. */
  readonly timeline: string[] = [];
  private log: WriteStream | undefined;

  /** `logFile`: every process's output, appended (kept with the folders under CHAOS_KEEP). */
  constructor(
    readonly env: Record<string, string>,
    logFile?: string,
  ) {
    this.ready = this.pending();
    if (logFile) this.log = createWriteStream(logFile, { flags: 'a' });
  }

  static environment(options: { dataDir: string; databaseUrl: string; nodes: number; preemption: boolean }): Record<string, string> {
    const noPlugins = path.join(options.dataDir, '..', `${path.basename(options.dataDir)}-no-plugins`);
    mkdirSync(noPlugins, { recursive: true });
    return {
      AIPLAT_DATA_DIR: options.dataDir,
      DATABASE_URL: options.databaseUrl,
      AIPLAT_ADMIN_PASSWORD: ADMIN_PASSWORD,
      AIPLAT_SIMULATED_GPUS: 'v100s-8',
      AIPLAT_SIMULATED_NODES: String(options.nodes),
      AIPLAT_NODE_ID: 'chaos-host',
      AIPLAT_STOP_GRACE: '1',
      AIPLAT_SCHEDULER_PREEMPTION: String(options.preemption),
      AIPLAT_ACCESS_TOKEN_TTL: '86400',
      // No plugins (an empty folder), nothing from the environment that would change the core.
      AIPLAT_PLUGIN_DIRS: noPlugins,
      REDIS_URL: '',
      PUBLIC_URL: '',
      AIPLAT_METRICS_TOKEN: '',
      AIPLAT_CONFIG_FILE: '',
    };
  }

  private pending(): Promise<string> {
    return new Promise<string>((resolve) => (this.resolveReady = resolve));
  }

  get alive(): boolean {
    return this.current !== undefined && this.current.child.exitCode === null && this.current.child.signalCode === null;
  }

  async start(): Promise<string> {
    const began = performance.now();
    const core = spawnCore(this.env);
    this.current = core;
    this.note(`start (pid ${core.child.pid})`);
    let buffered = '';
    core.child.stderr!.on('data', (chunk: Buffer) => this.log?.write(chunk));
    core.child.stdout!.on('data', (chunk: Buffer) => {
      this.log?.write(chunk);
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { level?: number; msg?: string; err?: unknown };
          if ((entry.level ?? 0) >= 40) {
            const key = `${entry.level! >= 50 ? 'error' : 'warn'}: ${entry.msg ?? ''}${entry.err ? ` (${String(typeof entry.err === 'string' ? entry.err : JSON.stringify(entry.err)).replace(/w[0-9a-z]{8,}[0-9a-f]{10}/g, '<id>').slice(0, 160)})` : ''}`;
            this.warnings.set(key, (this.warnings.get(key) ?? 0) + 1);
          }
        } catch {
          // not a log line
        }
      }
    });
    const url = await core.url.catch((error: Error) => {
      throw new Error(`the core did not start (generation ${this.generation + 1}): ${error.message}`);
    });
    this.startMs.push(performance.now() - began);
    this.note(`listening (pid ${core.child.pid})`);
    this.generation++;
    this.resolveReady!(url);
    this.ready = Promise.resolve(url);
    return url;
  }

  /** SIGKILL: no shutdown, no chance to write anything. The replicas' supervisors live on. */
  async kill(): Promise<void> {
    const core = this.current;
    if (!core) return;
    this.ready = this.pending();
    this.note(`SIGKILL (pid ${core.child.pid})`);
    core.child.kill('SIGKILL');
    await core.exited;
    this.remember(core);
    this.kills++;
  }

  /** SIGTERM and wait (the core stops following replicas without stopping them). */
  async stop(): Promise<void> {
    const core = this.current;
    if (!core || !this.alive) return;
    this.ready = this.pending();
    core.child.kill('SIGTERM');
    const timer = setTimeout(() => core.child.kill('SIGKILL'), 15_000);
    await core.exited;
    clearTimeout(timer);
    this.remember(core);
  }

  private note(what: string): void {
    const line = `${new Date().toISOString()} ${what}`;
    this.timeline.push(line);
    this.log?.write(`# chaos: ${line}\n`);
  }

  /** Stop writing the log file. */
  close(): void {
    this.log?.end();
    this.log = undefined;
  }

  private remember(core: SpawnedCore): void {
    this.tails.push(`--- core pid ${core.child.pid} ---\n${core.stderr().slice(-2000)}\n${core.stdout().slice(-3000)}`);
    if (this.tails.length > 3) this.tails.shift();
  }

  tail(): string {
    if (this.current) this.remember(this.current);
    return this.tails.join('\n');
  }
}

export interface SubmitStats {
  attempts: number;
  accepted: string[];
  /** Responses that were neither 201 nor a connection failure, by status. */
  refused: Map<number, number>;
  /** Requests that died with the process (the attempt was sent again). */
  connectionErrors: number;
  /** Submit latencies of accepted attempts, in ms (including waits for a restart). */
  latencies: number[];
  /** Set when the deadline ended the attempts early (allowed once `minimum` were made). */
  stoppedAtDeadline?: boolean;
}

/**
 * Submitters: `concurrency` loops that take attempt numbers until `total` are made. An attempt is
 * sent again after a connection error (the process was killed, or is starting) until it gets an
 * answer; only 201s count as accepted.
 */
export async function submitAll(options: {
  core: ChaosCore;
  total: number;
  concurrency: number;
  spec: (n: number) => ChaosSpec;
  token: () => Promise<string>;
  relogin: () => Promise<void>;
  deadline: number;
  /**
   * With it, the deadline ends the attempts once this many were made (the ones in flight are
   * abandoned unsent, like an attempt lost with its process); without it, or below it, the
   * deadline is an error.
   */
  minimum?: number;
}): Promise<SubmitStats> {
  const stats: SubmitStats = { attempts: 0, accepted: [], refused: new Map(), connectionErrors: 0, latencies: [] };
  let next = 0;
  const loop = async () => {
    while (next < options.total) {
      const n = next++;
      const body = JSON.stringify(options.spec(n));
      stats.attempts++;
      const began = performance.now();
      for (;;) {
        if (Date.now() > options.deadline) {
          if (options.minimum !== undefined && stats.attempts - 1 >= options.minimum) {
            stats.attempts--;
            stats.stoppedAtDeadline = true;
            next = options.total;
            return;
          }
          throw new Error(`submitting ran past its deadline at attempt ${n}`);
        }
        const generation = options.core.generation;
        const url = await options.core.ready;
        let response: Response;
        try {
          response = await fetch(`${url}/api/v1/workloads`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${await options.token()}` },
            body,
            signal: AbortSignal.timeout(20_000),
          });
        } catch {
          stats.connectionErrors++;
          // Wait for the next process when this one is gone; otherwise a short pause.
          const waited = Date.now();
          while (options.core.generation === generation && Date.now() - waited < 2000) await sleep(25);
          continue;
        }
        const text = await response.text().catch(() => undefined);
        if (text === undefined) {
          stats.connectionErrors++;
          continue;
        }
        if (response.status === 201) {
          stats.accepted.push((JSON.parse(text) as { id: string }).id);
          stats.latencies.push(performance.now() - began);
        } else if (response.status === 401) {
          await options.relogin();
          continue;
        } else {
          stats.refused.set(response.status, (stats.refused.get(response.status) ?? 0) + 1);
          if (response.status >= 500 || response.status === 422) {
            // Say what it was once per status (a 5xx during a kill is a real answer but worth seeing).
            if (stats.refused.get(response.status) === 1) console.warn(`chaos: POST /workloads answered ${response.status}: ${text.slice(0, 300)}`);
          }
        }
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  return stats;
}

/** POST /api/v1/auth/login as the admin, against whichever process is up (retrying through kills). */
export async function login(core: ChaosCore): Promise<string> {
  for (let i = 0; ; i++) {
    const url = await core.ready;
    try {
      const res = await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
        signal: AbortSignal.timeout(20_000),
      });
      if (res.status === 200) return ((await res.json()) as { accessToken: string }).accessToken;
      throw new Error(`sign-in answered ${res.status}: ${await res.text()}`);
    } catch (error) {
      if (i > 200) throw error;
      await sleep(50);
    }
  }
}
