import type { Knex } from 'knex';

/** Installed plugin packages, every version kept for rollback, and the unsigned allow-list (docs/adr/0010). */
export async function pluginPackagesMigration(knex: Knex): Promise<void> {
  // One row per plugin installed from a package: the version running and the one before it.
  await knex.schema.createTable('installed_plugins', (t) => {
    t.text('id').primary();
    t.text('version').notNullable();
    t.text('previous_version');
    t.timestamp('installed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('installed_by');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // Every package version kept in storage, with what its check found and the migrations it carries.
  await knex.schema.createTable('plugin_packages', (t) => {
    t.text('plugin_id').notNullable();
    t.text('version').notNullable();
    t.text('sha256').notNullable();
    t.bigInteger('size').notNullable();
    t.text('storage_key').notNullable();
    t.text('signature').notNullable();
    t.text('key_id');
    t.text('publisher');
    t.text('source').notNullable();
    t.jsonb('migrations').notNullable().defaultTo('[]');
    t.timestamp('added_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('added_by');
    t.primary(['plugin_id', 'version']);
  });
  await knex.schema.createTable('plugin_unsigned_allowlist', (t) => {
    t.text('plugin_id').primary();
    t.text('note');
    t.text('created_by');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}
