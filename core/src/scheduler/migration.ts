import type { Knex } from 'knex';

/**
 * 0006_scheduler: nodes and their GPUs, the reservation ledger, workloads with their replicas,
 * events, stored logs and metrics, priority classes and team quotas (core/src/scheduler/).
 *
 * The ledger's one invariant lives in the database, not in the scheduler's code: an exclusion
 * constraint makes two reservations of overlapping memory on one device, held at overlapping
 * times, impossible, whatever the isolation level and however many schedulers race. A whole-card
 * holder reserves the card's whole memory range; a shared holder a slice. `held` runs from the
 * reservation to its release (open while live), so the constraint also covers the history: a
 * released row keeps its time range and the offline checker can prove nothing ever overlapped.
 * It needs btree_gist (device id with `=` in a GiST index): trusted since PostgreSQL 13, and
 * loaded into the embedded engine (core/src/db/database.ts).
 */
export async function schedulerMigration(knex: Knex): Promise<void> {
  await knex.raw('create extension if not exists btree_gist');

  await knex.schema.createTable('nodes', (t) => {
    t.text('id').primary();
    t.text('name').notNullable();
    t.text('address').notNullable();
    t.text('provider').notNullable();
    // The core instance that runs executors for this node (its own machine, its simulated nodes).
    t.text('agent').notNullable();
    t.jsonb('labels').notNullable().defaultTo('{}');
    t.jsonb('executors').notNullable().defaultTo('[]');
    t.boolean('simulated').notNullable().defaultTo(false);
    t.integer('cpu');
    t.integer('memory_mib');
    t.text('state').notNullable().defaultTo('ready');
    t.timestamp('seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw("alter table nodes add constraint nodes_state_check check (state in ('ready', 'offline', 'cordoned'))");

  await knex.schema.createTable('gpu_devices', (t) => {
    t.text('id').primary();
    t.text('node_id').notNullable().references('nodes.id').onDelete('CASCADE');
    t.integer('index').notNullable();
    t.text('uuid').notNullable();
    t.text('model').notNullable();
    t.integer('memory_mib').notNullable();
    t.jsonb('details').notNullable().defaultTo('{}');
    // Gone from the last discovery: kept for the history of its reservations, never placed on.
    t.boolean('present').notNullable().defaultTo(true);
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['node_id', 'index']);
  });

  await knex.schema.createTable('priority_classes', (t) => {
    t.text('name').primary();
    t.integer('value').notNullable();
    // Whether running work of this class may be stopped for work of a higher class.
    t.boolean('preemptible').notNullable().defaultTo(true);
    t.text('description');
  });
  await knex('priority_classes').insert([
    { name: 'low', value: 0, preemptible: true, description: 'Batch work that yields to everything else' },
    { name: 'normal', value: 100, preemptible: true, description: 'The default' },
    { name: 'high', value: 1000, preemptible: false, description: 'Urgent work; never preempted' },
  ]);

  await knex.schema.createTable('workloads', (t) => {
    t.text('id').primary();
    t.bigIncrements('seq', { primaryKey: false }).unique();
    t.text('name').notNullable();
    t.text('kind').notNullable();
    t.text('team_id').notNullable().references('teams.id');
    t.text('user_id');
    t.text('owner').notNullable();
    t.text('executor').notNullable();
    t.text('priority').notNullable();
    t.integer('priority_value').notNullable();
    t.text('state').notNullable();
    t.text('reason');
    t.jsonb('spec').notNullable();
    t.integer('replicas').notNullable();
    // Per replica: whole cards, or a memory slice of one card.
    t.integer('gpus').notNullable().defaultTo(0);
    t.integer('gpu_memory_mib');
    t.integer('attempt').notNullable().defaultTo(0);
    t.integer('retries').notNullable().defaultTo(0);
    t.integer('preemptions').notNullable().defaultTo(0);
    // The fencing epoch: raised at every placement; reports of an older epoch are ignored.
    t.integer('epoch').notNullable().defaultTo(0);
    t.integer('master_port');
    t.integer('exit_code');
    // Set by cancel (the value is the reason) or preemption (`preempted:<by>`), until the replicas stop.
    t.text('stopping');
    t.timestamp('queued_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('scheduled_at', { useTz: true });
    t.timestamp('started_at', { useTz: true });
    t.timestamp('finished_at', { useTz: true });
    t.index(['team_id', 'seq']);
    t.index(['user_id', 'seq']);
  });
  await knex.raw(
    "alter table workloads add constraint workloads_state_check check (state in ('pending', 'scheduled', 'running', 'ready', 'succeeded', 'failed', 'cancelled', 'lost'))",
  );
  await knex.raw("alter table workloads add constraint workloads_kind_check check (kind in ('job', 'service'))");
  // The queue, in the order the scheduler takes it.
  await knex.raw("create index workloads_queue on workloads (priority_value desc, queued_at, seq) where state = 'pending'");
  await knex.raw("create index workloads_active on workloads (state) where state in ('scheduled', 'running', 'ready')");

  await knex.schema.createTable('workload_replicas', (t) => {
    t.text('workload_id').notNullable().references('workloads.id').onDelete('CASCADE');
    t.integer('replica').notNullable();
    t.integer('epoch').notNullable();
    t.text('node_id');
    // pending → placed → starting → running (→ ready) → exited | lost
    t.text('state').notNullable();
    t.jsonb('devices').notNullable().defaultTo('[]');
    t.jsonb('ports').notNullable().defaultTo('{}');
    t.jsonb('handle');
    t.bigInteger('output_offset').notNullable().defaultTo(0);
    t.integer('exit_code');
    t.text('signal');
    t.integer('restarts').notNullable().defaultTo(0);
    t.timestamp('started_at', { useTz: true });
    t.timestamp('finished_at', { useTz: true });
    t.primary(['workload_id', 'replica']);
  });
  await knex.raw(
    "alter table workload_replicas add constraint workload_replicas_state_check check (state in ('pending', 'placed', 'starting', 'running', 'ready', 'exited', 'lost'))",
  );
  await knex.raw("create index workload_replicas_live on workload_replicas (node_id, state) where state in ('placed', 'starting', 'running', 'ready')");

  await knex.schema.createTable('gpu_reservations', (t) => {
    t.bigIncrements('id').primary();
    t.text('device_id').notNullable().references('gpu_devices.id');
    t.text('node_id').notNullable();
    t.text('workload_id').notNullable().references('workloads.id').onDelete('CASCADE');
    t.integer('replica').notNullable();
    t.integer('epoch').notNullable();
    t.text('team_id').notNullable();
    t.text('user_id');
    t.boolean('whole').notNullable();
    t.text('released_reason');
  });
  await knex.raw('alter table gpu_reservations add column memory int4range not null');
  await knex.raw('alter table gpu_reservations add column held tstzrange not null default tstzrange(clock_timestamp(), null)');
  await knex.raw('alter table gpu_reservations add constraint gpu_reservations_memory_check check (not isempty(memory) and lower(memory) >= 0)');
  await knex.raw(
    'alter table gpu_reservations add constraint gpu_reservations_no_overlap exclude using gist (device_id with =, memory with &&, held with &&)',
  );
  await knex.raw('create index gpu_reservations_workload on gpu_reservations (workload_id)');
  await knex.raw('create index gpu_reservations_live on gpu_reservations (device_id) where upper_inf(held)');

  await knex.schema.createTable('workload_events', (t) => {
    t.bigIncrements('id').primary();
    t.text('workload_id').notNullable().references('workloads.id').onDelete('CASCADE');
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('from_state');
    t.text('to_state').notNullable();
    t.text('reason');
    t.integer('epoch').notNullable();
    t.jsonb('details').notNullable().defaultTo('{}');
    t.index(['workload_id', 'id']);
  });

  await knex.schema.createTable('workload_logs', (t) => {
    t.bigIncrements('id').primary();
    t.text('workload_id').notNullable().references('workloads.id').onDelete('CASCADE');
    t.integer('replica').notNullable();
    t.integer('epoch').notNullable();
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('text').notNullable();
    t.index(['workload_id', 'id']);
  });

  await knex.schema.createTable('workload_metrics', (t) => {
    t.bigIncrements('id').primary();
    t.text('workload_id').notNullable().references('workloads.id').onDelete('CASCADE');
    t.integer('replica').notNullable();
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.double('step');
    t.jsonb('values').notNullable();
    t.index(['workload_id', 'id']);
  });

  await knex.schema.createTable('team_quotas', (t) => {
    t.text('team_id').primary().references('teams.id').onDelete('CASCADE');
    // Cards held at once (a slice counts as its share of the card); null: no limit.
    t.double('gpus');
    // GPU-hours per period; null: no limit.
    t.double('gpu_hours');
    t.text('period').notNullable().defaultTo('month');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw("alter table team_quotas add constraint team_quotas_period_check check (period in ('day', 'week', 'month'))");
}

/**
 * 0007_gpu_samples: each card's live state over time (utilisation, memory, temperature, power,
 * processes), kept for AIPLAT_GPU_METRICS_RETENTION_HOURS, and the memory processes outside aiplat
 * hold on each card (the ledger counts it as taken).
 */
export async function gpuSamplesMigration(knex: Knex): Promise<void> {
  await knex.schema.createTable('gpu_samples', (t) => {
    t.bigIncrements('id').primary();
    t.text('device_id').notNullable().references('gpu_devices.id').onDelete('CASCADE');
    t.timestamp('at', { useTz: true }).notNullable();
    t.double('utilization_percent');
    t.double('memory_used_mib');
    t.double('memory_total_mib');
    t.double('temperature_c');
    t.double('power_w');
    t.jsonb('processes').notNullable().defaultTo('[]');
    t.index(['device_id', 'at']);
    t.index(['at']);
  });
  await knex.schema.alterTable('gpu_devices', (t) => {
    t.integer('foreign_memory_mib').notNullable().defaultTo(0);
  });
}

/**
 * 0008_node_admin: what administrators set on a node, kept apart from what discovery reports (which
 * it overwrites): their labels and the environment every replica on the node gets.
 */
export async function nodeAdminMigration(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.jsonb('user_labels').notNullable().defaultTo('{}');
    t.jsonb('env').notNullable().defaultTo('{}');
  });
}

/**
 * 0009_node_connections: hosts administrators add through the API (`POST /api/v1/nodes`, reached
 * by a plugin's node connector: a remote Docker engine...), their image allow-lists, the reason a
 * node is not ready, and the image each replica really ran.
 */
export async function nodeConnectionsMigration(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    // The connector kind (e.g. "docker") of a node added through the API; null for discovered nodes.
    t.text('connector');
    // The connector's settings as given (nothing secret).
    t.jsonb('connection');
    // Secret settings, each encrypted with AIPLAT_SECRET_KEY (a { $secret } marker per field).
    t.jsonb('connection_secrets');
    // Simulated cards given to an added node (a capture name), for machines without GPUs.
    t.text('simulated_gpus');
    t.jsonb('allowed_images').notNullable().defaultTo('[]');
    t.text('state_reason');
  });
  await knex.raw('alter table nodes drop constraint nodes_state_check');
  await knex.raw("alter table nodes add constraint nodes_state_check check (state in ('ready', 'not-ready', 'offline', 'cordoned', 'removed'))");
  await knex.schema.alterTable('workload_replicas', (t) => {
    t.text('image');
  });
}
