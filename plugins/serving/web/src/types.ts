/**
 * What the serving routes answer (the contract's shapes in `../../api/types.ts`, free of backend
 * imports) and what only the UI needs: the models plugin's answers the pickers read, workload logs,
 * the request bodies, and small helpers shared by the pages.
 */
export type {
  ApiDocs,
  ApiKey,
  CreatedApiKey,
  Deployment,
  DeploymentDetail,
  DeploymentMetrics,
  DeploymentState,
  GatewaySettings,
  MetricsPoint,
  ReplicaStatus,
  Revision,
  RevisionState,
  RuntimeInfo,
  ServingResources,
  TrafficEntry,
  UsageReport,
} from '../../api/types.ts';
import type { ApiKey, Deployment, DeploymentState, Revision, RevisionState, ServingResources, TrafficEntry } from '../../api/types.ts';

export const DEPLOYMENT_STATES: DeploymentState[] = ['deploying', 'ready', 'degraded', 'failed', 'stopped'];

type TagType = 'success' | 'info' | 'warning' | 'danger' | 'primary';
/** The colour of a deployment's or a revision's state tag. */
export const STATE_TAG: Record<DeploymentState | RevisionState, TagType> = {
  deploying: 'primary',
  starting: 'primary',
  ready: 'success',
  degraded: 'warning',
  failed: 'danger',
  stopped: 'info',
  retired: 'info',
};
/** The colour of an API key's status. */
export const KEY_STATUS_TAG: Record<ApiKey['status'], TagType> = { active: 'success', expired: 'warning', revoked: 'info' };
/** The colour of a replica's scheduler state. */
export const REPLICA_TAG: Record<string, TagType> = { placed: 'info', starting: 'primary', running: 'primary', ready: 'success', exited: 'info', lost: 'danger' };

/** `r3 100%`, `r3 90% · r4 10%`, or an empty string when nothing takes traffic. */
export function trafficSummary(traffic: TrafficEntry[]): string {
  return [...traffic]
    .sort((a, b) => a.revision - b.revision)
    .map((e) => `r${e.revision} ${e.weight}%`)
    .join(' · ');
}

/** Whether the deployment changes on its own soon (reading it again every 2 s is worth it). */
export function isSettling(d: Pick<Deployment, 'state' | 'pending'> & { revisions?: Pick<Revision, 'state'>[] }): boolean {
  return d.state === 'deploying' || d.state === 'degraded' || d.pending !== null || !!d.revisions?.some((r) => r.state === 'starting' || r.state === 'degraded');
}

/** The revision that takes most of the traffic (else the newest). */
export function liveRevision(d: { traffic: TrafficEntry[]; revisions: Revision[] }): Revision | undefined {
  const top = [...d.traffic].sort((a, b) => b.weight - a.weight || b.revision - a.revision)[0];
  return d.revisions.find((r) => r.number === top?.revision) ?? d.revisions[0];
}

/** `GET /api/v1/workloads/<id>/logs`. */
export interface LogChunk {
  logId: number;
  replica: number;
  text: string;
}

/** Of the models plugin's answers, what the pickers read. */
export interface ModelItem {
  id: string;
  name: string;
  team: string;
  versionCount?: number;
}
export interface ModelVersionItem {
  id: string;
  modelId: string;
  number: number;
  stage: 'draft' | 'staging' | 'production' | 'archived';
  totalSize: number;
  createdAt: string;
  metadata: {
    format?: string;
    architecture: string | null;
    parameters: number | null;
    dtype?: string | null;
    contextLength: number | null;
    quantisation?: { method: string; bits: number | null } | null;
    sizes?: { totalBytes: number; weightBytes: number };
  } | null;
}
export const STAGE_TAG: Record<ModelVersionItem['stage'], TagType> = { draft: 'info', staging: 'warning', production: 'success', archived: 'info' };

/** `POST /deployments`. */
export interface DeployRequest {
  name: string;
  team?: string;
  servedModelName?: string;
  modelVersion: string;
  runtime: string;
  executor?: string;
  resources: ServingResources;
  replicas: number;
  options: Record<string, unknown>;
}

/** `POST /deployments/:id/revisions`. */
export interface RevisionRequest {
  modelVersion?: string;
  runtime?: string;
  executor?: string;
  resources?: ServingResources;
  replicas?: number;
  options?: Record<string, unknown>;
  canaryWeight?: number;
}

/** A deployment name: as the API's rule (letters, digits, `.`, `_`, `-`; starting with a letter or digit; at most 63). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const NAME_MAX = 63;
/** A served model name: as the API's rule (also `:` and `/`; at most 128). */
export const SERVED_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]*$/;
export const SERVED_NAME_MAX = 128;
/** Replicas per revision, as the API allows. */
export const REPLICAS_MAX = 32;

/** The resources part of the forms (wizard, change dialog). */
export interface ResourceForm {
  executor: string;
  /** `none`: CPU only; `whole`: whole cards; `share`: a slice of one card's memory. */
  gpuMode: 'none' | 'whole' | 'share';
  gpus: number;
  gpuMemoryMiB: number;
  cpu: number | null;
  memoryMiB: number | null;
  replicas: number;
}

export function resourceForm(from?: { executor: string; resources: ServingResources; replicas: number }): ResourceForm {
  const r = from?.resources;
  return {
    executor: from?.executor ?? 'local',
    gpuMode: r?.gpuMemoryMiB ? 'share' : r && r.gpus > 0 ? 'whole' : r ? 'none' : 'whole',
    gpus: r && r.gpus > 0 ? r.gpus : 1,
    gpuMemoryMiB: r?.gpuMemoryMiB ?? 8192,
    cpu: r?.cpu ?? null,
    memoryMiB: r?.memoryMiB ?? null,
    replicas: from?.replicas ?? 1,
  };
}

/** The API's `resources` for the form. */
export function resourcesBody(f: ResourceForm): ServingResources {
  const body: ServingResources = { gpus: f.gpuMode === 'whole' ? f.gpus : 0 };
  if (f.gpuMode === 'share') body.gpuMemoryMiB = f.gpuMemoryMiB;
  if (f.cpu !== null && f.cpu > 0) body.cpu = f.cpu;
  if (f.memoryMiB !== null && f.memoryMiB > 0) body.memoryMiB = f.memoryMiB;
  return body;
}

/** The same JSON (keys in any order). */
export function sameJson(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(norm) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([x], [y]) => x.localeCompare(y)).map(([k, x]) => [k, norm(x)])) : v;
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

/** Copy text to the clipboard (a hidden textarea where the Clipboard API is not allowed, e.g. plain http). */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  try {
    document.execCommand('copy');
  } finally {
    area.remove();
  }
}
