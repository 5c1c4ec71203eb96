// The dashboard's compute widgets, one chunk fetched as the dashboard renders (not in its first script).
export { default as WorkloadsWidget } from './WorkloadsWidget.vue';
export { default as GpuUsageWidget } from './GpuUsageWidget.vue';

/** One point of `GET /gpus/metrics`: the pool at a moment. */
export interface ClusterPoint {
  at: string;
  utilizationPercent: number | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  cards: number;
}
