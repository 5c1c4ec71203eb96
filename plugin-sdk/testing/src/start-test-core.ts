import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import pg from 'pg';
import { loadConfig, startCore, type CoreConfig, type RunningCore } from '@aiplat/core';
import { TestClient } from './client.js';
import { preparedDataDir } from './template.js';

export const TEST_ADMIN_PASSWORD = 'test-admin-password-1234';

export interface TestCoreOptions {
  /** Plugin folders (or folders of plugin folders), relative to the working directory or absolute. Default: none. */
  plugins?: string[];
  /** Settings over the test defaults. */
  config?: Partial<CoreConfig>;
  /** Reuse a data folder (and database) of an earlier core, e.g. to test a restart. */
  dataDir?: string;
  databaseUrl?: string;
  /**
   * `embedded` (PGlite in a temp folder) or `postgres` (a fresh database on TEST_DATABASE_URL).
   * Default: `postgres` when AIPLAT_TEST_DATABASE=postgres, else `embedded`.
   */
  database?: 'embedded' | 'postgres';
}

export interface LogEntry {
  level: number;
  msg?: string;
  [key: string]: unknown;
}

export interface TestCore {
  url: string;
  /** Signed in as the bootstrap admin. */
  client: TestClient;
  core: RunningCore;
  dataDir: string;
  databaseUrl?: string;
  /** Everything the core logged, parsed. */
  logs: LogEntry[];
  /**
   * Create a user through the API (as the admin) and sign them in: global `roles` by id or name,
   * `teams` by id or name. The password is `<username>-password-1234`.
   */
  createUser(username: string, roles?: string[], options?: { teams?: (string | { team: string; roles?: string[] })[] }): Promise<{ id: string; password: string; client: TestClient }>;
  /** Stop and start again on the same data folder and database. */
  restart(): Promise<TestCore>;
  /** Stop and delete the temp data folder and database (unless `keep`). */
  stop(options?: { keep?: boolean }): Promise<void>;
}

function testDatabaseKind(options: TestCoreOptions): 'embedded' | 'postgres' {
  return options.database ?? (process.env.AIPLAT_TEST_DATABASE === 'postgres' ? 'postgres' : 'embedded');
}

/** SIGKILL every supervisor and command process group under a local executor's run folders. */
export function killLocalReplicas(runsDir: string): void {
  if (!existsSync(runsDir)) return;
  for (const workload of readdirSync(runsDir)) {
    for (const run of readdirSync(path.join(runsDir, workload))) {
      // An exit record means both are gone: their pids may belong to someone else by now.
      if (existsSync(path.join(runsDir, workload, run, 'exit.json'))) continue;
      for (const [file, group] of [['child.pid', true], ['supervisor.pid', false]] as const) {
        try {
          const pid = Number(readFileSync(path.join(runsDir, workload, run, file), 'utf8').trim());
          if (pid > 1) process.kill(group ? -pid : pid, 'SIGKILL');
        } catch {
          // not started, or already gone
        }
      }
    }
  }
}

/** A new empty database on the server named by TEST_DATABASE_URL. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) throw new Error('TEST_DATABASE_URL is not set: it must name a PostgreSQL server the tests may create databases on');
  const name = `aiplat_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/**
 * Boot a real core (real HTTP server, real database, real plugin kernel) for a test, signed in
 * as the admin. Embedded by default, so nothing needs to be running.
 */
export async function startTestCore(options: TestCoreOptions = {}): Promise<TestCore> {
  return startOwned(options, undefined);
}

/** `owned`: what a restarted core inherits from its predecessor (the temp folder and database it made). */
async function startOwned(options: TestCoreOptions, owned: { dataDir: boolean; dropDatabase?: () => Promise<void> } | undefined): Promise<TestCore> {
  const dataDir = options.dataDir ?? (await preparedDataDir());
  const ownsDataDir = owned?.dataDir ?? !options.dataDir;
  let databaseUrl = options.databaseUrl;
  let dropDatabase: (() => Promise<void>) | undefined = owned?.dropDatabase;
  if (!databaseUrl && testDatabaseKind(options) === 'postgres') {
    const created = await createTestDatabase();
    databaseUrl = created.url;
    dropDatabase = created.drop;
  }
  const logs: LogEntry[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogEntry);
      done();
    },
  });
  const logger = pino({ level: process.env.AIPLAT_TEST_LOG_LEVEL ?? 'info' }, sink);
  const base = loadConfig({}, process.cwd());
  const config: CoreConfig = {
    ...base,
    port: 0,
    host: '127.0.0.1',
    dataDir,
    databaseUrl,
    redisUrl: testDatabaseKind(options) === 'postgres' ? process.env.TEST_REDIS_URL : undefined,
    adminPassword: TEST_ADMIN_PASSWORD,
    pluginDirs: (options.plugins ?? []).map((p) => path.resolve(process.cwd(), p)),
    shutdownGrace: 2,
    ...options.config,
  };
  const core = await startCore(config, { logger });
  const login = await new TestClient(core.url).post<{ accessToken: string }>('/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD });
  if (login.status !== 200) {
    await core.stop();
    throw new Error(`test core sign-in failed: ${login.status} ${login.text}`);
  }
  let stopped = false;
  const handle: TestCore = {
    url: core.url,
    client: new TestClient(core.url, login.body.accessToken),
    core,
    dataDir,
    databaseUrl,
    logs,
    async createUser(username, roles = ['viewer'], userOptions = {}) {
      const password = `${username}-password-1234`;
      const created = await handle.client.post<{ id: string }>('/api/v1/users', { username, password, roles, ...(userOptions.teams ? { teams: userOptions.teams } : {}) });
      if (created.status !== 201) throw new Error(`creating user ${username} failed: ${created.status} ${created.text}`);
      const signIn = await handle.client.anonymous().post<{ accessToken: string }>('/api/v1/auth/login', { username, password });
      if (signIn.status !== 200) throw new Error(`signing in ${username} failed: ${signIn.status} ${signIn.text}`);
      return { id: created.body.id, password, client: handle.client.withToken(signIn.body.accessToken) };
    },
    async restart() {
      await handle.stop({ keep: true });
      // The new core cleans up what this one made when it stops for good.
      return startOwned({ ...options, dataDir, databaseUrl }, { dataDir: ownsDataDir, dropDatabase });
    },
    async stop(stopOptions = {}) {
      if (stopped) return;
      stopped = true;
      await core.stop();
      if (!stopOptions.keep) {
        // Replicas of the local executor outlive a core by design (the next one re-attaches); a
        // test core that is gone for good takes them with it.
        killLocalReplicas(path.join(dataDir, 'runs'));
        if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
        await dropDatabase?.();
      }
    },
  };
  return handle;
}
