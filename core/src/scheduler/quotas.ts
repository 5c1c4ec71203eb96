import type { Knex } from 'knex';

export type QuotaPeriod = 'day' | 'week' | 'month';

export interface TeamQuota {
  team: string;
  /** Cards held at once; a slice counts as its share of its card. null: no limit. */
  gpus: number | null;
  /** GPU-hours per period; null: no limit. */
  gpuHours: number | null;
  period: QuotaPeriod;
}

export interface QuotaState extends TeamQuota {
  gpusInUse: number;
  gpuHoursUsed: number;
  periodStart: string;
  periodEnd: string;
}

/** A reservation's share of its card: 1 for a whole card, else its slice of the card's memory. */
const SHARE = 'case when r.whole then 1.0 else (upper(r.memory) - lower(r.memory))::float8 / d.memory_mib end';

/** The bounds of the current quota period in the configured time zone, computed by PostgreSQL's time zone data. */
export async function periodBounds(db: Knex, period: QuotaPeriod, timeZone: string): Promise<{ start: Date; end: Date }> {
  const { rows } = (await db.raw(
    `select (date_trunc(?, now() at time zone ?) at time zone ?) as start,
            ((date_trunc(?, now() at time zone ?) + ('1 ' || ?)::interval) at time zone ?) as "end"`,
    [period, timeZone, timeZone, period, timeZone, period, timeZone],
  )) as { rows: { start: Date | string; end: Date | string }[] };
  return { start: new Date(rows[0]!.start), end: new Date(rows[0]!.end) };
}

export async function listQuotas(db: Knex, teams?: string[]): Promise<TeamQuota[]> {
  const query = db('team_quotas').select('team_id', 'gpus', 'gpu_hours', 'period').orderBy('team_id');
  if (teams) query.whereIn('team_id', teams);
  const rows = (await query) as { team_id: string; gpus: number | null; gpu_hours: number | null; period: QuotaPeriod }[];
  return rows.map((r) => ({ team: r.team_id, gpus: r.gpus, gpuHours: r.gpu_hours, period: r.period }));
}

/** Cards each team holds now (slices as shares). */
export async function gpusInUse(db: Knex, teams?: string[]): Promise<Map<string, number>> {
  const query = db('gpu_reservations as r')
    .join('gpu_devices as d', 'd.id', 'r.device_id')
    .whereRaw('upper_inf(r.held)')
    .groupBy('r.team_id')
    .select('r.team_id', db.raw(`sum(${SHARE}) as used`));
  if (teams) query.whereIn('r.team_id', teams);
  const rows = (await query) as { team_id: string; used: number | string }[];
  return new Map(rows.map((r) => [r.team_id, Number(r.used)]));
}

/** GPU-hours held between `from` and `to` (open reservations count up to now), grouped by team, user or workload. */
export async function gpuHours(db: Knex, options: { from: Date; to: Date; groupBy: 'team' | 'user' | 'workload'; teams?: string[]; workloads?: string[] }): Promise<Map<string, number>> {
  const column = options.groupBy === 'team' ? 'r.team_id' : options.groupBy === 'user' ? 'r.user_id' : 'r.workload_id';
  const query = db('gpu_reservations as r')
    .join('gpu_devices as d', 'd.id', 'r.device_id')
    .whereRaw('r.held && tstzrange(?, ?)', [options.from, options.to])
    .groupBy(column)
    .select(
      db.raw(`${column} as key`),
      db.raw(
        `sum(${SHARE} * extract(epoch from (least(coalesce(upper(r.held), now()), ?::timestamptz) - greatest(lower(r.held), ?::timestamptz)))) / 3600.0 as hours`,
        [options.to, options.from],
      ),
    );
  if (options.teams) query.whereIn('r.team_id', options.teams);
  if (options.workloads) query.whereIn('r.workload_id', options.workloads);
  const rows = (await query) as { key: string | null; hours: number | string }[];
  return new Map(rows.map((r) => [r.key ?? '', Math.max(0, Number(r.hours))]));
}

/** Each quota with what its team uses now and in the current period. */
export async function quotaStates(db: Knex, timeZone: string, teams?: string[]): Promise<QuotaState[]> {
  const quotas = await listQuotas(db, teams);
  if (quotas.length === 0) return [];
  const inUse = await gpusInUse(db, quotas.map((q) => q.team));
  const out: QuotaState[] = [];
  const bounds = new Map<QuotaPeriod, { start: Date; end: Date }>();
  for (const quota of quotas) {
    if (!bounds.has(quota.period)) bounds.set(quota.period, await periodBounds(db, quota.period, timeZone));
    const { start, end } = bounds.get(quota.period)!;
    const hours = quota.gpuHours === null ? new Map<string, number>() : await gpuHours(db, { from: start, to: end, groupBy: 'team', teams: [quota.team] });
    out.push({
      ...quota,
      gpusInUse: round(inUse.get(quota.team) ?? 0),
      gpuHoursUsed: round(hours.get(quota.team) ?? 0),
      periodStart: start.toISOString(),
      periodEnd: end.toISOString(),
    });
  }
  return out;
}

export function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
