import type { Knex } from 'knex';
import { auditChainMigration } from '../audit/migration.js';
import { pluginPackagesMigration } from '../plugins/migration.js';
import { gpuSamplesMigration, nodeAdminMigration, nodeConnectionsMigration, schedulerMigration } from '../scheduler/migration.js';

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
  {
    name: '0003_identity',
    async up(knex) {
      // Users grow profiles, soft deletion and an origin; roles, teams and their members are
      // stored; personal API tokens and login throttling (core/src/auth/).
      await knex.schema.alterTable('users', (t) => {
        t.text('display_name');
        t.text('email');
        t.text('source').notNullable().defaultTo('local');
        t.text('external_id');
        t.text('default_team_id');
        t.timestamp('deleted_at', { useTz: true });
        t.timestamp('last_login_at', { useTz: true });
        t.timestamp('password_changed_at', { useTz: true });
        t.unique(['source', 'external_id']);
      });
      await knex.schema.createTable('roles', (t) => {
        t.text('id').primary();
        t.text('name').notNullable().unique();
        t.text('description');
        t.boolean('builtin').notNullable().defaultTo(false);
        t.jsonb('permissions').notNullable().defaultTo('[]');
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      await knex('roles').insert([
        { id: 'admin', name: 'Admin', builtin: true, description: 'Every permission, in every team' },
        { id: 'operator', name: 'Operator', builtin: true, description: 'Works with the platform: the permissions the core and plugins give operators' },
        { id: 'viewer', name: 'Viewer', builtin: true, description: 'Reads: the permissions the core and plugins give viewers' },
      ]);
      await knex.schema.createTable('teams', (t) => {
        t.text('id').primary();
        t.text('name').notNullable().unique();
        t.text('description');
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      await knex('teams').insert({ id: 'default', name: 'default', description: 'Every user belongs here unless placed elsewhere' });
      await knex.schema.createTable('team_members', (t) => {
        t.text('team_id').notNullable().references('teams.id').onDelete('CASCADE');
        t.text('user_id').notNullable().references('users.id').onDelete('CASCADE');
        // Roles the member holds in this team only (global roles are users.roles).
        t.jsonb('roles').notNullable().defaultTo('[]');
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.primary(['team_id', 'user_id']);
        t.index(['user_id']);
      });
      const users = (await knex('users').select('id')) as { id: string }[];
      if (users.length > 0) await knex('team_members').insert(users.map((u) => ({ team_id: 'default', user_id: u.id })));
      await knex('users').update({ default_team_id: 'default' });
      await knex.schema.createTable('api_tokens', (t) => {
        t.text('id').primary();
        t.text('user_id').notNullable().references('users.id').onDelete('CASCADE');
        t.text('name').notNullable();
        t.text('secret_hash').notNullable();
        t.jsonb('permissions').notNullable().defaultTo('[]');
        t.timestamp('expires_at', { useTz: true });
        t.timestamp('last_used_at', { useTz: true });
        t.timestamp('revoked_at', { useTz: true });
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
        t.index(['user_id']);
      });
      await knex.schema.createTable('login_failures', (t) => {
        // `user:<username>` or `ip:<address>`.
        t.text('key').primary();
        t.integer('failures').notNullable().defaultTo(0);
        t.timestamp('last_failure_at', { useTz: true }).notNullable();
        t.timestamp('locked_until', { useTz: true });
      });
    },
  },
  // [audit] The audit log becomes an append-only hash chain: core/src/audit/migration.ts.
  { name: '0004_audit_chain', up: auditChainMigration },
  {
    name: '0005_oidc_sso',
    async up(knex) {
      // Single sign-on (core/src/auth/oidc.ts). A sign-in in progress: its state (stored hashed,
      // single use, 10 minutes), the browser it started in, the nonce, the PKCE verifier and the
      // shell path to return to.
      await knex.schema.createTable('oidc_logins', (t) => {
        t.text('state_hash').primary();
        t.text('browser_hash').notNullable();
        t.text('nonce').notNullable();
        t.text('code_verifier').notNullable();
        t.text('redirect').notNullable();
        t.timestamp('expires_at', { useTz: true }).notNullable().index();
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      // The one-time code that hands a finished sign-in to the shell (hashed, 60 s, single use).
      await knex.schema.createTable('oidc_handoffs', (t) => {
        t.text('code_hash').primary();
        t.text('user_id').notNullable().references('users.id').onDelete('CASCADE');
        t.timestamp('expires_at', { useTz: true }).notNullable().index();
        t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      });
      // Where a membership came from: null when an administrator added it, `oidc` when the
      // single sign-on mapping did (those follow the provider's groups at every sign-in).
      await knex.schema.alterTable('team_members', (t) => {
        t.text('source');
      });
    },
  },
  // [scheduler] Nodes, GPUs, the reservation ledger, workloads, quotas: core/src/scheduler/migration.ts.
  { name: '0006_scheduler', up: schedulerMigration },
  // GPU samples over time and memory held outside aiplat: core/src/scheduler/migration.ts.
  { name: '0007_gpu_samples', up: gpuSamplesMigration },
  // Administrators' labels and environment per node.
  { name: '0008_node_admin', up: nodeAdminMigration },
  { name: '0009_node_connections', up: nodeConnectionsMigration },
  // Plugin packages installed at run time: core/src/plugins/migration.ts.
  { name: '0010_plugin_packages', up: pluginPackagesMigration },
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
