/**
 * Team ownership for plugin tables (ARCHITECTURE §5): objects belong to a team, and "only my
 * team's objects" is the default. A plugin adds the ownership columns to its tables, stamps new
 * rows with `ownership(ctx, …)` and reads through `scoped(ctx, …)`.
 *
 * ```ts
 * await db.schema.createTable('p_notes_notes', (t) => { t.text('id').primary(); t.text('body'); ownershipColumns(t); });
 * // create:  await ctx.db('p_notes_notes').insert({ id, body, ...ownership(ctx, 'notes:write', ctx.body.team) });
 * // list:    await scoped(ctx, 'p_notes_notes', 'notes:read').orderBy('created_at');
 * // one:     await scoped(ctx, 'p_notes_notes', 'notes:read').where({ id }).first();   // another team's → undefined → 404
 * ```
 */
import type { Knex } from 'knex';
import { AiplatError } from './errors.js';
import type { RouteContext } from './routes.js';

/** `team_id` and `created_by` (indexed by team), for a table whose rows belong to teams. */
export function ownershipColumns(table: Knex.CreateTableBuilder): void {
  table.text('team_id').notNullable().index();
  table.text('created_by');
}

/**
 * The owner columns of a new row: the team asked for, or the caller's default team, provided the
 * caller holds `permission` for that team (403 otherwise; 400 when they have no team at all).
 */
export function ownership(ctx: RouteContext<any, any, any>, permission: string, team?: string | null): { team_id: string; created_by: string } {
  const user = ctx.user;
  if (!user) throw new AiplatError('unauthenticated');
  const teamId = team ?? user.defaultTeam ?? user.teams?.[0];
  if (!teamId) throw new AiplatError('validation_failed', 'Name a team: you belong to none, so there is no default team', { field: 'team' });
  if (!ctx.can(permission, teamId)) {
    throw new AiplatError('forbidden', `You do not hold "${permission}" in team "${teamId}"`, { permission, team: teamId });
  }
  return { team_id: teamId, created_by: user.id };
}

/**
 * A query on a team-owned table, limited to the rows of teams in which the caller holds
 * `permission` (no limit for a global grant or an administrator). Deny by default: a caller with
 * the permission in no team gets no rows.
 */
export function scoped(ctx: RouteContext<any, any, any>, table: string, permission: string): Knex.QueryBuilder {
  const query = ctx.db(table);
  if (ctx.can(permission, null)) return query;
  const teams = (ctx.user?.teams ?? []).filter((team) => ctx.can(permission, team));
  return teams.length > 0 ? query.whereIn(`${table}.team_id`, teams) : query.whereRaw('false');
}

/**
 * The row of a team-owned table matching `where` that the caller may see with `permission`, or a
 * 404 `not_found` with `message` (the same answer whether the row is missing or another team's,
 * so ids of other teams' objects are not confirmed). `details` go with the error (default: `where`).
 */
export async function scopedOr404<T>(
  ctx: RouteContext<any, any, any>,
  table: string,
  permission: string,
  where: Record<string, unknown>,
  message: string,
  details: Record<string, unknown> = where,
): Promise<T> {
  const row = (await scoped(ctx, table, permission).where(where).first()) as T | undefined;
  if (!row) throw new AiplatError('not_found', message, details);
  return row;
}
