/**
 * What the workload pages (list, submit, detail, GPU pool, quotas) share: the scheduler API's shapes
 * (core/src/scheduler/routes.ts), state helpers, formatting in the shell's language, and errors of
 * the scheduler API translated by code.
 */
import { computed, ref, onBeforeUnmount, watch, type Directive, type Ref } from 'vue';
import { useI18n } from 'vue-i18n';
import { isApiError, session, useErrorMessage, useLocale, type ReplicaPlacement, type Workload, type WorkloadSpec, type WorkloadState } from '@aiplat/plugin-sdk/web';

export type { Workload, WorkloadSpec, WorkloadState };

// ---- API shapes ------------------------------------------------------------------------------

export const WORKLOAD_STATES: WorkloadState[] = ['pending', 'scheduled', 'running', 'ready', 'succeeded', 'failed', 'cancelled', 'lost'];
export const TERMINAL_STATES: WorkloadState[] = ['succeeded', 'failed', 'cancelled', 'lost'];
export const isTerminal = (state: string) => (TERMINAL_STATES as string[]).includes(state);

// The scheduler's own types (plugin-sdk/src/workload-types.ts), through the SDK's web part.
export type Placement = ReplicaPlacement;

/** An event of the `workloads` stream topic. */
export interface WorkloadChange {
  id: string;
  name: string;
  team: string;
  from: WorkloadState | null;
  state: WorkloadState;
  reason: string | null;
  epoch: number;
}

export interface WorkloadEvent {
  id: number;
  at: string;
  from: WorkloadState | null;
  to: WorkloadState;
  reason: string | null;
  epoch: number;
}

export interface LogChunk {
  logId: number;
  replica: number;
  epoch: number;
  at?: string | null;
  text: string;
}

export interface MetricSeries {
  name: string;
  points: { step: number | null; value: number; replica: number; at: string | null }[];
}

/** An event of the `workloads/<id>/metrics` topic. */
export interface MetricEvent {
  replica: number;
  points: { step: number | null; values: Record<string, number> }[];
}

export interface Gpu {
  id: string;
  index: number;
  uuid: string;
  model: string;
  memoryMiB: number;
  reservedMiB: number;
  /** Used by processes aiplat did not start (counted as taken). */
  foreignMiB?: number;
  free: boolean;
}

export type NodeState = 'ready' | 'not-ready' | 'cordoned' | 'offline';

export interface NodeInfo {
  id: string;
  name: string;
  address: string;
  provider: string;
  /** `ready`, `not-ready` (see `stateReason`), `cordoned` or `offline`. */
  state: NodeState | string;
  stateReason?: string | null;
  simulated: boolean;
  /** Discovered and administrators' labels together. */
  labels: Record<string, string>;
  /** The administrators' own labels (kept apart from the discovered ones). */
  userLabels?: Record<string, string>;
  /** Environment every replica on the node gets. */
  env?: Record<string, string>;
  executors: string[];
  cpu: number | null;
  memoryMiB: number | null;
  seenAt: string | null;
  gpus: Gpu[];
  /** The connector that added it (`docker`), null for a node discovered by a core. */
  kind?: string | null;
  /** Image patterns (globs) it may run; empty: any image. */
  allowedImages?: string[];
  /** Non-secret connection settings of a connected node (`{ url }`). */
  settings?: Record<string, unknown> | null;
  /** Which secrets are set (never their values). */
  secrets?: Record<string, { set: true }>;
  removable?: boolean;
}

/** One averaged sample of a card (`GET /nodes/<node>/gpus/<index>/metrics`). */
export interface GpuMetricPoint {
  at: string;
  utilizationPercent: number | null;
  memoryUsedMiB: number | null;
  temperatureC: number | null;
  powerW: number | null;
}

export interface GpuMetrics {
  deviceId: string;
  model: string;
  memoryMiB: number;
  from: string;
  to: string;
  stepSeconds: number;
  points: GpuMetricPoint[];
}

/** The whole pool over time (`GET /gpus/metrics`). */
export interface ClusterGpuMetrics {
  from: string;
  to: string;
  stepSeconds: number;
  points: { at: string; utilizationPercent: number | null; memoryUsedMiB: number | null; memoryTotalMiB: number | null; cards: number }[];
}

export interface Reservation {
  id: string;
  deviceId: string;
  nodeId: string;
  whole: boolean;
  memoryMiB: number;
  since: string | null;
  until: string | null;
  team: string;
  /** Only for reservations of teams whose workloads the caller may read. */
  workloadId?: string;
  replica?: number;
}

export interface PriorityClass {
  name: string;
  value: number;
  preemptible: boolean;
  description: string | null;
}

export interface QuotaOverview {
  teams: {
    team: string;
    gpusInUse: number;
    quota: { gpus: number | null; gpuHours: number | null; period: 'day' | 'week' | 'month'; gpuHoursUsed: number; periodStart: string; periodEnd: string } | null;
  }[];
  freeGpus: { model: string; free: number; total: number; freeMemoryMiB: number }[];
  waiting: { id: string; name: string; team: string; reason: string | null }[];
}

// ---- permissions -----------------------------------------------------------------------------

/** Whether the signed-in user may cancel (`workloads:cancel`) or retry (`workloads:create`) it: their own, or any of a team they manage. */
export function mayControl(workload: Pick<Workload, 'team' | 'userId'>, permission: 'workloads:cancel' | 'workloads:create'): boolean {
  if (session.can('workloads:manage', workload.team)) return true;
  return workload.userId !== null && workload.userId === session.state.user?.id && session.can(permission, workload.team);
}

/** The teams of the signed-in user, with their names. */
export function useMyTeams() {
  return computed(() => session.state.user?.teams ?? []);
}

// ---- formatting ------------------------------------------------------------------------------

export function useWorkloadFormat() {
  const { t } = useI18n();
  const locale = useLocale();
  const dateTime = computed(
    () => new Intl.DateTimeFormat(locale.value, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }),
  );
  const dayOnly = computed(() => new Intl.DateTimeFormat(locale.value, { year: 'numeric', month: '2-digit', day: '2-digit' }));
  const timeOnly = computed(() => new Intl.DateTimeFormat(locale.value, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }));
  const number = computed(() => new Intl.NumberFormat(locale.value, { maximumFractionDigits: 2 }));

  function duration(ms: number): string {
    if (ms < 1000) return t('workloads.duration.instant');
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return t('workloads.duration.seconds', { s });
    const m = Math.floor(s / 60);
    if (m < 60) return t('workloads.duration.minutes', { m, s: s % 60 });
    const h = Math.floor(m / 60);
    if (h < 24) return t('workloads.duration.hours', { h, m: m % 60 });
    return t('workloads.duration.days', { d: Math.floor(h / 24), h: h % 24 });
  }

  const memory = (mib: number) =>
    mib >= 1024 ? t('workloads.units.gib', { n: number.value.format(Math.round((mib / 1024) * 10) / 10) }) : t('workloads.units.mib', { n: number.value.format(mib) });

  return {
    date: (iso: string | null | undefined) => (iso ? dateTime.value.format(new Date(iso)) : ''),
    day: (iso: string | null | undefined) => (iso ? dayOnly.value.format(new Date(iso)) : ''),
    time: (iso: string | null | undefined) => (iso ? timeOnly.value.format(new Date(iso)) : ''),
    number: (n: number) => number.value.format(n),
    /** MiB as GiB with one decimal ("31.5 GiB"), or MiB below one GiB. */
    memory,
    duration,
    /** How long it ran (or has been running, or waiting) as of `now`. */
    runtime(w: Pick<Workload, 'createdAt' | 'startedAt' | 'finishedAt'>, now: number): string {
      const start = Date.parse(w.startedAt ?? w.createdAt);
      const end = w.finishedAt ? Date.parse(w.finishedAt) : now;
      return duration(Math.max(0, end - start));
    },
    /** What it asks for: "2 GPUs × 2 replicas", "8 GiB slice", "CPU only". */
    resources(spec: WorkloadSpec): string {
      const replicas = spec.replicas ?? 1;
      const gpus = spec.resources?.gpus ?? 0;
      const slice = spec.resources?.gpuMemoryMiB;
      const one = slice !== undefined ? t('workloads.resources.slice', { memory: memory(slice) }) : gpus > 0 ? t('workloads.resources.gpus', { n: gpus }, gpus) : t('workloads.resources.cpu');
      return replicas > 1 ? t('workloads.resources.perReplica', { each: one, n: replicas }) : one;
    },
  };
}

/** A clock that ticks every second while `active` is true (durations of running work). */
export function useNow(active: Ref<boolean>): Ref<number> {
  const now = ref(Date.now());
  let timer: ReturnType<typeof setInterval> | undefined;
  watch(
    active,
    (on) => {
      clearInterval(timer);
      timer = on ? setInterval(() => (now.value = Date.now()), 1000) : undefined;
    },
    { immediate: true },
  );
  onBeforeUnmount(() => clearInterval(timer));
  return now;
}

// ---- errors ----------------------------------------------------------------------------------

export interface SchedulerError {
  /** The error in the shell's language (translated by code, with the server's message where it helps). */
  message: string;
  /** For `unschedulable`: every reason the scheduler gave, as it gave them. */
  problems: string[];
  /** For `validation_failed`: the field the server named. */
  field?: string;
}

/** Errors of the scheduler API: `unschedulable` with its `details.problems`, `validation_failed` with its field. */
export function useSchedulerError(): (error: unknown) => SchedulerError {
  const generic = useErrorMessage();
  const { t } = useI18n();
  return (error) => {
    if (!isApiError(error)) return { message: generic(error), problems: [] };
    const details = (error.details ?? {}) as { problems?: unknown; field?: unknown };
    if (error.code === 'unschedulable') {
      const problems = Array.isArray(details.problems) ? details.problems.map(String) : [error.message];
      return { message: t('errors.unschedulable'), problems };
    }
    // A malformed spec: `details.problems` is `[{ path, message }]` (core/src/http/validation.ts).
    if (error.code === 'validation_failed' && Array.isArray(details.problems) && details.problems.length > 0) {
      const problems = (details.problems as { path?: unknown; message?: unknown }[]).map((p) => (p.path ? `${String(p.path)}: ${String(p.message)}` : String(p.message)));
      return { message: t('errors.validation_failed'), problems };
    }
    return { message: generic(error), problems: [], ...(typeof details.field === 'string' ? { field: details.field } : {}) };
  };
}

/** `v-row-test="'workload-row-x'"`: a `data-test` on the table row (<tr>) the cell is in. */
export const vRowTest: Directive<HTMLElement, string> = {
  mounted: (el, { value }) => (el.closest('tr') ?? el).setAttribute('data-test', value),
  updated: (el, { value }) => (el.closest('tr') ?? el).setAttribute('data-test', value),
};

/** Debounce: run `fn` once, `ms` after the last call. */
export function debounced(fn: () => void, ms: number): { (): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const call = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/** The GPU charts' ranges, in seconds. */
export const GPU_RANGES = { '15m': 900, '1h': 3600, '6h': 21_600, '24h': 86_400 } as const;
export type GpuRange = keyof typeof GPU_RANGES;

/**
 * What a node is called: for a host added through the API the name it was given (its id; `name` is
 * what the host calls itself, and two hosts may say the same), for a discovered node its name.
 */
export const nodeTitle = (node: Pick<NodeInfo, 'id' | 'name' | 'kind'>) => (node.kind ? node.id : node.name);
