/**
 * The local executor against real processes: a supervisor per replica, real signals, real files.
 * Waits are on conditions with generous deadlines (a loaded 2-core CI machine), never fixed sleeps.
 */
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReplicaLaunch, ReplicaReporter } from '@aiplat/plugin-sdk';
import { LocalExecutor, type LocalExecutorOptions, type LocalReplicaHandle } from './local-executor.js';

const HAS_PROC = existsSync('/proc/self/stat');
const WAIT_MS = 20_000;

let runsDir: string;
let executors: LocalExecutor[];
let handles: LocalReplicaHandle[];
let seq = 0;

beforeEach(async () => {
  runsDir = await mkdtemp(join(tmpdir(), 'aiplat-local-'));
  executors = [];
  handles = [];
});

afterEach(async () => {
  for (const executor of executors) executor.close();
  // Whatever a failed test left running.
  for (const { supervisorPid, pid } of handles) {
    if (supervisorPid > 1) kill(supervisorPid, 'SIGKILL');
    if (pid > 1) kill(-pid, 'SIGKILL');
  }
  await rm(runsDir, { recursive: true, force: true });
});

function executor(options: Partial<LocalExecutorOptions> = {}): LocalExecutor {
  const created = new LocalExecutor({ runsDir, pollMs: 20, ...options });
  executors.push(created);
  return created;
}

function launchOf(command: string[], extra: Partial<ReplicaLaunch> = {}): ReplicaLaunch {
  return {
    workloadId: `w${++seq}`,
    replica: 0,
    epoch: 1,
    nodeId: 'local',
    simulated: false,
    nodeLabels: {},
    spec: { name: 'test', kind: 'job', command },
    env: {},
    ports: {},
    devices: [],
    ...extra,
  };
}

/** A Node program as the command: no shell between us and it. */
function node(script: string): string[] {
  return [process.execPath, '-e', script];
}

async function start(ex: LocalExecutor, launch: ReplicaLaunch, rec: Recorder): Promise<LocalReplicaHandle> {
  const { handle } = await ex.start(launch, rec.reporter);
  handles.push(handle);
  return handle;
}

/** Records what a reporter hears, and checks the contract as it goes. */
class Recorder {
  started: { pid?: number } | undefined;
  exit: { exitCode: number | null; signal?: string | null } | undefined;
  lost: string | undefined;
  text = '';
  lastOffset: number;
  outputCalls = 0;
  readonly violations: string[] = [];

  constructor(fromOffset = 0) {
    this.lastOffset = fromOffset;
  }

  readonly reporter: ReplicaReporter = {
    started: (info) => {
      if (this.started) this.violations.push('started twice');
      this.started = info;
    },
    output: (text, endOffset) => {
      if (this.exit || this.lost) this.violations.push('output after the end');
      if (endOffset - this.lastOffset !== Buffer.byteLength(text)) {
        this.violations.push(`output "${text}" ends at ${endOffset}, but the previous ended at ${this.lastOffset}`);
      }
      this.text += text;
      this.lastOffset = endOffset;
      this.outputCalls++;
    },
    exited: (info) => {
      if (this.exit || this.lost) this.violations.push('a second end (exited)');
      this.exit = info;
    },
    lost: (reason) => {
      if (this.exit || this.lost) this.violations.push('a second end (lost)');
      this.lost = reason;
    },
  };

  get lines(): string[] {
    return this.text.split('\n').filter((line) => line !== '');
  }

  async exited(): Promise<{ exitCode: number | null; signal?: string | null }> {
    await waitFor(() => this.exit ?? this.lost, 'the replica to end');
    if (this.lost) throw new Error(`reported lost: ${this.lost}`);
    expect(this.violations).toEqual([]);
    return this.exit!;
  }
}

async function waitFor<T>(check: () => T | undefined | null | false, what: string, timeoutMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); it is gone for our purposes.
    return !HAS_PROC || procStat(pid).state !== 'Z';
  } catch {
    return false;
  }
}

function kill(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch {
    // Already gone.
  }
}

/** state, ppid, pgrp and session of a process, from /proc/<pid>/stat (the name may hold spaces and parentheses). */
function procStat(pid: number): { state: string; ppid: number; pgrp: number; session: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const [state, ppid, pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: state!, ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session) };
}

/** A command that says `ready`, then waits to be signalled. */
const WAITS = "console.log('ready'); setInterval(() => {}, 1000)";

describe('LocalExecutor', () => {
  it('runs a job: output lines in order, offsets that add up, exit code 0', async () => {
    const rec = new Recorder();
    const handle = await start(executor(), launchOf(node("for (let i = 0; i < 200; i++) console.log('line ' + i)")), rec);

    expect(rec.started?.pid).toBe(handle.pid);
    expect(handle.pid).toBeGreaterThan(1);
    expect(await rec.exited()).toEqual({ exitCode: 0, signal: null });
    expect(rec.lines).toEqual(Array.from({ length: 200 }, (_, i) => `line ${i}`));
    expect(rec.lastOffset).toBe(statSync(join(handle.runDir, 'output.log')).size);
  });

  it('records a non-zero exit code', async () => {
    const rec = new Recorder();
    await start(executor(), launchOf(node("console.log('failing'); process.exit(7)")), rec);
    expect(await rec.exited()).toEqual({ exitCode: 7, signal: null });
    expect(rec.lines).toEqual(['failing']);
  });

  it('captures stdout and stderr, and a last line without a newline once the command exits', async () => {
    const rec = new Recorder();
    await start(executor(), launchOf(node("console.log('to stdout'); console.error('to stderr'); process.stdout.write('no newline')")), rec);
    await rec.exited();
    expect(rec.text).toBe('to stdout\nto stderr\nno newline');
  });

  it('gives the command launch.env and CUDA_VISIBLE_DEVICES, and none of the core’s other variables', async () => {
    process.env.AIPLAT_LOCAL_TEST_SECRET = 'do not leak';
    try {
      const show = node(
        'const e = process.env; console.log(JSON.stringify({ cuda: e.CUDA_VISIBLE_DEVICES, mine: e.MY_VAR, secret: e.AIPLAT_LOCAL_TEST_SECRET, path: !!e.PATH }))',
      );
      const ex = executor();
      const explicit = new Recorder();
      await start(ex, launchOf(show, { env: { CUDA_VISIBLE_DEVICES: '1,3', MY_VAR: 'hello' } }), explicit);
      const fromDevices = new Recorder();
      await start(ex, launchOf(show, { devices: [{ index: 2, uuid: 'GPU-2' }, { index: 5, uuid: 'GPU-5' }] }), fromDevices);
      const cpuOnly = new Recorder();
      await start(ex, launchOf(show), cpuOnly);
      await Promise.all([explicit.exited(), fromDevices.exited(), cpuOnly.exited()]);

      expect(JSON.parse(explicit.text)).toEqual({ cuda: '1,3', mine: 'hello', path: true });
      expect(JSON.parse(fromDevices.text)).toEqual({ cuda: '2,5', path: true });
      // Empty, not unset: a CPU-only replica must not see the host's cards.
      expect(JSON.parse(cpuOnly.text)).toEqual({ cuda: '', path: true });
    } finally {
      delete process.env.AIPLAT_LOCAL_TEST_SECRET;
    }
  });

  it('never runs the command through a shell: $(...), ; and backticks are plain arguments', async () => {
    const rec = new Recorder();
    await start(executor(), launchOf(['/bin/echo', '$(whoami)', ';', '`id`']), rec);
    await rec.exited();
    expect(rec.text).toBe('$(whoami) ; `id`\n');
  });

  it('runs the command as its working directory says', async () => {
    const rec = new Recorder();
    await start(executor(), launchOf(node('console.log(process.cwd())'), { spec: { name: 't', kind: 'job', command: node('console.log(process.cwd())'), workingDir: runsDir } }), rec);
    await rec.exited();
    expect(rec.text).toBe(`${runsDir}\n`);
  });

  it.runIf(HAS_PROC)('puts the command in its own process group, and the supervisor in another session', async () => {
    const rec = new Recorder();
    const ex = executor();
    const handle = await start(ex, launchOf(node(WAITS)), rec);
    await waitFor(() => rec.text.includes('ready'), 'the command to start');

    const child = procStat(handle.pid);
    const supervisor = procStat(handle.supervisorPid);
    const core = procStat(process.pid);
    expect(child.ppid).toBe(handle.supervisorPid);
    expect(child.pgrp).toBe(handle.pid);
    expect(supervisor.pgrp).toBe(handle.supervisorPid);
    expect(supervisor.session).toBe(handle.supervisorPid);
    expect(supervisor.pgrp).not.toBe(core.pgrp);
    expect(supervisor.session).not.toBe(core.session);

    await ex.stop(handle, { graceSeconds: 5 });
    expect((await rec.exited()).signal).toBe('SIGTERM');
  });

  describe('stop', () => {
    it('sends SIGTERM: a command that saves a checkpoint and exits 0 is heard out', async () => {
      const rec = new Recorder();
      const ex = executor();
      const handle = await start(
        ex,
        launchOf(node("process.on('SIGTERM', () => { console.log('saving checkpoint'); process.exit(0); }); " + WAITS)),
        rec,
      );
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      const stoppedAt = Date.now();
      await ex.stop(handle, { graceSeconds: 60 });
      expect(await rec.exited()).toEqual({ exitCode: 0, signal: null });
      expect(rec.lines).toEqual(['ready', 'saving checkpoint']);
      expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    });

    it('sends SIGKILL once the grace period is over to a command that ignores SIGTERM', async () => {
      const rec = new Recorder();
      const ex = executor();
      const handle = await start(ex, launchOf(node("process.on('SIGTERM', () => console.log('ignoring SIGTERM')); " + WAITS)), rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      const stoppedAt = Date.now();
      await ex.stop(handle, { graceSeconds: 1 });
      expect(await rec.exited()).toEqual({ exitCode: null, signal: 'SIGKILL' });
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(900);
      expect(rec.lines).toEqual(['ready', 'ignoring SIGTERM']);
    });

    it('reaches the whole process group, not just the command', async () => {
      const rec = new Recorder();
      const ex = executor();
      const handle = await start(ex, launchOf(['sh', '-c', 'sleep 300 & echo "background $!"; wait']), rec);
      const background = Number((await waitFor(() => /background (\d+)/.exec(rec.text), 'the background pid'))[1]);
      expect(alive(background)).toBe(true);

      await ex.stop(handle, { graceSeconds: 5 });
      await rec.exited();
      await waitFor(() => !alive(background), 'the background process to end');
    });

    it('is a no-op for a replica that has exited', async () => {
      const rec = new Recorder();
      const ex = executor();
      const handle = await start(ex, launchOf(['/bin/true']), rec);
      await rec.exited();
      await expect(ex.stop(handle, { graceSeconds: 1 })).resolves.toBeUndefined();
      expect(existsSync(join(handle.runDir, 'stop.json'))).toBe(false);
    });
  });

  it('ends what a command left running in its group when it exits', async () => {
    const rec = new Recorder();
    await start(executor(), launchOf(['sh', '-c', 'sleep 300 & echo "background $!"']), rec);
    expect(await rec.exited()).toEqual({ exitCode: 0, signal: null });
    const background = Number(/background (\d+)/.exec(rec.text)![1]);
    await waitFor(() => !alive(background), 'the left-over process to end');
  });

  it('survives a core restart: a new executor attaches at the delivered offset, without gaps or duplicates', async () => {
    const ticks = node("let i = 0; const t = setInterval(() => { console.log('tick ' + i); if (++i === 20) clearInterval(t); }, 100)");
    const before = new Recorder();
    const first = executor();
    const { runDir, supervisorPid, pid } = await start(first, launchOf(ticks), before);
    await waitFor(() => before.lines.length >= 3, 'a few ticks');

    first.close();
    const offset = before.lastOffset;
    const deliveredBefore = before.lines;
    // Output written while no core was there is delivered later.
    await waitFor(() => statSync(join(runDir, 'output.log')).size > offset + 20, 'ticks while the core is down');

    const after = new Recorder(offset);
    // The handle goes through the database as JSON.
    const stored = JSON.parse(JSON.stringify({ runDir, supervisorPid, pid })) as Record<string, unknown>;
    await executor().attach(stored, after.reporter, { outputOffset: offset });
    expect(await after.exited()).toEqual({ exitCode: 0, signal: null });

    expect(after.started).toBeUndefined();
    expect(before.lines).toEqual(deliveredBefore);
    expect(before.exit).toBeUndefined();
    expect([...before.lines, ...after.lines]).toEqual(Array.from({ length: 20 }, (_, i) => `tick ${i}`));
  });

  describe('fencing', () => {
    it('refuses a second start of a running replica epoch; the command runs once', async () => {
      const counter = join(runsDir, 'runs.txt');
      const launch = launchOf(node(`require('fs').appendFileSync(${JSON.stringify(counter)}, 'x'); ${WAITS}`));
      const ex = executor();
      const rec = new Recorder();
      const handle = await start(ex, launch, rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      await expect(ex.start(launch, new Recorder().reporter)).rejects.toThrow(/is already running/);
      // Another core process (or one restarted before it recorded the start) is fenced by the run
      // folder: it follows the running command instead of starting it again.
      const redelivered = new Recorder();
      const again = await executor().start(launch, redelivered.reporter);
      expect(again.handle.pid).toBe(handle.pid);
      expect(redelivered.started?.pid).toBe(handle.pid);
      expect(readFileSync(counter, 'utf8')).toBe('x');

      await ex.stop(handle, { graceSeconds: 5 });
      await rec.exited();
      expect(await redelivered.exited()).toEqual(await rec.exited());
    });

    it('lets only one of two simultaneous starts through', async () => {
      const launch = launchOf(node(WAITS));
      const ex = executor();
      const recs = [new Recorder(), new Recorder()];
      const results = await Promise.allSettled(recs.map((rec) => ex.start(launch, rec.reporter)));
      const fulfilled = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.handle] : []));
      expect(fulfilled).toHaveLength(1);
      handles.push(...fulfilled);
      expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: expect.objectContaining({ message: expect.stringMatching(/already running/) }) });
      await ex.stop(fulfilled[0]!, { graceSeconds: 5 });
    });

    it('follows a finished epoch instead of running it again', async () => {
      const counter = join(runsDir, 'runs.txt');
      const launch = launchOf(node(`require('fs').appendFileSync(${JSON.stringify(counter)}, 'x'); console.log('done')`));
      const first = new Recorder();
      await start(executor(), launch, first);
      await first.exited();

      const again = new Recorder();
      await start(executor(), launch, again);
      expect(await again.exited()).toEqual({ exitCode: 0, signal: null });
      expect(again.started?.pid).toBe(first.started?.pid);
      expect(again.text).toBe('done\n');
      expect(readFileSync(counter, 'utf8')).toBe('x');
    });

    it('runs the next epoch of the same replica', async () => {
      const ex = executor();
      const launch = launchOf(['/bin/echo', 'epoch']);
      const one = new Recorder();
      const two = new Recorder();
      await start(ex, launch, one);
      await one.exited();
      await start(ex, { ...launch, epoch: 2 }, two);
      await two.exited();
      expect(two.text).toBe('epoch\n');
    });
  });

  describe('lost', () => {
    it('is reported when the supervisor and the command are killed', async () => {
      const rec = new Recorder();
      const handle = await start(executor(), launchOf(node(WAITS)), rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      process.kill(handle.supervisorPid, 'SIGKILL');
      process.kill(-handle.pid, 'SIGKILL');
      await waitFor(() => rec.lost ?? rec.exit, 'the replica to be reported lost');
      expect(rec.exit).toBeUndefined();
      expect(rec.lost).toMatch(new RegExp(`supervisor process ${handle.supervisorPid} is gone without an exit record$`));
      expect(rec.violations).toEqual([]);
    });

    it('is reported when the supervisor does not report in time, and nothing is left running', async () => {
      const rec = new Recorder();
      const handle = await start(executor({ startTimeoutMs: 1 }), launchOf(node(WAITS)), rec);
      expect(rec.started).toBeUndefined();
      expect(rec.lost).toMatch(/did not start: its supervisor did not report within 0.001 s \(it was killed\)/);
      expect(handle.pid).toBe(0);
      await waitFor(() => !alive(handle.supervisorPid), 'the supervisor to be gone');
      const childPidFile = join(handle.runDir, 'child.pid');
      if (existsSync(childPidFile)) {
        const pid = Number(readFileSync(childPidFile, 'utf8'));
        await waitFor(() => !alive(pid), 'the command to be gone');
      }
    });

    it('is reported when only the supervisor dies, and stop() then ends the orphaned command', async () => {
      const rec = new Recorder();
      const ex = executor();
      const handle = await start(ex, launchOf(node(WAITS)), rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      process.kill(handle.supervisorPid, 'SIGKILL');
      await waitFor(() => rec.lost, 'the replica to be reported lost');
      expect(rec.lost).toMatch(/still runs/);

      await ex.stop(handle, { graceSeconds: 5 });
      await waitFor(() => !alive(handle.pid), 'the orphaned command to end');
    });
  });

  describe('a command that cannot start', () => {
    it('exits 127 with a readable line when the program does not exist', async () => {
      const rec = new Recorder();
      const handle = await start(executor(), launchOf(['/nonexistent/aiplat-test-binary', '--flag']), rec);
      expect(await rec.exited()).toEqual({ exitCode: 127, signal: null });
      expect(rec.started).toEqual({});
      expect(handle.pid).toBe(0);
      expect(rec.text).toBe('aiplat: cannot start "/nonexistent/aiplat-test-binary": no such file or directory (is it installed, and on PATH?)\n');
    });

    it('exits 126 when the program is not executable', async () => {
      const script = join(runsDir, 'not-executable.sh');
      writeFileSync(script, '#!/bin/sh\necho hi\n');
      chmodSync(script, 0o644);
      const rec = new Recorder();
      await start(executor(), launchOf([script]), rec);
      expect(await rec.exited()).toEqual({ exitCode: 126, signal: null });
      expect(rec.text).toMatch(/^aiplat: cannot start ".*not-executable\.sh": permission denied/);
    });

    it('says so when the working directory does not exist', async () => {
      const rec = new Recorder();
      const missing = join(runsDir, 'missing');
      await start(executor(), launchOf([], { spec: { name: 't', kind: 'job', command: ['/bin/true'], workingDir: missing } }), rec);
      expect((await rec.exited()).exitCode).toBe(127);
      expect(rec.text).toBe(`aiplat: cannot start "/bin/true": working directory "${missing}" does not exist\n`);
    });
  });

  describe('inputs and housekeeping', () => {
    it('refuses workload ids that could leave the runs folder, and empty commands', async () => {
      const ex = executor();
      await expect(ex.start(launchOf(['/bin/true'], { workloadId: '../escape' }), new Recorder().reporter)).rejects.toThrow(/workload id/);
      await expect(ex.start(launchOf([]), new Recorder().reporter)).rejects.toThrow(/non-empty list/);
      await expect(ex.start(launchOf(['/bin/true'], { epoch: -1 }), new Recorder().reporter)).rejects.toThrow(/epoch/);
    });

    it('refuses handles that are not its own', async () => {
      const ex = executor();
      const foreign = { runDir: '/etc', supervisorPid: 1, pid: 1 };
      await expect(ex.stop(foreign, { graceSeconds: 1 })).rejects.toThrow(/not a handle/);
      await expect(ex.cleanup(foreign)).rejects.toThrow(/not a handle/);
      await expect(ex.attach({ ...foreign, runDir: join(runsDir, 'w', '..', '..', 'x', 'r0-e1') }, new Recorder().reporter, { outputOffset: 0 })).rejects.toThrow(/not a handle/);
    });

    it('cleans up only a replica that has ended', async () => {
      const ex = executor();
      const rec = new Recorder();
      const handle = await start(ex, launchOf(node(WAITS)), rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');
      await expect(ex.cleanup(handle)).rejects.toThrow(/still running/);

      await ex.stop(handle, { graceSeconds: 5 });
      await rec.exited();
      await ex.cleanup(handle);
      expect(existsSync(handle.runDir)).toBe(false);
    });

    it('leaves replicas running when it closes, and refuses new work', async () => {
      const ex = executor();
      const rec = new Recorder();
      const handle = await start(ex, launchOf(node(WAITS)), rec);
      await waitFor(() => rec.text.includes('ready'), 'the command to start');

      ex.close();
      expect(alive(handle.supervisorPid)).toBe(true);
      expect(alive(handle.pid)).toBe(true);
      await expect(ex.start(launchOf(['/bin/true']), new Recorder().reporter)).rejects.toThrow(/closed/);

      await executor().stop(handle, { graceSeconds: 5 });
      await waitFor(() => existsSync(join(handle.runDir, 'exit.json')), 'the exit record');
      expect(rec.exit).toBeUndefined();
    });
  });
});
