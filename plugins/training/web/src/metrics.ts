/**
 * A workload's metric series as the run page reads them (`GET /api/v1/workloads/<id>/metrics`, rank
 * 0's points, a point without a step at its index), for the compare page.
 */
import { coreApi } from '@aiplat/plugin-sdk/web';
import type { MetricSeries } from './types.ts';

/** name → [step, value] pairs in step order. */
export type WorkloadSeries = Map<string, [number, number][]>;

export async function loadWorkloadMetrics(workloadId: string): Promise<WorkloadSeries> {
  const answer = await coreApi.get<{ series: MetricSeries[] }>(`/workloads/${encodeURIComponent(workloadId)}/metrics`);
  const out: WorkloadSeries = new Map();
  for (const s of answer.series) {
    const points = new Map<number, number>();
    s.points.forEach((p, i) => {
      if (p.replica === 0) points.set(p.step ?? i, p.value);
    });
    out.set(s.name, [...points].sort(([a], [b]) => a - b));
  }
  return out;
}

/** The last, smallest and mean value of a series, and its last step. */
export function summarise(points: [number, number][] | undefined): { last: number | null; min: number | null; mean: number | null; lastStep: number | null } {
  if (!points || points.length === 0) return { last: null, min: null, mean: null, lastStep: null };
  const values = points.map(([, v]) => v).filter((v) => Number.isFinite(v));
  return {
    last: points.at(-1)![1],
    min: values.length ? Math.min(...values) : null,
    mean: values.length ? values.reduce((a, v) => a + v, 0) / values.length : null,
    lastStep: points.at(-1)![0],
  };
}
