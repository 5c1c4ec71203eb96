import type { Knex } from 'knex';

interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
}

/** The core's own schema. Append only: a released migration never changes. */
const coreMigrations: Migration[] = [
  {
    name: '0001_foundation',
    async up(knex) {
      await knex.schema.createTable('users', (t) => {
        t.text('id').primary();
        t.text('username').notNullable().unique();
        t.text('password_hash');
        t.jsonb('roles').notNullable().defaultTo('[]');
        t.timestamp('disabled_at', { useTz: true });
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      await knex.schema.createTable('refresh_tokens', (t) => {
        t.text('id').primary();
        t.text('user_id').notNullable().references('users.id').onDelete('CASCADE');
        t.text('token_hash').notNullable().unique();
        t.text('family_id').notNullable().index();
        t.timestamp('expires_at', { useTz: true }).notNullable();
        t.timestamp('revoked_at', { useTz: true });
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      await knex.schema.createTable('plugin_states', (t) => {
        t.text('id').primary();
        t.boolean('enabled').notNullable().defaultTo(true);
        t.jsonb('config').notNullable().defaultTo('{}');
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      await knex.schema.createTable('audit_log', (t) => {
        t.bigIncrements('id').primary();
        t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.text('actor_id');
        t.text('actor_name');
        t.text('action').notNullable();
        t.text('plugin');
        t.text('request_id');
        t.integer('status');
        t.jsonb('details').notNullable().defaultTo('{}');
        t.index(['at']);
      });
      await knex.schema.createTable('settings', (t) => {
        t.text('key').primary();
        t.jsonb('value').notNullable();
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
    },
  },
  {
    name: '0002_operations',
    async up(knex) {
      // Long-running actions (core/src/operations). `seq` orders lists and makes their cursor;
      // `runner` is the instance id of the core process running it, `updated_at` its heartbeat.
      await knex.schema.createTable('operations', (t) => {
        t.text('id').primary();
        t.bigIncrements('seq', { primaryKey: false }).unique();
        t.text('kind').notNullable();
        t.text('owner').notNullable();
        t.text('user_id');
        t.text('title').notNullable();
        t.text('state').notNullable();
        t.double('progress').notNullable().defaultTo(0);
        t.text('message');
        t.jsonb('result');
        t.jsonb('error');
        t.text('runner').notNullable();
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.timestamp('finished_at', { useTz: true });
        t.index(['user_id', 'seq']);
        t.index(['state', 'updated_at']);
      });
      await knex.raw(
        "alter table operations add constraint operations_state_check check (state in ('running', 'succeeded', 'failed', 'cancelled'))",
      );
    },
  },
  {
    name: '0002_stream_tickets',
    async up(knex) {
      // Single-use tickets for opening the WebSocket stream (core/src/events/tickets.ts), stored hashed.
      await knex.schema.createTable('stream_tickets', (t) => {
        t.text('token_hash').primary();
        t.jsonb('principal').notNullable();
        t.timestamp('expires_at', { useTz: true }).notNullable().index();
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
    },
  },
];

/** A knex migration source over in-code migrations, so no file globbing decides what runs. */
export function migrationSource(list: { name: string; up(knex: Knex): Promise<void>; down?(knex: Knex): Promise<void> }[]): Knex.MigrationSource<string> {
  const byName = new Map(list.map((m) => [m.name, m]));
  return {
    getMigrations: async () => [...byName.keys()].sort(),
    getMigrationName: (name) => name,
    getMigration: async (name) => {
      const migration = byName.get(name)!;
      return {
        up: (knex: Knex) => migration.up(knex),
        down: (knex: Knex) => (migration.down ? migration.down(knex) : Promise.resolve()),
      };
    },
  };
}

export async function migrateCore(knex: Knex): Promise<void> {
  await knex.migrate.latest({ migrationSource: migrationSource(coreMigrations), tableName: 'core_migrations' });
}
