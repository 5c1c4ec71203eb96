/**
 * The `local` executor (ARCHITECTURE §7): each replica runs as a child process under a small
 * supervisor (`supervisor.mjs`) that writes its output and exit code to files in the replica's run
 * folder, `<runsDir>/<workloadId>/r<replica>-e<epoch>`. The core only reads those files and sends
 * signals, so a core restart loses nothing: the replica keeps running, and the next core `attach`es
 * from the output offset it had recorded.
 *
 * Processes: the supervisor runs in its own session (detached, so a core crash or a Ctrl-C in the
 * core's terminal reaches neither it nor the replica); the command runs in a second process group of
 * its own, so a stop can signal all of it without touching the supervisor.
 *
 * Reporting: a `start()` that resolves reports `started` once, then `output` zero or more times, then
 * exactly one of `exited` and `lost` (a command that cannot be started is `started` without a pid, then
 * `exited` 127 or 126, as a shell would; a supervisor that fails reports only `lost`). `start()` rejects
 * only when nothing was started (a bad launch, a fenced epoch); once the supervisor is spawned, every
 * outcome comes through the reporter.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, rmdir, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Executor, Logger, ReplicaLaunch, ReplicaReporter } from '@aiplat/plugin-sdk';

const SUPERVISOR = fileURLToPath(new URL('./supervisor.mjs', import.meta.url));
const WORKLOAD_ID = /^[A-Za-z0-9_-]+$/;
const RUN_DIR_NAME = /^[A-Za-z0-9_-]+\/r\d+-e\d+$/;
/** The only variables of the core's own environment a replica inherits; the rest (secrets, NODE_OPTIONS) stays in the core. */
const BASE_ENV_KEYS = ['PATH', 'HOME', 'LANG', 'TMPDIR'] as const;
/** How often a follower checks that the supervisor is still there (a syscall and a /proc read). */
const LIVENESS_EVERY_MS = 1000;
/** Output is read in pieces of at most this size, so a burst never sits in memory whole. */
const MAX_READ_BYTES = 1 << 20;
/** A "line" this long without a newline (progress bars redrawn with \r) is delivered anyway. */
const MAX_PARTIAL_LINE_BYTES = 64 * 1024;
const HAS_PROC = existsSync('/proc/self/cmdline');

export interface LocalExecutorOptions {
  /** Where run folders go (e.g. `<dataDir>/runs`). */
  runsDir: string;
  logger?: Logger;
  /** How often output and exit records are looked for; default 100 ms. */
  pollMs?: number;
  /** The supervisor's grace period when it is sent SIGTERM without `stop()` (host shutdown); default 10 s. */
  graceSeconds?: number;
  /** How long the supervisor may take to report the command started before the replica is reported lost; default 10 s. */
  startTimeoutMs?: number;
}

/** The JSON the scheduler stores to `attach`, `stop` and `cleanup` later. */
export interface LocalReplicaHandle {
  [key: string]: unknown;
  runDir: string;
  supervisorPid: number;
  /** The command's pid and process group id; 0 when it never started. */
  pid: number;
}

/** What the supervisor writes to `exit.json`. */
interface ExitRecord {
  exitCode: number | null;
  signal: string | null;
  finishedAt: string;
  error?: string;
}

type SpawnResult = { supervisorPid: number; pid: number } | { supervisorPid: number; failure: string };

export class LocalExecutor implements Executor {
  readonly name = 'local';
  readonly local = true;
  private readonly runsDir: string;
  private readonly logger: Logger | undefined;
  private readonly pollMs: number;
  private readonly graceSeconds: number;
  private readonly startTimeoutMs: number;
  /** Run folders being followed, by path. */
  private readonly followers = new Map<string, Follower>();
  /** Run folders a `start()` of this executor is creating: a second start of the same epoch is refused at once. */
  private readonly starting = new Set<string>();
  private closed = false;

  constructor(options: LocalExecutorOptions) {
    this.runsDir = resolve(options.runsDir);
    this.logger = options.logger;
    this.pollMs = options.pollMs ?? 100;
    this.graceSeconds = options.graceSeconds ?? 10;
    this.startTimeoutMs = options.startTimeoutMs ?? 10_000;
  }

  async start(launch: ReplicaLaunch, reporter: ReplicaReporter): Promise<{ handle: LocalReplicaHandle }> {
    this.assertOpen();
    const runDir = this.runDirOf(launch);
    const what = `replica ${launch.replica} of workload ${launch.workloadId} (epoch ${launch.epoch})`;
    if (!Array.isArray(launch.spec.command) || launch.spec.command.length === 0 || !launch.spec.command.every((a) => typeof a === 'string')) {
      throw new Error(`cannot start ${what}: its command must be a non-empty list of strings`);
    }
    if (this.starting.has(runDir) || this.followers.has(runDir)) throw new Error(`${what} is already running`);

    this.starting.add(runDir);
    try {
      // mkdir is the fence: it succeeds for exactly one start of an epoch, across processes too. The
      // workload's folder may vanish between the two mkdirs (a sibling replica's cleanup removes it
      // once empty): make it again and retry.
      const created = await mkdirFence(runDir);
      if (!created) {
        const resumed = await this.resume(runDir, what, reporter, launch.outputOffset ?? 0);
        if (resumed) return resumed;
      }

      await writeFile(
        join(runDir, 'launch.json'),
        JSON.stringify({
          command: launch.spec.command,
          env: this.replicaEnv(launch),
          workingDir: launch.spec.workingDir,
          graceSeconds: this.graceSeconds,
        }),
      );
      const result = await this.spawnSupervisor(runDir);
      if ('failure' in result) {
        safely(this.logger, () => reporter.lost(`${what} did not start: ${result.failure}`));
        return { handle: { runDir, supervisorPid: result.supervisorPid, pid: 0 } };
      }
      const handle: LocalReplicaHandle = { runDir, supervisorPid: result.supervisorPid, pid: result.pid };
      safely(this.logger, () => reporter.started(result.pid ? { pid: result.pid } : {}));
      this.follow(handle, reporter, 0);
      return { handle };
    } finally {
      this.starting.delete(runDir);
    }
  }

  async attach(handle: Record<string, unknown>, reporter: ReplicaReporter, options: { outputOffset: number }): Promise<void> {
    this.assertOpen();
    const h = this.parseHandle(handle);
    if (!Number.isSafeInteger(options.outputOffset) || options.outputOffset < 0) {
      throw new Error(`outputOffset must be a byte offset (a whole number ≥ 0), not ${String(options.outputOffset)}`);
    }
    if (this.followers.has(h.runDir)) throw new Error(`the replica in ${h.runDir} is already being followed`);
    if (!existsSync(h.runDir)) {
      safely(this.logger, () => reporter.lost(`its run folder ${h.runDir} is gone`));
      return;
    }
    this.follow(h, reporter, options.outputOffset);
  }

  async stop(handle: Record<string, unknown>, options: { graceSeconds: number }): Promise<void> {
    const h = this.parseHandle(handle);
    const graceSeconds = options.graceSeconds;
    if (!Number.isFinite(graceSeconds) || graceSeconds < 0) throw new Error(`graceSeconds must be a number ≥ 0, not ${String(graceSeconds)}`);
    if (await readExit(h.runDir)) return;

    // The supervisor reads the grace period from here when SIGTERM arrives.
    await writeJsonAtomic(join(h.runDir, 'stop.json'), { graceSeconds, requestedAt: new Date().toISOString() }).catch((err: unknown) => {
      if (errorCode(err) !== 'ENOENT') throw err;
    });
    if (isSupervisorAlive(h.supervisorPid, h.runDir) && sendSignal(h.supervisorPid, 'SIGTERM')) return;

    // No supervisor to do it: signal the command's group from here.
    const pgid = h.pid || (await readPid(join(h.runDir, 'child.pid')));
    if (!isGroupAlive(pgid)) return;
    sendSignal(-pgid, 'SIGTERM');
    // Unref'd: a core shutting down must not wait for it (and a restarted core's stop() can repeat it).
    setTimeout(() => sendSignal(-pgid, 'SIGKILL'), graceSeconds * 1000).unref();
  }

  async cleanup(handle: Record<string, unknown>): Promise<void> {
    const h = this.parseHandle(handle);
    if (!(await readExit(h.runDir))) {
      const pgid = h.pid || (await readPid(join(h.runDir, 'child.pid')));
      if (isSupervisorAlive(h.supervisorPid, h.runDir) || isGroupAlive(pgid)) {
        throw new Error(`cannot clean up the replica in ${h.runDir}: it is still running (stop it first)`);
      }
    }
    this.followers.get(h.runDir)?.stop();
    this.followers.delete(h.runDir);
    await rm(h.runDir, { recursive: true, force: true });
    // The workload's folder goes with its last replica; other replicas' folders keep it.
    await rmdir(dirname(h.runDir)).catch(() => undefined);
  }

  /** Stops following every replica. Processes are left alone: the next core attaches to them. */
  close(): void {
    this.closed = true;
    for (const follower of this.followers.values()) follower.stop();
    this.followers.clear();
  }

  /**
   * A run folder already exists for this epoch: the replica is being delivered again (the core
   * restarted between starting it and recording that it had). Never start the command a second
   * time: follow it when its supervisor lives or it finished (from `outputOffset`, where the stored
   * output ends), report it lost when its supervisor died without an exit record. Only a folder
   * whose supervisor never came to be (the start was cut off before the spawn) is started now:
   * resolves undefined for that.
   */
  private async resume(runDir: string, what: string, reporter: ReplicaReporter, outputOffset: number): Promise<{ handle: LocalReplicaHandle } | undefined> {
    let supervisorPid = await readPid(join(runDir, 'supervisor.pid'));
    if (!supervisorPid && !(await readExit(runDir))) {
      // A supervisor spawned just before a crash writes its pid first thing: give it a moment.
      await new Promise((r) => setTimeout(r, 1500));
      supervisorPid = await readPid(join(runDir, 'supervisor.pid'));
      if (!supervisorPid && !(await readExit(runDir))) {
        this.logger?.info({ runDir }, `${what}: its start was cut off before the supervisor ran; starting it now`);
        return undefined;
      }
    }
    const handle: LocalReplicaHandle = { runDir, supervisorPid, pid: await readPid(join(runDir, 'child.pid')) };
    this.logger?.info({ runDir }, `${what} was started before: following it instead of starting it again`);
    safely(this.logger, () => reporter.started(handle.pid ? { pid: handle.pid } : {}));
    // The follower reports the exit record, or `lost` when the supervisor is gone without one.
    this.follow(handle, reporter, outputOffset);
    return { handle };
  }

  /** Starts the supervisor in a session of its own and waits for its `started <pid>` line. */
  private spawnSupervisor(runDir: string): Promise<SpawnResult> {
    // The supervisor's own troubles (a stack trace) go here, to explain a failure.
    const logPath = join(runDir, 'supervisor.log');
    const stderr = openSync(logPath, 'a');
    let proc;
    try {
      proc = spawn(process.execPath, [SUPERVISOR, runDir], {
        detached: true,
        stdio: ['ignore', 'pipe', stderr],
        cwd: runDir,
        // Not the core's env: NODE_OPTIONS (--import tsx, a debugger) would slow its start, and it needs nothing from it.
        env: pickBaseEnv(),
      });
    } finally {
      closeSync(stderr);
    }
    const child = proc;
    return new Promise((resolvePromise, reject) => {
      let settled = false;
      let line = '';
      /** The first outcome wins, synchronously: a `started` line arriving while a timeout kills the supervisor is ignored. */
      const claim = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        child.stdout?.destroy();
        // The core must not wait for the supervisor; Node still reaps it when it exits.
        child.unref();
        return true;
      };
      const settle = (result: SpawnResult) => {
        if (claim()) resolvePromise(result);
      };
      const timer = setTimeout(() => {
        if (!claim()) return;
        const supervisorPid = child.pid ?? 0;
        void abandon(runDir, supervisorPid).finally(() =>
          resolvePromise({ supervisorPid, failure: `its supervisor did not report within ${this.startTimeoutMs / 1000} s (it was killed)` }),
        );
      }, this.startTimeoutMs);
      child.once('error', (err) => {
        if (claim()) reject(new Error(`cannot start the supervisor for ${runDir}: ${err.message}`));
      });
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        line += chunk;
        const end = line.indexOf('\n');
        if (end < 0) return;
        const match = /^started (\d+)$/.exec(line.slice(0, end));
        settle(
          match
            ? { supervisorPid: child.pid ?? 0, pid: Number(match[1]) }
            : { supervisorPid: child.pid ?? 0, failure: `its supervisor said "${line.slice(0, end)}" instead of "started <pid>"` },
        );
      });
      // 'close', not 'exit': it comes after stdout has been read, so a quick command's `started` line is never missed.
      child.once('close', (code, signal) => {
        const log = readTail(logPath);
        settle({
          supervisorPid: child.pid ?? 0,
          failure: `its supervisor exited (${signal ?? `code ${code}`}) before starting the command${log ? `: ${log}` : ''}`,
        });
      });
    });
  }

  private follow(handle: LocalReplicaHandle, reporter: ReplicaReporter, offset: number): void {
    const follower = new Follower(handle, reporter, offset, this.pollMs, this.logger, () => {
      if (this.followers.get(handle.runDir) === follower) this.followers.delete(handle.runDir);
    });
    this.followers.set(handle.runDir, follower);
    follower.start();
  }

  /** CUDA_VISIBLE_DEVICES is always set: a replica without cards must not see the host's. */
  private replicaEnv(launch: ReplicaLaunch): Record<string, string> {
    return {
      ...pickBaseEnv(),
      CUDA_VISIBLE_DEVICES: launch.devices.map((d) => (d.uuid.startsWith('MIG-') ? d.uuid : d.index)).join(','),
      ...launch.env,
    };
  }

  private runDirOf(launch: ReplicaLaunch): string {
    if (!WORKLOAD_ID.test(launch.workloadId)) throw new Error(`workload id "${launch.workloadId}" may only hold letters, digits, "_" and "-"`);
    for (const [name, value] of [['replica', launch.replica], ['epoch', launch.epoch]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number ≥ 0, not ${String(value)}`);
    }
    return join(this.runsDir, launch.workloadId, `r${launch.replica}-e${launch.epoch}`);
  }

  /** Handles come back from the database: only a run folder of ours is ever signalled or removed. */
  private parseHandle(handle: Record<string, unknown>): LocalReplicaHandle {
    const { runDir, supervisorPid, pid } = handle;
    const valid =
      typeof runDir === 'string' &&
      resolve(runDir) === runDir &&
      runDir.startsWith(this.runsDir + sep) &&
      RUN_DIR_NAME.test(relative(this.runsDir, runDir).split(sep).join('/')) &&
      Number.isSafeInteger(supervisorPid) &&
      Number.isSafeInteger(pid);
    if (!valid) throw new Error(`not a handle of this local executor (runs in ${this.runsDir}): ${JSON.stringify(handle)}`);
    return { runDir, supervisorPid: supervisorPid as number, pid: pid as number };
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the local executor is closed');
  }
}

/** Create `runDir` (and its parent): true when this call made it, false when it existed. */
async function mkdirFence(runDir: string): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    await mkdir(dirname(runDir), { recursive: true });
    try {
      await mkdir(runDir);
      return true;
    } catch (err) {
      if (errorCode(err) === 'EEXIST') return false;
      if (errorCode(err) !== 'ENOENT' || attempt >= 5) throw err;
    }
  }
}

/** Reads one run folder's output as it grows, and its exit record once there is one. */
class Follower {
  private timer: NodeJS.Timeout | undefined;
  private file: FileHandle | undefined;
  private stopped = false;
  private lastLivenessCheck = Date.now();

  constructor(
    private readonly handle: LocalReplicaHandle,
    private readonly reporter: ReplicaReporter,
    private offset: number,
    private readonly pollMs: number,
    private readonly logger: Logger | undefined,
    private readonly onDone: () => void,
  ) {}

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    void this.file?.close().catch(() => undefined);
    this.file = undefined;
  }

  private schedule(ms: number): void {
    if (!this.stopped) this.timer = setTimeout(() => void this.poll(), ms);
  }

  private async poll(): Promise<void> {
    const { runDir, supervisorPid } = this.handle;
    try {
      // The exit record first: once it exists the command has written everything, so one more read gets all of it.
      const exit = await readExit(runDir);
      await this.drain(exit !== undefined);
      if (this.stopped) return;
      if (exit) {
        this.finish(() => this.reporter.exited({ exitCode: exit.exitCode, signal: exit.signal }));
        return;
      }
      if (Date.now() - this.lastLivenessCheck >= LIVENESS_EVERY_MS) {
        this.lastLivenessCheck = Date.now();
        // Looked at again after the liveness check: the supervisor writes the record, then exits.
        if (!isSupervisorAlive(supervisorPid, runDir) && !(await readExit(runDir))) {
          await this.drain(true);
          if (this.stopped) return;
          const pgid = this.handle.pid || (await readPid(join(runDir, 'child.pid')));
          const orphan = isGroupAlive(pgid) ? ` (its command, process group ${pgid}, still runs: stop() ends it)` : '';
          this.finish(() => this.reporter.lost(`the supervisor process ${supervisorPid} is gone without an exit record${orphan}`));
          return;
        }
      }
    } catch (err) {
      if (!this.stopped) this.logger?.warn({ err, runDir }, 'reading a local replica’s output failed; trying again');
    }
    this.schedule(this.pollMs);
  }

  /** Delivers complete lines from `offset` on; with `final`, the unterminated rest too. */
  private async drain(final: boolean): Promise<void> {
    if (!this.file) {
      try {
        this.file = await open(join(this.handle.runDir, 'output.log'), 'r');
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return;
        throw err;
      }
      if (this.stopped) void this.file.close().catch(() => undefined);
    }
    const file = this.file;
    while (!this.stopped) {
      const { size } = await file.stat();
      if (this.stopped || size <= this.offset) return;
      const buffer = Buffer.allocUnsafe(Math.min(size - this.offset, MAX_READ_BYTES));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, this.offset);
      if (this.stopped || bytesRead === 0) return;
      const chunk = buffer.subarray(0, bytesRead);
      let end = final && this.offset + bytesRead >= size ? bytesRead : chunk.lastIndexOf(0x0a) + 1;
      if (end === 0 && bytesRead >= MAX_PARTIAL_LINE_BYTES) end = utf8Boundary(chunk);
      if (end === 0) return;
      this.offset += end;
      const text = chunk.subarray(0, end).toString('utf8');
      const endOffset = this.offset;
      safely(this.logger, () => this.reporter.output(text, endOffset));
    }
  }

  private finish(report: () => void): void {
    this.stop();
    this.onDone();
    safely(this.logger, report);
  }
}

/** The supervisor never reported: kill it and whatever it may have started, so nothing runs unobserved. */
async function abandon(runDir: string, supervisorPid: number): Promise<void> {
  if (isSupervisorAlive(supervisorPid, runDir)) sendSignal(supervisorPid, 'SIGKILL');
  const pgid = await readPid(join(runDir, 'child.pid'));
  if (isGroupAlive(pgid)) sendSignal(-pgid, 'SIGKILL');
}

/**
 * Whether `pid` is the supervisor of `runDir`. A pid alone is not enough: after a restart it may
 * belong to another process by now, or to a zombie; its command line names its run folder.
 * EPERM means another user's process, which cannot be ours.
 */
function isSupervisorAlive(pid: number, runDir: string): boolean {
  if (!(pid > 1)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!HAS_PROC) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(runDir);
  } catch {
    return false;
  }
}

/**
 * Whether process group `pgid` has a live member. kill(0) alone also answers for zombies, which
 * linger where nothing reaps orphans (a container without an init), so with /proc the members are
 * looked at. Only on rare paths (lost, stop without a supervisor, cleanup): a scan of /proc is fine.
 */
function isGroupAlive(pgid: number): boolean {
  if (!(pgid > 1)) return false;
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  if (!HAS_PROC) return true;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // After the name (which may hold spaces and parentheses): state, ppid, pgrp.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') return true;
    } catch {
      // Gone while we looked.
    }
  }
  return false;
}

/** Never to 0, 1 or -1 (the core's own group, init, everything): a bad handle must not become a broadcast. */
function sendSignal(target: number, signal: NodeJS.Signals): boolean {
  if (Math.abs(target) <= 1) return false;
  try {
    process.kill(target, signal);
    return true;
  } catch {
    return false;
  }
}

async function readExit(runDir: string): Promise<ExitRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(runDir, 'exit.json'), 'utf8')) as ExitRecord;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function readPid(path: string): Promise<number> {
  try {
    const pid = Number.parseInt(await readFile(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(value));
  await rename(tmp, path);
}

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-3).join(' | ').slice(-500);
  } catch {
    return '';
  }
}

function pickBaseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of BASE_ENV_KEYS) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return env;
}

/** The longest prefix of `chunk` that does not cut a UTF-8 character in two. */
function utf8Boundary(chunk: Buffer): number {
  let end = chunk.length;
  // Back over continuation bytes (10xxxxxx) to the lead byte of the last character.
  let i = end - 1;
  while (i > 0 && end - i < 4 && ((chunk[i] ?? 0) & 0xc0) === 0x80) i--;
  const lead = chunk[i] ?? 0;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (i + length > end) end = i;
  return end;
}

function safely(logger: Logger | undefined, report: () => void): void {
  try {
    report();
  } catch (err) {
    logger?.error({ err }, 'a replica reporter threw');
  }
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
