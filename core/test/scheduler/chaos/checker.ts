/**
 * The offline checker: after a chaos run, with the core stopped, it reads the database and the
 * files the replicas left (run folders under `<dataDir>/runs`, the journal of journalledCommand)
 * and proves the scheduler's invariants held the whole time, not only at the end:
 *
 *   a) no two reservations of one device ever overlapped in memory × time (a self-join over the
 *      whole history: released rows keep their held range), and the exclusion constraint that
 *      should make that impossible exists and refuses an overlapping insert (SQLSTATE 23P01);
 *   b) every accepted workload exists and is terminal, pending, or scheduled / running with live
 *      holders: live reservations for its live replicas, a live supervisor (or its exit record,
 *      for the next core to settle) for each running one;
 *   c) no workload ever ran twice at once: per workload and replica, the [start, end] of different
 *      epochs never overlap, no epoch ran twice, and every run of a GPU workload lay within the
 *      held time of its reservations (it never ran on cards it no longer held);
 *   d) no live reservation belongs to a terminal workload, nor to anything but a live replica of
 *      the same epoch.
 *
 * Every check returns what it found rather than asserting, so the test can prove the checker
 * itself catches planted violations.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';

const TERMINAL = ['succeeded', 'failed', 'cancelled', 'lost'];
const LIVE_REPLICA = ['placed', 'starting', 'running', 'ready'];

// ---------------------------------------------------------------------------------------------
// a) the ledger

export interface OverlapRow {
  a_id: string;
  b_id: string;
  device_id: string;
  a_workload: string;
  b_workload: string;
  a_memory: string;
  b_memory: string;
  a_held: string;
  b_held: string;
}

/**
 * Pairs of reservation rows (in `table`, gpu_reservations by default) on one device whose memory
 * ranges and held times both overlap: a self-join over the whole history. The same operators as
 * the exclusion constraint (`&&` on int4range and tstzrange), so an empty held range (a release
 * within the microsecond of its reservation) overlaps nothing here either.
 */
export async function reservationOverlaps(db: Knex, table = 'gpu_reservations'): Promise<{ count: number; examples: OverlapRow[] }> {
  const join = `from ?? a join ?? b on a.device_id = b.device_id and a.id < b.id where a.memory && b.memory and a.held && b.held`;
  const counted = (await db.raw(`select count(*)::int as n ${join}`, [table, table])) as { rows: { n: number }[] };
  const examples = (await db.raw(
    `select a.id::text as a_id, b.id::text as b_id, a.device_id, a.workload_id as a_workload, b.workload_id as b_workload,
            a.memory::text as a_memory, b.memory::text as b_memory, a.held::text as a_held, b.held::text as b_held
       ${join} order by a.id, b.id limit 5`,
    [table, table],
  )) as { rows: OverlapRow[] };
  return { count: counted.rows[0]!.n, examples: examples.rows };
}

/**
 * Whether `gpu_reservations_no_overlap` exists as an exclusion constraint on (device =, memory &&,
 * held &&), and what the database answers when a copy of an existing reservation (a non-empty held
 * range) is inserted: the SQLSTATE, 23P01 when refused. The insert is rolled back either way.
 */
export async function constraintProof(db: Knex): Promise<{ definition: string | undefined; insertRefusedWith: string | undefined; probed: string | undefined }> {
  const def = (await db.raw(
    `select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'gpu_reservations'::regclass and conname = 'gpu_reservations_no_overlap' and contype = 'x'`,
  )) as { rows: { def: string }[] };
  const row = (await db('gpu_reservations').whereRaw('not isempty(held)').orderBy('id').first('id')) as { id: string } | undefined;
  if (!row) return { definition: def.rows[0]?.def, insertRefusedWith: undefined, probed: undefined };
  let code: string | undefined;
  await db
    .transaction(async (trx) => {
      await trx.raw(
        `insert into gpu_reservations (device_id, node_id, workload_id, replica, epoch, team_id, user_id, whole, memory, held)
         select device_id, node_id, workload_id, replica, epoch, team_id, user_id, whole, memory, held from gpu_reservations where id = ?`,
        [row.id],
      );
      throw new Error('the overlapping insert was accepted');
    })
    .catch((error: { code?: string; message: string }) => {
      code = error.code ?? `no SQLSTATE: ${error.message}`;
    });
  return { definition: def.rows[0]?.def, insertRefusedWith: code, probed: String(row.id) };
}

// ---------------------------------------------------------------------------------------------
// files: run folders and the journal

/** A second run of one epoch: the journal's `.dup.<pid>` marker and when it was made (ms). */
export interface Duplicate {
  name: string;
  at: number;
}

export interface RunRecord {
  workloadId: string;
  replica: number;
  epoch: number;
  /** ms since the epoch; undefined when nothing says when it started. */
  start?: number;
  end?: number;
  /** Where the times came from (journal, run folder, ledger). */
  sources: string[];
}

const key = (w: string, r: number, e: number) => `${w}/${r}/${e}`;

/**
 * What the files say about every run: the journal (`<workload>.r<n>.e<m>/{start,end}`, ns) and
 * the run folders that were not removed (`<runs>/<workload>/r<n>-e<m>/`: launch.json's mtime as
 * the start, exit.json's finishedAt as the end). Also the journal's `.dup.` markers: a second run
 * of one epoch.
 */
export function readRuns(runsDir: string, journalDir: string): { runs: Map<string, RunRecord>; duplicates: Duplicate[]; folders: number } {
  const runs = new Map<string, RunRecord>();
  const duplicates: Duplicate[] = [];
  const record = (w: string, r: number, e: number) => {
    const k = key(w, r, e);
    let run = runs.get(k);
    if (!run) runs.set(k, (run = { workloadId: w, replica: r, epoch: e, sources: [] }));
    return run;
  };
  const earliest = (run: RunRecord, t: number | undefined, source: string) => {
    if (t === undefined || !Number.isFinite(t)) return;
    run.start = run.start === undefined ? t : Math.min(run.start, t);
    run.sources.push(`${source} start`);
  };
  const latest = (run: RunRecord, t: number | undefined, source: string) => {
    if (t === undefined || !Number.isFinite(t)) return;
    run.end = run.end === undefined ? t : Math.max(run.end, t);
    run.sources.push(`${source} end`);
  };
  const nsFile = (file: string): number | undefined => {
    try {
      const text = readFileSync(file, 'utf8').trim();
      return /^\d+$/.test(text) ? Number(BigInt(text) / 1000n) / 1000 : undefined;
    } catch {
      return undefined;
    }
  };
  if (existsSync(journalDir)) {
    for (const entry of readdirSync(journalDir)) {
      if (entry.includes('.dup.')) {
        duplicates.push({ name: entry, at: statSync(path.join(journalDir, entry)).mtimeMs });
        continue;
      }
      const match = /^(.+)\.r(\d+)\.e(\d+)$/.exec(entry);
      if (!match) continue;
      const run = record(match[1]!, Number(match[2]), Number(match[3]));
      earliest(run, nsFile(path.join(journalDir, entry, 'start')), 'journal');
      latest(run, nsFile(path.join(journalDir, entry, 'end')), 'journal');
    }
  }
  let folders = 0;
  if (existsSync(runsDir)) {
    for (const workloadId of readdirSync(runsDir)) {
      const dir = path.join(runsDir, workloadId);
      if (!statSync(dir).isDirectory()) continue;
      for (const name of readdirSync(dir)) {
        const match = /^r(\d+)-e(\d+)$/.exec(name);
        if (!match) continue;
        folders++;
        const runDir = path.join(dir, name);
        // A folder whose supervisor never wrote its pid never ran anything (the core died first).
        if (!existsSync(path.join(runDir, 'supervisor.pid'))) continue;
        const run = record(workloadId, Number(match[1]), Number(match[2]));
        const launch = path.join(runDir, 'launch.json');
        if (existsSync(launch)) earliest(run, statSync(launch).mtimeMs, 'launch.json');
        try {
          const exit = JSON.parse(readFileSync(path.join(runDir, 'exit.json'), 'utf8')) as { finishedAt: string };
          latest(run, Date.parse(exit.finishedAt), 'exit.json');
        } catch {
          // no exit record (yet)
        }
      }
    }
  }
  return { runs, duplicates, folders };
}

export interface HeldRange {
  workload_id: string;
  replica: number;
  epoch: number;
  /** ms since the epoch */
  lo: number;
  /** ms since the epoch; null while held */
  hi: number | null;
  /** Why its rows were released (distinct reasons, `; `-joined), or null. */
  reasons: string | null;
}

/** Per workload / replica / epoch: the ledger's held time (earliest lower, latest upper; open while any row is live). */
export async function heldRanges(db: Knex, table = 'gpu_reservations'): Promise<Map<string, HeldRange>> {
  const { rows } = (await db.raw(
    `select workload_id, replica, epoch,
            extract(epoch from min(lower(held))) * 1000 as lo,
            case when bool_or(upper_inf(held)) then null else extract(epoch from max(upper(held))) * 1000 end as hi,
            ${table === 'gpu_reservations' ? "string_agg(distinct released_reason, '; ')" : 'null::text'} as reasons
       from ?? where not isempty(held) group by workload_id, replica, epoch`,
    [table],
  )) as { rows: { workload_id: string; replica: number; epoch: number; lo: string; hi: string | null; reasons: string | null }[] };
  return new Map(
    rows.map((r) => [
      key(r.workload_id, r.replica, r.epoch),
      { workload_id: r.workload_id, replica: r.replica, epoch: r.epoch, lo: Number(r.lo), hi: r.hi === null ? null : Number(r.hi), reasons: r.reasons },
    ]),
  );
}

export interface RunOverlap {
  workloadId: string;
  replica: number;
  a: { epoch: number; start: number; end: number };
  b: { epoch: number; start: number; end: number };
}

/**
 * Runs of one workload and replica under different epochs whose [start, end] intervals overlap. A
 * run with no end anywhere counts as running until `now` (the conservative reading). Pure: the
 * test feeds it a hand-made history too.
 */
export function runOverlaps(runs: Iterable<RunRecord>, now: number): RunOverlap[] {
  const byReplica = new Map<string, { epoch: number; start: number; end: number }[]>();
  for (const run of runs) {
    if (run.start === undefined) continue;
    const k = `${run.workloadId}/${run.replica}`;
    const list = byReplica.get(k) ?? [];
    list.push({ epoch: run.epoch, start: run.start, end: run.end ?? now });
    byReplica.set(k, list);
  }
  const found: RunOverlap[] = [];
  for (const [k, list] of byReplica) {
    list.sort((x, y) => x.start - y.start || x.epoch - y.epoch);
    // Each against the one with the latest end so far: catches every overlapping pair's first member.
    let widest = list[0]!;
    for (const current of list.slice(1)) {
      if (current.start <= widest.end && current.epoch !== widest.epoch) {
        const [workloadId, replica] = [k.slice(0, k.lastIndexOf('/')), Number(k.slice(k.lastIndexOf('/') + 1))];
        found.push({ workloadId, replica, a: widest, b: current });
      }
      if (current.end > widest.end) widest = current;
    }
  }
  return found;
}

export interface Unheld {
  run: RunRecord;
  held: HeldRange | undefined;
  why: string;
}

/**
 * Runs of workloads that ask for GPUs that were not within their epoch's held time: started
 * before the reservation, went on after its release, or had no reservation at all. `toleranceMs`
 * absorbs clock granularity (the files and PostgreSQL read the same host clock).
 */
export function runsOutsideTheirReservation(runs: Iterable<RunRecord>, held: Map<string, HeldRange>, gpuWorkloads: Set<string>, now: number, toleranceMs = 2): Unheld[] {
  const found: Unheld[] = [];
  for (const run of runs) {
    if (!gpuWorkloads.has(run.workloadId) || run.start === undefined) continue;
    const h = held.get(key(run.workloadId, run.replica, run.epoch));
    if (!h) {
      found.push({ run, held: h, why: 'it has no reservation for its epoch' });
      continue;
    }
    const end = run.end ?? now;
    if (run.start < h.lo - toleranceMs) found.push({ run, held: h, why: `it started ${(h.lo - run.start).toFixed(1)} ms before its cards were reserved` });
    else if (h.hi !== null && end > h.hi + toleranceMs) found.push({ run, held: h, why: `it ran on ${(end - h.hi).toFixed(1)} ms after its cards were released${run.end === undefined ? ' (no end recorded: still running?)' : ''}` });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// b) and d) the workloads

export interface AcceptedReport {
  states: Record<string, number>;
  missing: string[];
  violations: string[];
}

function supervisorAlive(pid: unknown, runDir: unknown): boolean {
  if (typeof pid !== 'number' || pid <= 1 || typeof runDir !== 'string') return false;
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(runDir);
  } catch {
    return false;
  }
}

/** b) every accepted workload exists and is terminal, pending, or scheduled / running with live holders. */
export async function checkAccepted(db: Knex, accepted: string[]): Promise<AcceptedReport> {
  const report: AcceptedReport = { states: {}, missing: [], violations: [] };
  const rows: { id: string; state: string; epoch: number; gpus: number; gpu_memory_mib: number | null; replicas: number }[] = [];
  for (let i = 0; i < accepted.length; i += 1000) {
    rows.push(...((await db('workloads').whereIn('id', accepted.slice(i, i + 1000)).select('id', 'state', 'epoch', 'gpus', 'gpu_memory_mib', 'replicas')) as typeof rows));
  }
  const found = new Set(rows.map((r) => r.id));
  report.missing = accepted.filter((id) => !found.has(id));
  for (const row of rows) report.states[row.state] = (report.states[row.state] ?? 0) + 1;
  const active = rows.filter((r) => !TERMINAL.includes(r.state) && r.state !== 'pending');
  for (const w of active) {
    const replicas = (await db('workload_replicas').where({ workload_id: w.id }).orderBy('replica')) as {
      replica: number;
      epoch: number;
      state: string;
      handle: { runDir?: unknown; supervisorPid?: unknown } | null;
    }[];
    const live = replicas.filter((r) => LIVE_REPLICA.includes(r.state));
    if (live.length === 0) report.violations.push(`${w.id} is ${w.state} but none of its replicas is live: nothing will ever move it on`);
    const perReplica = w.gpu_memory_mib ? 1 : w.gpus;
    for (const r of live) {
      if (perReplica > 0) {
        const held = (await db('gpu_reservations').where({ workload_id: w.id, replica: r.replica, epoch: r.epoch }).whereRaw('upper_inf(held)').count('* as n').first()) as { n: string };
        if (Number(held.n) !== perReplica) report.violations.push(`${w.id} replica ${r.replica} (epoch ${r.epoch}, ${r.state}) holds ${held.n} live reservations, not ${perReplica}`);
      }
      if (['running', 'ready'].includes(r.state) || (r.state === 'starting' && r.handle)) {
        const runDir = r.handle?.runDir;
        const exitRecorded = typeof runDir === 'string' && existsSync(path.join(runDir, 'exit.json'));
        if (!supervisorAlive(r.handle?.supervisorPid, runDir) && !exitRecorded) {
          report.violations.push(`${w.id} replica ${r.replica} (epoch ${r.epoch}) is ${r.state} but its supervisor is gone without an exit record`);
        }
      }
    }
  }
  return report;
}

/** d) live reservations of terminal workloads, and live reservations no live replica of the same epoch holds. */
export async function strayReservations(db: Knex): Promise<{ ofTerminal: string[]; orphans: string[] }> {
  const ofTerminal = (await db.raw(
    `select r.id::text || ' (' || r.workload_id || ' ' || w.state || ', device ' || r.device_id || ')' as what
       from gpu_reservations r join workloads w on w.id = r.workload_id
      where upper_inf(r.held) and w.state in ('succeeded', 'failed', 'cancelled', 'lost') order by r.id`,
  )) as { rows: { what: string }[] };
  const orphans = (await db.raw(
    `select r.id::text || ' (' || r.workload_id || ' replica ' || r.replica || ' epoch ' || r.epoch || ', replica row: ' || coalesce(p.state || ' epoch ' || p.epoch, 'none') || ')' as what
       from gpu_reservations r
       left join workload_replicas p on p.workload_id = r.workload_id and p.replica = r.replica
      where upper_inf(r.held)
        and (p.workload_id is null or p.epoch <> r.epoch or p.state not in ('placed', 'starting', 'running', 'ready'))
      order by r.id`,
  )) as { rows: { what: string }[] };
  return { ofTerminal: ofTerminal.rows.map((r) => r.what), orphans: orphans.rows.map((r) => r.what) };
}

// ---------------------------------------------------------------------------------------------
// everything

/** One violation of an invariant, in words. */
export interface Finding {
  check: 'a' | 'b' | 'c' | 'd';
  message: string;
}

export interface CheckReport {
  overlaps: { count: number; examples: OverlapRow[] };
  constraint: { definition: string | undefined; insertRefusedWith: string | undefined; probed: string | undefined };
  accepted: AcceptedReport;
  runs: { recorded: number; runFolders: number; duplicates: Duplicate[]; overlaps: RunOverlap[]; outsideReservation: Unheld[] };
  stray: { ofTerminal: string[]; orphans: string[] };
  reservations: number;
  findings: Finding[];
}

export async function offlineCheck(options: {
  db: Knex;
  accepted: string[];
  runsDir: string;
  journalDir: string;
}): Promise<CheckReport> {
  const { db } = options;
  const now = Date.now();
  const overlaps = await reservationOverlaps(db);
  const files = readRuns(options.runsDir, options.journalDir);
  const held = await heldRanges(db);
  // The ledger's release is the latest sign of a run's end whose files are gone (a SIGKILLed wrapper).
  for (const run of files.runs.values()) {
    const h = held.get(key(run.workloadId, run.replica, run.epoch));
    if (run.end === undefined && h?.hi !== null && h?.hi !== undefined) {
      run.end = h.hi;
      run.sources.push('ledger end');
    }
  }
  const gpuWorkloads = new Set((await db('workloads').where('gpus', '>', 0).orWhereNotNull('gpu_memory_mib').pluck('id')) as string[]);
  const runs = [...files.runs.values()];
  const reservations = Number(((await db('gpu_reservations').count('* as n').first()) as { n: string }).n);
  const report: CheckReport = {
    overlaps,
    constraint: await constraintProof(db),
    accepted: await checkAccepted(db, options.accepted),
    runs: {
      recorded: runs.length,
      runFolders: files.folders,
      duplicates: files.duplicates,
      overlaps: runOverlaps(runs, now),
      outsideReservation: runsOutsideTheirReservation(runs, held, gpuWorkloads, now),
    },
    stray: await strayReservations(db),
    reservations,
    findings: [],
  };
  report.findings = findings(report);
  return report;
}

const at = (ms: number) => new Date(ms).toISOString();

/** Every violation of a report, in words (none: the run kept every invariant). */
export function findings(report: Omit<CheckReport, 'findings'>): Finding[] {
  const out: Finding[] = [];
  if (report.overlaps.count > 0) {
    out.push({ check: 'a', message: `${report.overlaps.count} pairs of reservations overlapped on one device in memory and time, e.g. ${JSON.stringify(report.overlaps.examples)}` });
  }
  if (!report.constraint.definition) out.push({ check: 'a', message: 'the exclusion constraint gpu_reservations_no_overlap is missing' });
  if (report.constraint.insertRefusedWith !== '23P01') out.push({ check: 'a', message: `an overlapping insert was not refused with 23P01: ${report.constraint.insertRefusedWith}` });
  if (report.accepted.missing.length > 0) out.push({ check: 'b', message: `${report.accepted.missing.length} accepted workloads are missing: ${report.accepted.missing.slice(0, 5).join(', ')}` });
  for (const v of report.accepted.violations) out.push({ check: 'b', message: v });
  for (const d of report.runs.duplicates) out.push({ check: 'c', message: `an epoch ran twice: ${d.name} at ${at(d.at)}` });
  for (const o of report.runs.overlaps) {
    out.push({ check: 'c', message: `${o.workloadId} replica ${o.replica} ran under epochs ${o.a.epoch} [${at(o.a.start)}, ${at(o.a.end)}] and ${o.b.epoch} [${at(o.b.start)}, ${at(o.b.end)}] at once` });
  }
  for (const u of report.runs.outsideReservation) {
    out.push({
      check: 'c',
      message: `${u.run.workloadId} replica ${u.run.replica} epoch ${u.run.epoch} ran outside its reservation: ${u.why} (${u.run.sources.join(', ')}; released: ${u.held?.reasons ?? 'never'})`,
    });
  }
  for (const s of report.stray.ofTerminal) out.push({ check: 'd', message: `live reservation of a terminal workload: ${s}` });
  for (const s of report.stray.orphans) out.push({ check: 'd', message: `live reservation no live replica holds: ${s}` });
  return out;
}
