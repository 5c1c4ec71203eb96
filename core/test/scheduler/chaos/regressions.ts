/**
 * Two agent bugs the chaos test found in the scheduler as first landed (4c8f2e4 to 617e056), each
 * reproduced deterministically with the real Agent on a real PostgreSQL database, without a core
 * process or chaos. Both were fixed since (5eeba07); the chaos test keeps them as regression tests:
 * on the old code the first returns { starts: 2, state: 'lost' } and the second leaves gangs stuck.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import pino from 'pino';
import type { EventBus, Executor, Logger } from '@aiplat/plugin-sdk';
import { createTestDatabase } from '@aiplat/testing';
import { migrateCore } from '../../../src/db/migrations.js';
import { Agent } from '../../../src/scheduler/agent.js';
import { LocalExecutor } from '../../../src/scheduler/local/local-executor.js';
import { sleep } from './harness.js';

const logger = pino({ level: 'fatal' }) as unknown as Logger;
const noEvents: EventBus = { publish: async () => 0, subscribe: () => ({ unsubscribe() {} }) };

async function withAgentDatabase<T>(run: (db: Knex) => Promise<T>): Promise<T> {
  const database = await createTestDatabase();
  const db = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 10 } });
  try {
    await migrateCore(db);
    await db('nodes').insert({ id: 'n1', name: 'n1', address: '127.0.0.1', provider: 'local', agent: 'a1', executors: JSON.stringify(['local']) });
    return await run(db);
  } finally {
    await db.destroy();
    await database.drop();
  }
}

async function placedJob(db: Knex, id: string, replicas: number, command: string[]): Promise<void> {
  await db('workloads').insert({
    id,
    name: id,
    kind: 'job',
    team_id: 'default',
    owner: 'core',
    executor: 'local',
    priority: 'normal',
    priority_value: 100,
    state: 'scheduled',
    spec: JSON.stringify({ name: id, kind: 'job', command }),
    replicas,
    epoch: 1,
  });
  await db('workload_replicas').insert(Array.from({ length: replicas }, (_, replica) => ({ workload_id: id, replica, epoch: 1, node_id: 'n1', state: 'placed' })));
}

function agent(db: Knex, executor: Executor): Agent {
  return new Agent({ db, logger, events: noEvents, executors: () => [executor], graceSeconds: 1, onChanges: async () => {}, nudgeScheduler: () => {}, nodes: () => new Set(['n1']) });
}

/**
 * An agent nudged before it recovered (runtime.publish nudges it when a submission commits while
 * the core is still starting). The bug: that early tick claimed a placed replica, and recover(),
 * reading it as `starting` without a handle (the executor was still starting it), put it back to
 * `placed` with an unguarded update, so the same epoch was delivered twice: the executor refused
 * the second start ("is already running") and the agent recorded the replica lost and released its
 * cards while the command ran; had the first run been cleaned up already, it ran a second time.
 * Returns how often the executor was asked to start that one epoch, the journal (a second run of
 * the epoch leaves `<id>.e1.dup`) and how the workload ended.
 */
export async function deliveredBeforeRecovery(): Promise<{ starts: number; journal: string[]; state: string; reason: string | null }> {
  return withAgentDatabase(async (db) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'aiplat-chaos-relaunch-'));
    const journal = path.join(root, 'journal');
    mkdirSync(journal);
    const local = new LocalExecutor({ runsDir: path.join(root, 'runs'), logger });
    let starts = 0;
    // A start that takes a moment before it spawns (a loaded machine, a container executor pulling an image).
    const slow: Executor = {
      name: 'local',
      start: async (launch, reporter) => {
        starts++;
        await sleep(300);
        return local.start(launch, reporter);
      },
      attach: (handle, reporter, options) => local.attach(handle, reporter, options),
      stop: (handle, options) => local.stop(handle, options),
      cleanup: (handle) => local.cleanup(handle),
    };
    const entry = `${journal}/$AIPLAT_WORKLOAD_ID.e$AIPLAT_EPOCH`;
    // Runs half a second: still running when the second delivery comes (which the executor then refuses).
    await placedJob(db, 'w1', 1, ['/bin/sh', '-c', `mkdir "${entry}" 2>/dev/null || : > "${entry}.dup"; sleep 0.5`]);
    const subject = agent(db, slow);
    try {
      // With the bug this tick claims the replica at once, and the executor is still starting it
      // when recover() reads it; fixed, the agent does nothing before it has recovered.
      subject.nudge();
      await sleep(150);
      await subject.start();
      // Until the first run has ended and been recorded, then long enough for a second delivery to start.
      for (let i = 0; i < 100; i++) {
        const w = (await db('workloads').where({ id: 'w1' }).first('state')) as { state: string };
        if (['succeeded', 'failed', 'lost'].includes(w.state)) break;
        await sleep(50);
      }
      for (let i = 0; i < 60 && starts < 2; i++) await sleep(50);
      if (starts > 1) await sleep(1500);
      const w = (await db('workloads').where({ id: 'w1' }).first('state', 'reason')) as { state: string; reason: string | null };
      return { starts, journal: readdirSync(journal).sort(), state: w.state, reason: w.reason };
    } finally {
      await subject.stop();
      local.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
}

/**
 * Gangs whose replicas all fail to start at once (an executor that refuses them: an image that
 * cannot be pulled), so that finish() records their lost replicas concurrently. The bug: each
 * inserted a workload_logs row (FOR KEY SHARE on the workloads row) before settle() asked FOR
 * UPDATE on it, so two replicas of one gang deadlocked; the agent logged "cannot record how a
 * replica ended" and never retried, leaving the replica starting, its workload scheduled and its
 * cards held until a core restart. Returns how many gangs are left neither lost nor failed, and how
 * many replicas never ended.
 */
export async function gangsFailingToStart(gangs = 30): Promise<{ stuck: number; replicasNotEnded: number }> {
  return withAgentDatabase(async (db) => {
    const refusing: Executor = {
      name: 'local',
      start: async () => {
        throw new Error('the image cannot be pulled');
      },
      attach: async () => {},
      stop: async () => {},
    };
    for (let k = 0; k < gangs; k++) await placedJob(db, `w${k}`, 4, ['/bin/true']);
    const subject = agent(db, refusing);
    try {
      await subject.start();
      let stuck = gangs;
      for (let i = 0; i < 60 && stuck > 0; i++) {
        await sleep(100);
        stuck = Number(((await db('workloads').whereNotIn('state', ['lost', 'failed']).count('* as n').first()) as { n: string }).n);
      }
      // Give a fallback tick every chance to settle the rest.
      if (stuck > 0) await sleep(3000);
      stuck = Number(((await db('workloads').whereNotIn('state', ['lost', 'failed']).count('* as n').first()) as { n: string }).n);
      const replicasNotEnded = Number(((await db('workload_replicas').whereNotIn('state', ['lost', 'exited']).count('* as n').first()) as { n: string }).n);
      return { stuck, replicasNotEnded };
    } finally {
      await subject.stop();
    }
  });
}
