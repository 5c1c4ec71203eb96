import type { Knex } from 'knex';
import { chainRecords, rowToRecord, type AuditRow } from './chain.js';

/**
 * Core migration 0004_audit_chain (listed in core/src/db/migrations.ts). Released migrations never
 * change: a later change to the audit table is a new migration.
 *
 * It turns the foundation's `audit_log` into the append-only hash chain (docs/audit.md):
 * - new columns: actor_type, resource_type, resource_id, team_id, client_ip, outcome, prev_hash, hash;
 * - rows written before it are kept and chained: their times cut to milliseconds (the precision the
 *   chain hashes), actor_type `user` when they name an actor and `anonymous` otherwise, the outcome
 *   from their status, ids renumbered 1, 2, 3, … in their order, then hashed in that order from
 *   the genesis value, so `verify` covers them like any later row;
 * - ids are no longer drawn from a sequence: the writer gives each row the next id under the
 *   append lock, so ids have no gaps and a missing id is a deleted row;
 * - triggers refuse UPDATE, DELETE and TRUNCATE, and an INSERT that does not link to the row before it.
 */
export async function auditChainMigration(knex: Knex): Promise<void> {
  await knex.schema.alterTable('audit_log', (t) => {
    t.text('actor_type');
    t.text('resource_type');
    t.text('resource_id');
    t.text('team_id');
    t.text('client_ip');
    t.text('outcome');
    t.text('prev_hash');
    t.text('hash');
  });
  await knex.raw(`
    update audit_log set
      at = date_trunc('milliseconds', at),
      actor_type = case when actor_id is null then 'anonymous' else 'user' end,
      outcome = case when status is null or status < 400 then 'success' when status in (401, 403) then 'denied' when status < 500 then 'failure' else 'error' end
  `);
  // Dense ids in the old order; through negative ids so no two rows ever share one.
  await knex.raw('update audit_log set id = -id');
  await knex.raw(`
    update audit_log as a set id = r.rn
    from (select id, row_number() over (order by id desc) as rn from audit_log) as r
    where a.id = r.id
  `);
  await knex.raw('alter table audit_log alter column id drop default');
  await knex.raw('drop sequence if exists audit_log_id_seq');

  let head = { id: 0, hash: '0'.repeat(64) };
  for (;;) {
    const rows = (await knex('audit_log').where('id', '>', head.id).orderBy('id').limit(1000).select()) as AuditRow[];
    if (rows.length === 0) break;
    const chained = chainRecords(
      head,
      rows.map((row) => {
        const { id: _id, prevHash: _prev, hash: _hash, ...rest } = rowToRecord({ ...row, prev_hash: '', hash: '' });
        return rest;
      }),
    );
    await knex.raw(
      `update audit_log as a set prev_hash = v.prev_hash, hash = v.hash
       from (values ${chained.map(() => '(?::bigint, ?::text, ?::text)').join(', ')}) as v(id, prev_hash, hash)
       where a.id = v.id`,
      chained.flatMap((r) => [r.id, r.prevHash, r.hash]),
    );
    const last = chained[chained.length - 1]!;
    head = { id: last.id, hash: last.hash };
  }

  await knex.raw(`
    alter table audit_log
      alter column actor_type set not null,
      alter column outcome set not null,
      alter column prev_hash set not null,
      alter column hash set not null,
      add constraint audit_log_actor_type_check check (actor_type in ('user', 'token', 'plugin', 'system', 'anonymous')),
      add constraint audit_log_outcome_check check (outcome in ('success', 'denied', 'failure', 'error'))
  `);
  // No indexes beyond the id (the chain, pages, exports) and `at` (time ranges, from 0001): every
  // index is paid for by every audited request, and filters by actor or resource page backwards
  // through the id index, which is fast enough for an administrator's screen.
  // Append-only. Someone with DDL rights can still disable the trigger: that is what the chain
  // (and the head file kept outside the database) is for.
  await knex.raw(`
    create function audit_log_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_log is append-only: % is not allowed (the audit log is a hash chain; see docs/audit.md)', tg_op
        using errcode = 'insufficient_privilege';
    end
    $$
  `);
  await knex.raw('create trigger audit_log_no_change before update or delete on audit_log for each row execute function audit_log_append_only()');
  await knex.raw('create trigger audit_log_no_truncate before truncate on audit_log for each statement execute function audit_log_append_only()');
  // Every new row links to the row before it: row id − 1 exists and its hash is this row's
  // prev_hash (row 1: the genesis value). With the primary key, the table can only grow one chain.
  await knex.raw(`
    create function audit_log_chain() returns trigger language plpgsql as $$
    declare
      previous text;
    begin
      if new.id = 1 then
        previous := '${'0'.repeat(64)}';
      else
        select hash into previous from audit_log where id = new.id - 1;
      end if;
      if previous is null or previous <> new.prev_hash then
        raise exception 'audit_log is a hash chain: row % must follow row % (its prev_hash must be that row''s hash)', new.id, new.id - 1
          using errcode = 'integrity_constraint_violation';
      end if;
      return new;
    end
    $$
  `);
  await knex.raw('create trigger audit_log_chain before insert on audit_log for each row execute function audit_log_chain()');
}
