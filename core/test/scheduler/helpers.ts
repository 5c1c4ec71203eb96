// Helpers shared by the scheduler's end-to-end tests (real core, real database, real processes;
// the GPUs are SIMULATED: a fake nvidia-smi replays a real capture, there is no GPU here).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { killLocalReplicas, startTestCore, type TestClient, type TestCore, type TestCoreOptions } from '@aiplat/testing';

/** The Node binary: commands are argv, so a test's "program" is `node -e <script>`. */
export const NODE = process.execPath;

export function nodeCommand(script: string): string[] {
  return [NODE, '-e', script];
}

/** Submit over the API and expect it accepted (201); returns the workload. */
export async function submit(client: TestClient, spec: Record<string, unknown>): Promise<any> {
  const res = await client.post('/api/v1/workloads', spec);
  expect(res.status, `submitting ${JSON.stringify(spec).slice(0, 300)}: ${res.text}`).toBe(201);
  return res.body;
}

/** Every stored log chunk of a workload, oldest first (all pages). */
export async function logChunks(client: TestClient, id: string, replica?: number): Promise<{ logId: number; replica: number; epoch: number; text: string }[]> {
  const out: { logId: number; replica: number; epoch: number; text: string }[] = [];
  let after: string | null = null;
  for (;;) {
    const query = new URLSearchParams({ limit: '1000' });
    if (replica !== undefined) query.set('replica', String(replica));
    if (after) query.set('after', after);
    const res = await client.get(`/api/v1/workloads/${id}/logs?${query}`);
    expect(res.status).toBe(200);
    out.push(...res.body.items);
    if (!res.body.nextCursor) return out;
    after = res.body.nextCursor;
  }
}

/** The stored output of a workload (or one replica) as one text. */
export async function logText(client: TestClient, id: string, replica?: number): Promise<string> {
  return (await logChunks(client, id, replica)).map((c) => c.text).join('');
}

export interface WorkloadEvent {
  from: string | null;
  to: string;
  reason: string | null;
  epoch: number;
  details: Record<string, unknown>;
}

export async function events(client: TestClient, id: string): Promise<WorkloadEvent[]> {
  const res = await client.get(`/api/v1/workloads/${id}/events`);
  expect(res.status).toBe(200);
  return res.body.items;
}

/** The transitions only (events whose state changed), as `to` states. */
export async function transitions(client: TestClient, id: string): Promise<string[]> {
  return (await events(client, id)).filter((e) => e.from !== e.to).map((e) => e.to);
}

/** Live (unreleased) reservations of a workload. */
export async function liveReservations(client: TestClient, id: string): Promise<any[]> {
  const res = await client.get(`/api/v1/gpus/reservations?workload=${id}&limit=1000`);
  expect(res.status).toBe(200);
  return res.body.items;
}

/** A temp folder for files a test's commands and the test share (handshakes instead of sleeps). */
export function scratchDir(): { dir: string; file(name: string): string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-sched-test-'));
  return { dir, file: (name) => path.join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A script fragment: wait (polling, no busy loop) until `file` exists, then run `then`. */
export function waitForFileJs(file: string, then: string): string {
  return `(function poll() { if (require('fs').existsSync(${JSON.stringify(file)})) { ${then} } else setTimeout(poll, 20); })();`;
}

/**
 * Cores started on the same data folder and database as an earlier one (a restart, possibly with
 * other settings). `startTestCore` deletes neither when given them, so this keeps track and
 * deletes both at the end.
 */
export class CoreLifecycle {
  private readonly dataDirs = new Set<string>();
  private readonly databases = new Set<string>();
  private readonly cores = new Set<TestCore>();

  async start(options: TestCoreOptions): Promise<TestCore> {
    const core = await startTestCore(options);
    this.track(core);
    return core;
  }

  track(core: TestCore): TestCore {
    this.cores.add(core);
    this.dataDirs.add(core.dataDir);
    if (core.databaseUrl) this.databases.add(core.databaseUrl);
    return core;
  }

  /** Stop `core` (keeping its data) and start a new one on its data folder and database with `options`. */
  async reopen(core: TestCore, options: Omit<TestCoreOptions, 'dataDir' | 'databaseUrl'>): Promise<TestCore> {
    await core.stop({ keep: true });
    return this.start({ ...options, dataDir: core.dataDir, databaseUrl: core.databaseUrl });
  }

  /** Like `core.restart()`, tracked for clean-up. */
  async restart(core: TestCore): Promise<TestCore> {
    return this.track(await core.restart());
  }

  async dispose(): Promise<void> {
    for (const core of this.cores) await core.stop({ keep: true }).catch(() => undefined);
    for (const dir of this.dataDirs) {
      // Replicas outlive a core by design (the next one re-attaches); these cores are gone for good.
      killLocalReplicas(path.join(dir, 'runs'));
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    }
    for (const url of this.databases) await dropDatabase(url).catch(() => undefined);
  }
}

/** Drop a test database made by `startTestCore` on TEST_DATABASE_URL's server. */
async function dropDatabase(url: string): Promise<void> {
  const server = process.env.TEST_DATABASE_URL;
  const name = new URL(url).pathname.slice(1);
  if (!server || !/^aiplat_t_[0-9a-f]+$/.test(name)) return;
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/** Whether a process is still there (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return true;
  }
}
