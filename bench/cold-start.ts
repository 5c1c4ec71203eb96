/**
 * `npm run bench:start`: cold start to healthy with the embedded database and a warm data folder.
 *
 * 1. "First start": the core starts on a fresh data folder (creates the database, runs the
 *    migrations, hashes the admin password), answers /api/v1/health, and is stopped with SIGTERM.
 * 2. N times (default 5) the core starts again on that same data folder: the time from spawn to
 *    the first 200 from /api/v1/health (polled every 20 ms) is one sample; then SIGTERM, and the
 *    time to the process exit is one graceful-shutdown sample.
 *
 *   npm run bench:start -- [--runs 5] [--interval 20] [--log-level info]
 *
 * Environment equivalents: BENCH_RUNS, BENCH_POLL_MS, BENCH_LOG_LEVEL. Each start is a new
 * `node --import tsx core/src/main.ts` process, so Node's start-up and tsx's transform (from its
 * on-disk cache after the first run on a machine) are part of every figure.
 *
 * Exits 0 when every start reached healthy and every stop exited with code 0, whether or not the
 * goal (median ≤ 5 s) is met; exits 1 otherwise.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  REPO_ROOT,
  coreEnv,
  fmt,
  freePort,
  machine,
  makeTempDataDir,
  median,
  numberOption,
  removeDir,
  spawnNode,
  stopGracefully,
  table,
  waitFor200,
  writeResult,
} from './lib.js';

const GOAL_MEDIAN_MS = 5000;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      interval: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench:start -- [--runs n] [--interval ms] [--log-level level]\n');
    process.exit(0);
  }
  return {
    runs: Math.max(1, Math.round(numberOption(values, 'runs', 'BENCH_RUNS', 5))),
    intervalMs: Math.max(1, numberOption(values, 'interval', 'BENCH_POLL_MS', 20)),
    logLevel: values['log-level'] ?? process.env.BENCH_LOG_LEVEL ?? 'info',
  };
}

/** Start-up milestones, in the order they happen; each is measured from spawn. */
const PHASES = [
  { key: 'preload', label: 'node+tsx' },
  { key: 'database ready', label: 'db ready' },
  { key: 'plugin started', label: 'plugins' },
  { key: 'aiplat core listening', label: 'listening' },
] as const;

interface Sample {
  /** Milliseconds from spawn to the first 200 from /api/v1/health. */
  startMs: number;
  /** Milliseconds from spawn to each milestone (see PHASES); the last plugin started counts. */
  phasesMs: Record<string, number | undefined>;
  /** Milliseconds from SIGTERM to the process exit. */
  stopMs: number;
  exit: number | string;
}

async function startAndStop(dataDir: string, options: ReturnType<typeof parseOptions>): Promise<Sample> {
  const port = await freePort();
  const proc = spawnNode(
    'core/src/main.ts',
    coreEnv({ port, dataDir, pluginDirs: path.join(REPO_ROOT, 'examples'), logLevel: options.logLevel }),
    { watch: PHASES.map((p) => p.key).filter((k) => k !== 'preload') },
  );
  let healthyAt: number;
  try {
    healthyAt = await waitFor200(`http://127.0.0.1:${port}/api/v1/health`, proc, { intervalMs: options.intervalMs });
  } catch (error) {
    await stopGracefully(proc, 5000);
    throw error;
  }
  const stop = await stopGracefully(proc);
  if (stop.exit !== 0) throw new Error(`the core exited with ${String(stop.exit)} after SIGTERM:\n${proc.stderrTail()}`);
  const phasesMs = Object.fromEntries(
    PHASES.map(({ key }) => [key, proc.marks.has(key) ? proc.marks.get(key)! - proc.spawnedAt : undefined]),
  );
  return { startMs: healthyAt - proc.spawnedAt, phasesMs, stopMs: stop.ms, exit: stop.exit };
}

function stats(values: number[]) {
  return { min: Math.min(...values), median: median(values), max: Math.max(...values) };
}

async function main(): Promise<void> {
  const options = parseOptions();
  const dataDir = makeTempDataDir('start');
  try {
    process.stdout.write(`cold start to healthy, embedded database; LOG_LEVEL=${options.logLevel}; health polled every ${options.intervalMs} ms\n`);
    const phases = (s: Sample) =>
      PHASES.map(({ key, label }) => `${label} ${s.phasesMs[key] === undefined ? '?' : fmt(s.phasesMs[key])}`).join(', ');
    const first = await startAndStop(dataDir, options);
    process.stdout.write(`  first start (fresh data folder)  ${fmt(first.startMs)} ms to healthy, stop ${fmt(first.stopMs)} ms  (${phases(first)})\n`);
    const samples: Sample[] = [];
    for (let i = 1; i <= options.runs; i++) {
      const sample = await startAndStop(dataDir, options);
      samples.push(sample);
      process.stdout.write(`  start ${i}/${options.runs} (warm data folder)     ${fmt(sample.startMs)} ms to healthy, stop ${fmt(sample.stopMs)} ms  (${phases(sample)})\n`);
    }

    const start = stats(samples.map((s) => s.startMs));
    // Median time spent in each phase (from the previous milestone), warm starts only.
    const phaseRows = PHASES.map(({ key, label }, i) => {
      const spans = samples
        .map((s) => {
          const at = s.phasesMs[key];
          const before = i === 0 ? 0 : s.phasesMs[PHASES[i - 1]!.key];
          return at === undefined || before === undefined ? undefined : at - before;
        })
        .filter((v): v is number => v !== undefined);
      return [`  ${i === 0 ? 'spawn' : PHASES[i - 1]!.label} → ${label}`, ...(spans.length ? [fmt(Math.min(...spans)), fmt(median(spans)), fmt(Math.max(...spans))] : ['?', '?', '?'])];
    });
    const lastSpans = samples
      .map((s) => (s.phasesMs['aiplat core listening'] === undefined ? undefined : s.startMs - s.phasesMs['aiplat core listening']!))
      .filter((v): v is number => v !== undefined);
    if (lastSpans.length) phaseRows.push(['  listening → health 200', fmt(Math.min(...lastSpans)), fmt(median(lastSpans)), fmt(Math.max(...lastSpans))]);
    const stop = stats([first, ...samples].map((s) => s.stopMs));
    process.stdout.write(
      `\n${table([
        ['ms', 'min', 'median', 'max'],
        [`start to healthy (warm, n=${samples.length})`, fmt(start.min), fmt(start.median), fmt(start.max)],
        ...phaseRows,
        [`graceful shutdown (SIGTERM → exit, n=${samples.length + 1})`, fmt(stop.min), fmt(stop.median), fmt(stop.max)],
        ['first start (fresh data folder)', fmt(first.startMs), '', ''],
      ])}\n\n`,
    );
    const met = start.median <= GOAL_MEDIAN_MS;
    process.stdout.write(
      met
        ? `GOAL MET: median cold start ${fmt(start.median)} ms ≤ ${GOAL_MEDIAN_MS} ms\n`
        : `GOAL NOT MET: median cold start ${fmt(start.median)} ms > ${GOAL_MEDIAN_MS} ms\n`,
    );
    const file = writeResult('cold-start', {
      benchmark: 'cold-start',
      date: new Date().toISOString(),
      machine: machine(),
      options,
      firstStart: first,
      samples,
      startToHealthyMs: start,
      gracefulShutdownMs: stop,
      goal: { medianMs: GOAL_MEDIAN_MS, met },
    });
    process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
  } finally {
    removeDir(dataDir);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:start failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
