import { mkdirSync } from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { Logger } from '@aiplat/plugin-sdk';
import { guardGlobalConnection } from './request-scope.js';

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
  const [{ PGlite }, { default: ClientPGLite }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('knex-pglite'),
  ]);
  const pgdata = path.join(dataDir, 'pgdata');
  mkdirSync(pgdata, { recursive: true });
  const pglite = new PGlite({ dataDir: pgdata });
  await pglite.waitReady;
  return knexFactory({
    client: ClientPGLite as unknown as typeof Knex.Client,
    dialect: 'postgres',
    connection: { pglite } as unknown as Knex.StaticConnectionConfig,
    acquireConnectionTimeout: 60_000,
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
  guardGlobalConnection(knex);
  try {
    await knex.raw('select 1');
  } catch (error) {
    await knex.destroy().catch(() => undefined);
    throw new Error(`cannot reach the database (${kind}): ${(error as Error).message}`);
  }
  options.logger.info({ database: kind }, 'database ready');
  return {
    knex,
    kind,
    close: () => knex.destroy(),
  };
}
