// A core restart loses nothing: running replicas (each under its own supervisor, outside the
// core's process) keep running, and the new core re-attaches and reads their output from where
// the old one stopped. A replica that vanished while the core was down is lost (or retried).
// Real core, real database, real processes; the GPUs are SIMULATED (a fake nvidia-smi replays a
// real 8× V100S capture; there is no GPU here).
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestCore } from '@aiplat/testing';
import { alive, CoreLifecycle, events, logText, nodeCommand, scratchDir, submit, transitions, waitForFileJs } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const config = { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1 };
const LINES = 20;

function numbers(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('line '))
    .map((l) => Number(l.slice(5)));
}

describe('core restarts with work running', () => {
  const lifecycle = new CoreLifecycle();
  const scratch = scratchDir();
  let core: TestCore;

  beforeAll(async () => {
    core = await lifecycle.start({ config });
  });
  afterAll(async () => {
    await lifecycle.dispose();
    scratch.remove();
  });

  it('keeps a running job through a restart: its logs continue without gaps or duplicates, and it is scheduled once', async () => {
    // A numbered line every 200 ms for about 4 s.
    const script = `let i = 0; const t = setInterval(() => { console.log('line ' + ++i); if (i === ${LINES}) clearInterval(t); }, 200);`;
    const id = (await submit(core.client, { name: 'counter', command: nodeCommand(script), resources: { gpus: 1 } })).id;
    await waitFor(async () => numbers(await logText(core.client, id)).length >= 3, 30_000, 'three stored lines');

    core = await lifecycle.restart(core);
    const done = await waitForState(core.client, id, ['succeeded', 'failed', 'lost'], 45_000);
    expect(done.state).toBe('succeeded');
    expect(done.exitCode).toBe(0);
    expect(done.placements[0].exitCode).toBe(0);
    expect(numbers(await logText(core.client, id))).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
    expect(await transitions(core.client, id)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    expect(new Set((await events(core.client, id)).map((e) => e.epoch))).toEqual(new Set([0, 1]));
    expect(core.logs.some((l) => l.msg === 're-attached to a running replica' && l.workload === id)).toBe(true);
    expect((await core.client.get(`/api/v1/gpus/reservations?workload=${id}`)).body.items).toEqual([]);
  });

  it('follows a running replica once when two recoveries overlap (an executor plugin enabled again while another plugin changes)', async () => {
    // Regression: recover() looked for the replica, then awaited the database before taking it, so
    // a second recover() meanwhile attached it too; the executor refused the second attach and the
    // replica was reported lost (seen in CI with the Docker executor disabled and enabled).
    const script = `let i = 0; const t = setInterval(() => { console.log('line ' + ++i); if (i === ${LINES}) clearInterval(t); }, 200);`;
    const id = (await submit(core.client, { name: 'overlap', command: nodeCommand(script), resources: { gpus: 1 } })).id;
    await waitFor(async () => numbers(await logText(core.client, id)).length >= 3, 30_000, 'three stored lines');
    // What a disabled executor plugin leaves: its followers stopped, the agent's record of the
    // replica dropped (as reattach() drops it). Reached through private fields: the local executor
    // is the core's own and cannot be disabled like a plugin's.
    const agent = core.core.scheduler.agent as unknown as { live: Map<string, { workloadId: string }>; recover(): Promise<void> };
    const local = (core.core.scheduler as unknown as { local: { followers: Map<string, { stop(): void }> } }).local;
    for (const follower of local.followers.values()) follower.stop();
    local.followers.clear();
    for (const [key, live] of agent.live) if (live.workloadId === id) agent.live.delete(key);
    // Two recoveries at once (the disable's and the enable's plugin events): one follows it again.
    await Promise.all([agent.recover(), agent.recover()]);
    const done = await waitForState(core.client, id, ['succeeded', 'failed', 'lost'], 45_000);
    expect(done.state, done.reason ?? '').toBe('succeeded');
    expect(numbers(await logText(core.client, id))).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
  });

  it('reports a replica killed with its supervisor while the core was down as lost, or retries it', async () => {
    const marker = scratch.file('second-attempt');
    // Waits forever; a second attempt (after the marker is written) finishes at once.
    const waits = nodeCommand(
      `if (require('fs').existsSync(${JSON.stringify(marker)})) console.log('second attempt'); else { console.log('up'); setInterval(() => {}, 1000); }`,
    );
    const doomed = (await submit(core.client, { name: 'doomed', command: waits, resources: { gpus: 1 } })).id;
    const phoenix = (await submit(core.client, { name: 'phoenix', command: waits, resources: { gpus: 1 }, retries: 1 })).id;
    // And one that finishes (exit 7) while no core is there to see it.
    const finish = scratch.file('finish');
    const quiet = (await submit(core.client, { name: 'quiet', command: nodeCommand(`console.log('up'); ${waitForFileJs(finish, "console.log('done while down'); process.exit(7);")}`) })).id;
    for (const id of [doomed, phoenix, quiet]) {
      await waitForState(core.client, id, ['running']);
      await waitFor(async () => (await logText(core.client, id)) === 'up\n', 30_000, 'the replica to be up');
    }
    const handles = (await core.core.database
      .knex('workload_replicas')
      .whereIn('workload_id', [doomed, phoenix])
      .select('workload_id', 'handle')) as { workload_id: string; handle: { supervisorPid: number; pid: number } }[];
    expect(handles).toHaveLength(2);
    const quietHandle = (await core.core.database.knex('workload_replicas').where({ workload_id: quiet }).first('handle')) as { handle: { pid: number } };

    await core.stop({ keep: true });
    // The machine "rebooted" under the replicas: supervisor and command die without an exit record.
    for (const { handle } of handles) {
      expect(alive(handle.supervisorPid)).toBe(true);
      process.kill(handle.supervisorPid, 'SIGKILL');
      process.kill(-handle.pid, 'SIGKILL');
    }
    await waitFor(() => handles.every(({ handle }) => !alive(handle.supervisorPid) && !alive(handle.pid)), 10_000, 'the processes to be gone');
    writeFileSync(marker, '');
    writeFileSync(finish, '');
    await waitFor(() => !alive(quietHandle.handle.pid), 10_000, 'the quiet job to end while the core is down');

    core = await lifecycle.reopen(core, { config });
    const lost = await waitForState(core.client, doomed, ['lost', 'failed', 'succeeded'], 45_000);
    expect(lost.state).toBe('lost');
    expect(lost.reason).toMatch(/^replica 0 was lost: .*supervisor process \d+ is gone without an exit record$/);
    expect(lost.exitCode).toBeNull();
    expect(await logText(core.client, doomed)).toMatch(/^up\naiplat: replica 0 lost: .*gone without an exit record\n$/);
    expect((await core.client.get(`/api/v1/gpus/reservations?workload=${doomed}`)).body.items).toEqual([]);

    const retried = await waitForState(core.client, phoenix, ['succeeded', 'failed', 'lost'], 45_000);
    expect(retried.state).toBe('succeeded');
    expect(retried.attempt).toBe(1);
    const moves = (await events(core.client, phoenix)).filter((e) => e.from !== e.to);
    expect(moves.map((e) => e.to)).toEqual(['pending', 'scheduled', 'running', 'pending', 'scheduled', 'running', 'succeeded']);
    expect(moves[3]!.reason).toMatch(/^retry 1 of 1: replica 0 was lost: .*gone without an exit record$/);
    expect(await logText(core.client, phoenix)).toMatch(/^up\naiplat: replica 0 lost: .*\nsecond attempt\n$/);

    const quietDone = await waitForState(core.client, quiet, ['failed', 'succeeded', 'lost'], 45_000);
    expect(quietDone).toMatchObject({ state: 'failed', exitCode: 7, reason: 'replica 0 exited with code 7' });
    expect(await logText(core.client, quiet)).toBe('up\ndone while down\n');
    expect(await transitions(core.client, quiet)).toEqual(['pending', 'scheduled', 'running', 'failed']);
  });

  it('follows a replica whose start was never recorded (a crash right after the spawn) instead of losing or doubling it', async () => {
    const script = `let i = 0; const t = setInterval(() => { console.log('line ' + ++i); if (i === 15) clearInterval(t); }, 200);`;
    const id = (await submit(core.client, { name: 'unrecorded', command: nodeCommand(script), resources: { gpus: 1 } })).id;
    await waitFor(async () => numbers(await logText(core.client, id)).length >= 3, 30_000, 'three stored lines');
    await core.stop({ keep: true });
    // As if the core had died between spawning the supervisor and storing its handle.
    const db = (await import('knex')).default({ client: 'pg', connection: core.databaseUrl ?? 'postgres://unused' });
    try {
      if (core.databaseUrl) await db('workload_replicas').where({ workload_id: id }).update({ handle: null, state: 'starting' });
    } finally {
      await db.destroy();
    }
    if (!core.databaseUrl) {
      // The embedded database: open it the way the core does.
      const { openDatabase } = await import('../../src/db/database.js');
      const opened = await openDatabase({ dataDir: core.dataDir, logger: silentLogger });
      await opened.knex('workload_replicas').where({ workload_id: id }).update({ handle: null, state: 'starting' });
      await opened.close();
    }
    core = await lifecycle.reopen(core, { config });
    const done = await waitForState(core.client, id, ['succeeded', 'failed', 'lost'], 45_000);
    expect(done.state).toBe('succeeded');
    expect(numbers(await logText(core.client, id))).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(core.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('was started before: following it instead of starting it again'))).toBe(true);
  });
});

const silentLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child() { return silentLogger; } };
