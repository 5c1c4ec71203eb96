#!/usr/bin/env node
// `npm test`: provision what the suites need (a Compose implementation, Chromium, the built web UI),
// run every suite on the embedded database, then run the suites that touch SQL (*.db.test.ts) again
// on real PostgreSQL when TEST_DATABASE_URL is set, with the suites that need real PostgreSQL and
// Redis servers (*.services.test.ts).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { reachable } from './reachable.mjs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const vitest = path.join(root, 'node_modules', '.bin', 'vitest');
const extraArgs = process.argv.slice(2);


function run(cmd, args, options = {}) {
  return spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...options });
}

/** Start the machine's PostgreSQL when it is installed but stopped (idempotent; quick when it runs). */
async function ensurePostgres(url) {
  if (await reachable(url, 5432)) return;
  const clusters = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql') : [];
  if (clusters.length === 0) throw new Error(`PostgreSQL at ${url} is not reachable and no local cluster is installed to start`);
  console.log(`[test] starting PostgreSQL ${clusters[0]}`);
  run('pg_ctlcluster', ['--skip-systemctl-redirect', clusters[0], 'main', 'start']);
  for (let i = 0; i < 50 && !(await reachable(url, 5432)); i++) await new Promise((r) => setTimeout(r, 200));
  if (!(await reachable(url, 5432))) throw new Error(`PostgreSQL at ${url} did not come up`);
}

/** Start the machine's Redis when it is installed but stopped. */
async function ensureRedis(url) {
  if (await reachable(url, 6379)) return;
  console.log('[test] starting Redis');
  run('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '-::1', '--port', String(new URL(url).port || 6379), '--save', '', '--appendonly', 'no']);
  for (let i = 0; i < 50 && !(await reachable(url, 6379)); i++) await new Promise((r) => setTimeout(r, 200));
  if (!(await reachable(url, 6379))) throw new Error(`Redis at ${url} did not come up`);
}

/** The compose file test validates with a real compose implementation: install it when missing. */
function ensureCompose() {
  const script = path.join(root, 'scripts', 'provision-compose.sh');
  if (existsSync(script)) {
    const result = run('bash', [script]);
    if (result.status !== 0) throw new Error('provisioning a compose implementation failed');
  }
}

/** Chromium for the web shell's browser tests: install Debian's when missing (quick when it is there). */
function ensureChromium() {
  const result = run('sh', [path.join(root, 'scripts', 'provision-chromium.sh')]);
  if (result.status !== 0) throw new Error('provisioning Chromium failed (see above); the browser tests need it');
}

/** A Docker engine with the image local/busybox:1 for the docker executor's tests (plugins/executor-docker): quick when it answers. */
function ensureDocker() {
  const result = run('sh', [path.join(root, 'scripts', 'provision-docker.sh')]);
  if (result.status !== 0) throw new Error('provisioning the Docker engine failed (see above; run scripts/provision-docker.sh as root); the docker executor tests need it');
}

/**
 * The Python environments the suites run (training worker with DeepSpeed, the models tests' extras,
 * the CPU serving runtime, Triton), built side by side while the rest is provisioned: a cold build
 * is minutes of unpacking wheels, quick when their stamps say they are there. Two chains: the
 * training worker's venv (which the CPU serving runtime shares in the tests: one PyTorch install)
 * and Triton's (numpy < 2, so a venv of its own).
 */
function provisionPython() {
  // One shell per chain, started now: the provisioning below blocks this process's event loop.
  const chain = (scripts) =>
    new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', scripts.map((s) => `sh "${path.join(root, s)}" >/dev/null`).join(' && ')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`provisioning Python (${scripts.join(', ')}) failed (exit ${code}); see above`))));
    });
  return Promise.all([
    chain(['plugins/training/runtime/worker/setup.sh', 'plugins/trainer-deepspeed/setup.sh', 'scripts/provision-python-ml.sh', 'plugins/serving-cpu/setup.sh']),
    chain(['plugins/serving-triton/setup.sh']),
  ]);
}

/** The production build of the shell and the plugin remotes the browser tests load (only what is stale). */
function ensureUiBuilt() {
  const result = run(process.execPath, [path.join(root, 'scripts', 'build-ui.mjs'), '--if-stale']);
  if (result.status !== 0) throw new Error('building the web UI failed (node scripts/build-ui.mjs --if-stale)');
}

/**
 * What failed in a vitest JSON report, a line each with the first lines of its error: the summary at
 * the end of the run repeats them, so a log that keeps only its tail (CI's) still names them.
 */
function failuresOf(json) {
  const rel = (file) => path.relative(root, file);
  const firstLines = (messages) =>
    (messages ?? [])
      .join('\n')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .slice(0, 6)
      .map((line) => `      ${line.trim().slice(0, 300)}`)
      .join('\n');
  const out = [];
  for (const file of json.testResults ?? []) {
    const failedTests = (file.assertionResults ?? []).filter((a) => a.status === 'failed');
    for (const test of failedTests) out.push(`${rel(file.name)} › ${test.fullName ?? test.title}\n${firstLines(test.failureMessages)}`);
    if (file.status === 'failed' && failedTests.length === 0) out.push(`${rel(file.name)} (the file itself)\n${firstLines([file.message])}`);
  }
  return out;
}

function vitestPass(label, env, filters) {
  const report = path.join(mkdtempSync(path.join(os.tmpdir(), 'aiplat-vitest-')), 'report.json');
  console.log(`\n[test] ${label}`);
  const result = run(vitest, ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...filters, ...extraArgs], {
    // One OpenMP thread per PyTorch process: the training suites run real workers (DDP and DeepSpeed
    // start two each) in test files that run side by side, and OpenMP's spinning threads slow each
    // other down many times over when there are more of them than cores.
    env: { OMP_NUM_THREADS: '1', ...process.env, ...env },
  });
  if (!existsSync(report)) return { label, failures: [`vitest wrote no report (exit ${result.status})`], ok: false, passed: 0, failed: 1, skipped: 0 };
  const json = JSON.parse(readFileSync(report, 'utf8'));
  return {
    label,
    failures: failuresOf(json),
    ok: result.status === 0,
    passed: json.numPassedTests,
    // A failed test also fails its file (and describe blocks): a file counts on its own only when
    // it failed without a failing test (an import error, a throw in beforeAll).
    failed: json.numFailedTests + json.testResults.filter((r) => r.status === 'failed' && !r.assertionResults.some((a) => a.status === 'failed')).length,
    skipped: json.numPendingTests + json.numTodoTests,
  };
}

// The CPU serving runtime shares the training worker's venv in the tests (same torch and transformers).
process.env.AIPLAT_SERVE_CPU_VENV ??= process.env.AIPLAT_TRAIN_VENV ?? path.join(root, 'node_modules', '.cache', 'aiplat-train-venv');
const python = provisionPython();
const passes = [];
ensureCompose();
ensureChromium();
ensureDocker();
ensureUiBuilt();
await python;
passes.push(vitestPass('pass 1: every suite on the embedded database', { AIPLAT_TEST_DATABASE: 'embedded' }, []));

const databaseUrl = process.env.TEST_DATABASE_URL;
if (databaseUrl) {
  await ensurePostgres(databaseUrl);
  if (process.env.TEST_REDIS_URL) await ensureRedis(process.env.TEST_REDIS_URL);
  passes.push(
    vitestPass(`pass 2: SQL suites on PostgreSQL (${new URL(databaseUrl).host})${process.env.TEST_REDIS_URL ? ' and Redis' : ''}`, { AIPLAT_TEST_DATABASE: 'postgres' }, ['.db.test.ts', '.services.test.ts', '--exclude', '**/chaos.services.test.ts']),
  );
  // The scheduler's chaos run alone: it has a time budget for its attempts, which a file beside it eats into.
  // 500 attempts (its quick mode's floor, with at least 10 kills): a 2-core machine used its whole
  // budget (about 270 s) on the quick mode's 1,000 without finishing them, and CI has 30 minutes in
  // all. More by hand: CHAOS_ATTEMPTS=1000, or CHAOS_FULL=1 for 10,000 attempts and 100 kills.
  passes.push(vitestPass('pass 3: the scheduler under chaos, alone', { AIPLAT_TEST_DATABASE: 'postgres', CHAOS_ATTEMPTS: process.env.CHAOS_ATTEMPTS ?? '500' }, ['chaos.services.test.ts']));
} else {
  console.log('\n[test] TEST_DATABASE_URL is not set: the SQL suites ran on the embedded database only');
}

const total = passes.reduce((a, p) => ({ passed: a.passed + p.passed, failed: a.failed + p.failed, skipped: a.skipped + p.skipped }), {
  passed: 0,
  failed: 0,
  skipped: 0,
});
const ok = passes.every((p) => p.ok) && total.failed === 0 && total.passed > 0;
for (const pass of passes.filter((p) => p.failures.length > 0)) {
  console.log(`\n[test] failed in ${pass.label}:`);
  for (const failure of pass.failures) console.log(`  ✗ ${failure}`);
}
console.log(`\n${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ''}`);
process.exit(ok ? 0 : 1);
