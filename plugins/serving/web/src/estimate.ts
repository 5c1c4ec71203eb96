/**
 * The GPU memory estimate of a deployment (`POST /estimate`): the model's weights, what one replica
 * needs (the runtime's estimate, else weights + 20%), all replicas together, and whether it fits on
 * the card it would go on.
 */
import type { ApiClient } from '@aiplat/plugin-sdk/web';
import type { ServingResources } from './types.ts';

export interface EstimateRequest {
  modelVersion: string;
  runtime: string;
  resources: ServingResources;
  replicas: number;
  options: Record<string, unknown>;
}

export interface Estimate {
  weightsMiB: number;
  perReplicaMiB: number;
  totalMiB: number;
  /** The size of the card it would go on, or null (no GPU asked for, or none known). */
  gpuMemoryMiB: number | null;
  fits: boolean;
  reason: string | null;
}

export function requestEstimate(api: ApiClient, body: EstimateRequest): Promise<Estimate> {
  return api.post<Estimate>('/estimate', body);
}

/** MiB as people read it: `512 MiB`, `13.5 GiB`. */
export function mib(value: number | null | undefined, format: (n: number, o?: Intl.NumberFormatOptions) => string): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 1024) return `${format(value / 1024, { maximumFractionDigits: 1 })} GiB`;
  return `${format(value, { maximumFractionDigits: 0 })} MiB`;
}

/** How full the card gets, 0–100 (null without a card size). */
export function usePercent(e: Pick<Estimate, 'perReplicaMiB' | 'gpuMemoryMiB'>): number | null {
  if (!e.gpuMemoryMiB) return null;
  return Math.min(100, Math.round((e.perReplicaMiB / e.gpuMemoryMiB) * 100));
}
