import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { Logger } from '@aiplat/plugin-sdk';
import { EMBEDDED_ACQUIRE_TIMEOUT_MS, explainEmbeddedAcquireTimeout } from './embedded-connection.js';

export type DatabaseKind = 'embedded' | 'postgres';

export interface Database {
  knex: Knex;
  kind: DatabaseKind;
  close(): Promise<void>;
}

// COUNT(*) and bigint ids arrive as numbers on both databases (PGlite already does this).
pg.types.setTypeParser(20, (value: string) => Number(value));

/**
 * The embedded database is PGlite (PostgreSQL compiled to WebAssembly) in `<dataDir>/pgdata`:
 * no server process, no install scripts, the same SQL as the real server. See docs/adr/0002.
 */
async function openEmbedded(dataDir: string): Promise<Knex> {
  const [{ PGlite }, { default: ClientPGLite }, { btree_gist }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('knex-pglite'),
    // The GPU ledger's exclusion constraint needs it (core/src/scheduler/migration.ts).
    import('@electric-sql/pglite/contrib/btree_gist'),
  ]);
  // knex-pglite 0.14 names the command after knex's method, and knex calls DELETE `del`, so a
  // delete resolved to the raw result instead of the row count. Name it as PostgreSQL does.
  class EmbeddedClient extends (ClientPGLite as unknown as new (config: unknown) => { processResponse(obj: unknown, runner: unknown): unknown }) {
    override processResponse(obj: { method?: string } | undefined, runner: unknown): unknown {
      if (obj?.method === 'del') obj.method = 'delete';
      return super.processResponse(obj, runner);
    }
  }
  const pgdata = path.join(dataDir, 'pgdata');
  mkdirSync(pgdata, { recursive: true });
  const pglite = new PGlite({ dataDir: pgdata, extensions: { btree_gist } });
  await pglite.waitReady;
  return knexFactory({
    client: EmbeddedClient as unknown as typeof Knex.Client,
    dialect: 'postgres',
    connection: { pglite } as unknown as Knex.StaticConnectionConfig,
    acquireConnectionTimeout: EMBEDDED_ACQUIRE_TIMEOUT_MS,
  });
}

export async function openDatabase(options: { dataDir: string; databaseUrl?: string; logger: Logger }): Promise<Database> {
  const kind: DatabaseKind = options.databaseUrl ? 'postgres' : 'embedded';
  const knex = options.databaseUrl
    ? knexFactory({
        client: 'pg',
        connection: options.databaseUrl,
        pool: { min: 0, max: 10 },
        acquireConnectionTimeout: 30_000,
      })
    : await openEmbedded(options.dataDir);
  if (kind === 'embedded') explainEmbeddedAcquireTimeout(knex);
  try {
    await knex.raw('select 1');
  } catch (error) {
    await knex.destroy().catch(() => undefined);
    throw new Error(`cannot reach the database (${kind}): ${(error as Error).message}`, { cause: error });
  }
  options.logger.info({ database: kind }, 'database ready');
  return {
    knex,
    kind,
    close: () => knex.destroy(),
  };
}

/** The version of the embedded engine package, e.g. to key caches of initialised data folders. */
export function embeddedEngineVersion(): string {
  let dir = path.dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  while (!existsSync(path.join(dir, 'package.json')) || !readFileSync(path.join(dir, 'package.json'), 'utf8').includes('"@electric-sql/pglite"')) {
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
  return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Create an empty embedded database cluster in `pgdata` (what the first start does) and close it. */
export async function initEmbeddedCluster(pgdata: string): Promise<void> {
  const { PGlite } = await import('@electric-sql/pglite');
  const db = new PGlite({ dataDir: pgdata });
  await db.waitReady;
  await db.close();
}
