// The scheduler under chaos: a real core process on PostgreSQL with 4 simulated nodes × 8 V100S
// (32 cards; SIMULATED, no GPU here) takes a stream of reservation attempts from 8 concurrent
// submitters while a harness SIGKILLs it at random moments and starts it again on the same data
// folder and database (the local executor's supervisors live on; the next core re-attaches).
// Afterwards an offline checker (chaos/checker.ts) reads the database and the files the replicas
// left and proves: (a) no two reservations of one device ever overlapped in memory × time, and the
// exclusion constraint refuses one; (b) every accepted workload is accounted for; (c) no workload
// ever ran twice at once, nor on cards it no longer held; (d) no live reservation outlived its work.
//
// Quick mode by default (up to 1,000 attempts, ≥ 10 kills: 65 to 100 s on a fast 2-core machine,
// up to 300 s on a slow one; the budget may end it after 500 attempts, and says so); CHAOS_FULL=1
// for exactly 10,000 attempts and ≥ 100 kills (17.5 minutes there, with other work loading the machine).
// Knobs: CHAOS_ATTEMPTS, CHAOS_KILLS, CHAOS_SEED (replay a run's mix and kill times),
// CHAOS_PREEMPTION=1 (let high priority stop low), CHAOS_KEEP=1 (keep the database, the folders and
// every process's log). It also keeps, as deterministic regression tests (chaos/regressions.ts),
// two agent bugs it found in the scheduler as first landed.
//
// Needs PostgreSQL (TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres): it runs
// in the server pass of `npm test` (*.services.test.ts) and fails, saying so, when none answers.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@aiplat/testing';
import { reachable } from '../../../scripts/reachable.mjs';
import { ChaosCore, chaosSpec, login, rng, sleep, submitAll } from './chaos/harness.js';
import { deliveredBeforeRecovery, gangsFailingToStart } from './chaos/regressions.js';
import {
  findings,
  heldRanges,
  offlineCheck,
  reservationOverlaps,
  runOverlaps,
  runsOutsideTheirReservation,
  type Finding,
  type HeldRange,
  type RunRecord,
} from './chaos/checker.js';

const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const FULL = process.env.CHAOS_FULL === '1';
const ATTEMPTS = Number(process.env.CHAOS_ATTEMPTS ?? (FULL ? 10_000 : 1_000));
const MIN_KILLS = Number(process.env.CHAOS_KILLS ?? (FULL ? 100 : 10));
/** Quick mode: the attempts the budget must leave room for (the rest are made if time allows). Full mode makes every one. */
const MIN_ATTEMPTS = FULL ? ATTEMPTS : Math.min(ATTEMPTS, Number(process.env.CHAOS_MIN_ATTEMPTS ?? 500));
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PREEMPTION = process.env.CHAOS_PREEMPTION === '1';
const KEEP = process.env.CHAOS_KEEP === '1';
const NODES = 4;
const CARDS = NODES * 8;
const SUBMITTERS = 8;
/** The whole test's budget: quick mode takes 65–100 s alone; inside `npm test` it shares two cores with the other server-pass suites. */
const TIMEOUT_MS = FULL ? 3 * 3600_000 : 330_000;
/** How long the queue may take to drain once the attempts and kills are over. */
const DRAIN_MS = FULL ? 600_000 : 60_000;

const databaseUp = await reachable(DATABASE_URL, 5432);

function pgKnex(url: string): Knex {
  return knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });
}

describe('the offline checker catches what it is there to catch', () => {
  let drop: (() => Promise<void>) | undefined;
  let db: Knex | undefined;

  beforeAll(async () => {
    if (!databaseUp) return;
    process.env.TEST_DATABASE_URL ??= DATABASE_URL;
    const created = await createTestDatabase();
    drop = created.drop;
    db = pgKnex(created.url);
  });
  afterAll(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('finds a planted overlap in a hand-made history (a throwaway table without the constraint)', async () => {
    expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
    // The ledger's columns the checker reads, and no exclusion constraint to stop the bad rows.
    await db!.raw(`create table scratch_reservations (id bigserial primary key, device_id text not null, workload_id text not null,
                   replica int not null, epoch int not null, memory int4range not null, held tstzrange not null)`);
    const t = (s: number) => `2026-01-01 00:00:${String(s).padStart(2, '0')}+00`;
    const rows: [string, string, number, [number, number], [number, number | null]][] = [
      // device 0: a whole card, then two slices after its release: fine.
      ['n/0', 'w1', 1, [0, 32510], [0, 10]],
      ['n/0', 'w2', 1, [0, 16000], [10, 20]],
      ['n/0', 'w3', 1, [16000, 32510], [10, null]],
      // device 1: slices side by side (fine), then one that overlaps w5's memory while it is held.
      ['n/1', 'w4', 1, [0, 8000], [0, 30]],
      ['n/1', 'w5', 1, [8000, 16000], [0, 30]],
      ['n/1', 'w6', 1, [12000, 20000], [29, 40]],
      // device 2: same memory, times that only touch (a range's upper bound is exclusive): fine.
      ['n/2', 'w7', 1, [0, 4000], [0, 5]],
      ['n/2', 'w8', 1, [0, 4000], [5, 9]],
      // an empty held range (released within the microsecond) overlaps nothing, as in the constraint.
      ['n/2', 'w9', 1, [0, 4000], [6, 6]],
    ];
    for (const [device, workload, epoch, [lo, hi], [from, to]] of rows) {
      await db!.raw(`insert into scratch_reservations (device_id, workload_id, replica, epoch, memory, held) values (?, ?, 0, ?, int4range(?, ?), tstzrange(?, ?))`, [
        device,
        workload,
        epoch,
        lo,
        hi,
        t(from),
        to === null ? null : t(to),
      ]);
    }
    const found = await reservationOverlaps(db!, 'scratch_reservations');
    expect(found.count).toBe(1);
    expect(found.examples[0]).toMatchObject({ device_id: 'n/1', a_workload: 'w5', b_workload: 'w6' });
    // A second, later overlap on another device is counted too.
    await db!.raw(`insert into scratch_reservations (device_id, workload_id, replica, epoch, memory, held) values ('n/0', 'w10', 0, 1, int4range(30000, 30001), tstzrange(?, null))`, [t(50)]);
    expect((await reservationOverlaps(db!, 'scratch_reservations')).count).toBe(2);

    // The held time per epoch, as the run check reads it: the earliest start, the latest end, open while live.
    const held = await heldRanges(db!, 'scratch_reservations');
    expect(held.get('w1/0/1')).toMatchObject({ lo: Date.parse('2026-01-01T00:00:00Z'), hi: Date.parse('2026-01-01T00:00:10Z') });
    expect(held.get('w3/0/1')?.hi).toBeNull();
    expect(held.has('w9/0/1')).toBe(false);
  });

  it('finds runs of one replica under two epochs at once, a run past its release, and a run without a reservation', () => {
    const run = (workloadId: string, replica: number, epoch: number, start: number, end?: number): RunRecord => ({ workloadId, replica, epoch, start, ...(end === undefined ? {} : { end }), sources: ['hand-made'] });
    const clean = [run('a', 0, 1, 0, 10), run('a', 0, 2, 11, 20), run('a', 1, 1, 0, 20), run('b', 0, 1, 5, 6)];
    expect(runOverlaps(clean, 1000)).toEqual([]);
    // Epoch 1 still ran when epoch 2 started; and epoch 3 of replica 1 has no end (counted as running until now).
    const bad = [...clean, run('a', 0, 3, 19, 25), run('c', 1, 1, 0), run('c', 1, 2, 500, 510)];
    const overlaps = runOverlaps(bad, 1000);
    expect(overlaps.map((o) => `${o.workloadId}/${o.replica}: ${o.a.epoch}+${o.b.epoch}`).sort()).toEqual(['a/0: 2+3', 'c/1: 1+2']);
    // A widely spanning early run overlapping a later one that is not its direct successor.
    expect(runOverlaps([run('d', 0, 1, 0, 100), run('d', 0, 2, 10, 20), run('d', 0, 3, 50, 60)], 1000)).toHaveLength(2);

    const held = new Map<string, HeldRange>([
      ['a/0/1', { workload_id: 'a', replica: 0, epoch: 1, lo: 0, hi: 12, reasons: 'exited 0' }],
      ['a/0/2', { workload_id: 'a', replica: 0, epoch: 2, lo: 10, hi: 15, reasons: 'exited 0' }],
      ['a/1/1', { workload_id: 'a', replica: 1, epoch: 1, lo: 0, hi: null, reasons: null }],
    ]);
    const unheld = runsOutsideTheirReservation(clean, held, new Set(['a']), 1000);
    expect(unheld.map((u) => `${u.run.workloadId}/${u.run.replica}/${u.run.epoch}`)).toEqual(['a/0/2']);
    expect(unheld[0]!.why).toMatch(/after its cards were released/);
    expect(runsOutsideTheirReservation([run('a', 0, 9, 0, 1)], held, new Set(['a']), 1000)[0]!.why).toMatch(/no reservation/);
    // Work without GPUs needs no reservation.
    expect(runsOutsideTheirReservation([run('b', 0, 1, 0, 1)], held, new Set(['a']), 1000)).toEqual([]);
  });

  it('turns every kind of violation into a finding, and a clean report into none', () => {
    const clean = {
      overlaps: { count: 0, examples: [] },
      constraint: { definition: 'EXCLUDE USING gist (device_id WITH =, memory WITH &&, held WITH &&)', insertRefusedWith: '23P01', probed: '1' },
      accepted: { states: { succeeded: 2 }, missing: [], violations: [] },
      runs: { recorded: 2, runFolders: 0, duplicates: [], overlaps: [], outsideReservation: [] },
      stray: { ofTerminal: [], orphans: [] },
      reservations: 2,
    };
    expect(findings(clean)).toEqual([]);
    const run: RunRecord = { workloadId: 'x', replica: 0, epoch: 1, start: 1, end: 20, sources: ['journal start', 'journal end'] };
    const dirty = {
      ...clean,
      overlaps: { count: 1, examples: [] },
      constraint: { definition: undefined, insertRefusedWith: undefined, probed: undefined },
      accepted: { states: {}, missing: ['w9'], violations: ['w8 is running but none of its replicas is live'] },
      runs: {
        recorded: 2,
        runFolders: 0,
        duplicates: [{ name: 'x.r0.e1.dup.7', at: 5 }],
        overlaps: [{ workloadId: 'x', replica: 0, a: { epoch: 1, start: 0, end: 10 }, b: { epoch: 2, start: 5, end: 12 } }],
        outsideReservation: [{ run, held: { workload_id: 'x', replica: 0, epoch: 1, lo: 0, hi: 10, reasons: 'exited 0' }, why: 'it ran on 10 ms after its cards were released' }],
      },
      stray: { ofTerminal: ['r1 (w7 succeeded, device n/0)'], orphans: ['r2 (w6 replica 0 epoch 1, replica row: exited epoch 1)'] },
    };
    const found = findings(dirty);
    expect(found.map((f) => f.check)).toEqual(['a', 'a', 'a', 'b', 'b', 'c', 'c', 'c', 'd', 'd']);
    expect(found.find((f) => f.message.includes('ran outside'))?.message).toMatch(/released: exited 0/);
  });
});

// Bugs this test found in the agent, reproduced without chaos (they fail on 617e056 and before).
describe('agent bugs the chaos found, reproduced deterministically', () => {
  it('delivers an epoch once, even when the agent is nudged before it has recovered', async () => {
    expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
    process.env.TEST_DATABASE_URL ??= DATABASE_URL;
    expect(await deliveredBeforeRecovery()).toEqual({ starts: 1, journal: ['w1.e1'], state: 'succeeded', reason: null });
  });

  it('records every lost replica of gangs that all fail to start at once (no deadlock leaves one behind)', async () => {
    expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
    process.env.TEST_DATABASE_URL ??= DATABASE_URL;
    expect(await gangsFailingToStart()).toEqual({ stuck: 0, replicasNotEnded: 0 });
  });
});

describe('the scheduler under chaos (SIGKILLed core, real PostgreSQL)', () => {
  let core: ChaosCore | undefined;
  let db: Knex | undefined;
  let drop: (() => Promise<void>) | undefined;
  let root: string | undefined;
  let databaseName: string | undefined;

  afterAll(async () => {
    if (core?.alive) await core.kill();
    core?.close();
    await db?.destroy();
    if (KEEP) {
      console.log(`chaos: kept ${root} (core.log: every process's output) and the database ${databaseName}`);
      return;
    }
    await drop?.();
    // Replicas still running (sleep 3 at most) finish on their own; their folders go now.
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it(
    `keeps its invariants through ${MIN_ATTEMPTS === ATTEMPTS ? '' : `${MIN_ATTEMPTS.toLocaleString('en-US')} to `}${ATTEMPTS.toLocaleString('en-US')} reservation attempts and at least ${MIN_KILLS} SIGKILLs`,
    async () => {
      expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
      const began = performance.now();
      process.env.TEST_DATABASE_URL ??= DATABASE_URL;
      const database = await createTestDatabase();
      drop = database.drop;
      databaseName = new URL(database.url).pathname.slice(1);
      db = pgKnex(database.url);
      root = mkdtempSync(path.join(os.tmpdir(), 'aiplat-chaos-'));
      const dataDir = path.join(root, 'data');
      const journalDir = path.join(root, 'journal');
      mkdirSync(journalDir);
      console.log(`chaos: seed ${SEED} (CHAOS_SEED=${SEED} replays the mix and the kill times), ${root}`);

      core = new ChaosCore(ChaosCore.environment({ dataDir, databaseUrl: database.url, nodes: NODES, preemption: PREEMPTION }), path.join(root, 'core.log'));
      const chaos = core;
      await chaos.start();
      let token = await login(chaos);
      // The core listens before its first discovery is written: wait for the 32 cards.
      for (let i = 0; ; i++) {
        const gpus = Number(((await db('gpu_devices').where({ present: true }).count('* as n').first()) as { n: string }).n);
        if (gpus >= CARDS) break;
        if (i > 400) throw new Error(`the simulated cards never appeared (${gpus} of ${CARDS})`);
        await sleep(50);
      }

      // The killer: random gaps (a fifth of them short, to land in a core's own start and recovery).
      const killRandom = rng(SEED ^ 0x5bd1e995);
      const gapMs = () => (killRandom() < 0.2 ? 200 + killRandom() * 800 : FULL ? 2000 + killRandom() * 4000 : 1500 + killRandom() * 3500);
      let submitting = true;
      // Room left after it for the drain and the offline check.
      const deadline = Date.now() + TIMEOUT_MS - DRAIN_MS - 30_000;
      const killer = (async () => {
        while (submitting || chaos.kills < MIN_KILLS) {
          await sleep(gapMs());
          if (Date.now() > deadline) {
            // The attempts may end at the deadline too (quick mode): enough kills is enough.
            if (chaos.kills >= MIN_KILLS) break;
            throw new Error(`only ${chaos.kills} kills before the deadline`);
          }
          await chaos.kill();
          await sleep(killRandom() * 300);
          await chaos.start();
        }
      })();
      killer.catch(() => undefined);

      const specRandom = rng(SEED);
      let stats;
      try {
        stats = await submitAll({
          core: chaos,
          total: ATTEMPTS,
          concurrency: SUBMITTERS,
          spec: (n) => chaosSpec(specRandom, n, journalDir),
          token: async () => token,
          relogin: async () => {
            token = await login(chaos);
          },
          deadline,
          ...(MIN_ATTEMPTS < ATTEMPTS ? { minimum: MIN_ATTEMPTS } : {}),
        });
        if (stats.stoppedAtDeadline) console.log(`chaos: the budget ended the attempts after ${stats.attempts} of ${ATTEMPTS} (a slow machine); the checks run on those`);
      } finally {
        submitting = false;
      }
      await killer;
      const attemptsDone = performance.now();

      // Let the last core run until nothing is pending, scheduled or running (bounded).
      const drainUntil = Date.now() + DRAIN_MS;
      const openNow = async () => (await db!('workloads').whereNotIn('state', ['succeeded', 'failed', 'cancelled', 'lost']).pluck('id')) as string[];
      let open = await openNow();
      while (open.length > 0 && Date.now() < drainUntil) {
        await sleep(250);
        open = await openNow();
      }
      const drained = performance.now();
      await chaos.stop();

      const report = await offlineCheck({ db, accepted: stats.accepted, runsDir: path.join(dataDir, 'runs'), journalDir });
      const problems: Finding[] = [...report.findings];
      // Everything fits on the cluster: a queue that does not drain is a stuck scheduler or agent.
      for (const id of open) problems.push({ check: 'b', message: `${id} is still open after the drain, although everything fits` });

      const all = (await db('workloads').groupBy('state').select('state', db.raw('count(*)::int as n'))) as { state: string; n: number }[];
      const preemptions = Number(((await db('workloads').sum('preemptions as n').first()) as { n: string | null }).n ?? 0);
      // Why workloads were lost, failed or retried, with ids, paths and numbers folded.
      const reasons = (await db('workload_events')
        .where((q) => q.whereIn('to_state', ['lost', 'failed']).orWhere('reason', 'like', 'retry%'))
        .pluck('reason')) as (string | null)[];
      const notable = new Map<string, number>();
      for (const reason of reasons) {
        const folded = (reason ?? '')
          .replace(/w[0-9a-z]{8,}[0-9a-f]{10}/g, '<id>')
          .replace(/\/\S+/g, '<path>')
          .replace(/\d+/g, 'N')
          .slice(0, 160);
        notable.set(folded, (notable.get(folded) ?? 0) + 1);
      }
      const summary = {
        mode: FULL ? 'full' : 'quick',
        seed: SEED,
        attempts: stats.attempts,
        accepted: stats.accepted.length,
        refused: Object.fromEntries(stats.refused),
        connectionErrors: stats.connectionErrors,
        kills: chaos.kills,
        restartMs: Math.round(chaos.startMs.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, chaos.startMs.length - 1)),
        acceptedStates: report.accepted.states,
        allStates: Object.fromEntries(all.map((s) => [s.state, s.n])),
        reservations: report.reservations,
        runsRecorded: report.runs.recorded,
        runFoldersLeft: report.runs.runFolders,
        preemptions,
        lostFailedRetried: Object.fromEntries([...notable].sort((a, b) => b[1] - a[1]).slice(0, 6)),
        seconds: { attempts: Math.round((attemptsDone - began) / 1000), drain: Math.round((drained - attemptsDone) / 1000), total: Math.round((performance.now() - began) / 1000) },
        checks: {
          a_overlappingReservationPairs: report.overlaps.count,
          a_overlappingInsertRefusedWith: report.constraint.insertRefusedWith,
          b_acceptedMissing: report.accepted.missing.length,
          b_activeWithoutHolder: report.accepted.violations.length,
          b_openAfterDrain: open.length,
          c_epochsOverlapping: report.runs.overlaps.length,
          c_epochsRunTwice: report.runs.duplicates.length,
          c_runsOutsideTheirReservation: report.runs.outsideReservation.length,
          d_liveReservationsOfTerminal: report.stray.ofTerminal.length,
          d_liveReservationsWithoutReplica: report.stray.orphans.length,
        },
        violations: problems.length,
      };
      console.log(`chaos summary: ${JSON.stringify(summary, null, 2)}`);
      if (chaos.warnings.size > 0) {
        const top = [...chaos.warnings].sort((a, b) => b[1] - a[1]).slice(0, 10);
        console.log(`chaos: the core's warnings and errors (count × message):\n${top.map(([m, n]) => `  ${n} × ${m}`).join('\n')}`);
      }
      if (problems.length > 0) {
        console.log(`chaos: violations:\n${problems.slice(0, 30).map((f) => `  ${f.check}) ${f.message}`).join('\n')}\ncore timeline:\n  ${chaos.timeline.slice(-12).join('\n  ')}`);
      }

      expect(problems.map((f) => `${f.check}) ${f.message}`)).toEqual([]);
      if (stats.stoppedAtDeadline) expect(stats.attempts).toBeGreaterThanOrEqual(MIN_ATTEMPTS);
      else expect(stats.attempts).toBe(ATTEMPTS);
      expect(stats.accepted.length).toBeGreaterThan(stats.attempts * 0.95);
      expect(chaos.kills).toBeGreaterThanOrEqual(MIN_KILLS);
      expect(report.constraint.definition).toBe('EXCLUDE USING gist (device_id WITH =, memory WITH &&, held WITH &&)');
    },
    TIMEOUT_MS,
  );
});
