/**
 * What the datasets pages share: the API client, authenticated downloads (the file, preview image
 * and archive routes need the bearer token, so they are fetched as blobs), number, size and date
 * formatting in the shell's language, errors in the shell's language, and following an operation
 * (an import) to its end.
 */
import { computed, onScopeDispose, ref, shallowRef } from 'vue';
import { useI18n } from 'vue-i18n';
import { coreApi, isApiError, session, useErrorMessage, useLocale, usePluginApi, useStream, withBase } from '@aiplat/plugin-sdk/web';
import { parseResponseError } from './errors.ts';
import type { Operation } from './types.ts';

export const PLUGIN = 'datasets';
export const API_PREFIX = `/api/plugins/${PLUGIN}`;

export function useDatasetsApi() {
  return usePluginApi(PLUGIN);
}

export const enc = encodeURIComponent;

/** An absolute path under the base path for one of our routes, or a URL the server gave us. */
export function apiUrl(pathOrUrl: string): string {
  if (/^https?:\/\//.test(pathOrUrl)) return pathOrUrl;
  if (pathOrUrl.startsWith('/api/')) return withBase(pathOrUrl);
  return withBase(`${API_PREFIX}${pathOrUrl.startsWith('/') ? pathOrUrl : `/${pathOrUrl}`}`);
}

/** GET with the session's bearer token (one refresh and retry on a 401); the body as a blob, and its file name when the server gave one. */
export async function fetchBlob(pathOrUrl: string, signal?: AbortSignal): Promise<{ blob: Blob; filename: string | null }> {
  const send = async () => fetch(apiUrl(pathOrUrl), { signal, headers: { authorization: `Bearer ${await session.accessToken()}` } });
  let res = await send();
  if (res.status === 401) {
    await session.refresh();
    res = await send();
  }
  if (!res.ok) throw await parseResponseError(res);
  return { blob: await res.blob(), filename: filenameOf(res.headers.get('content-disposition')) };
}

function filenameOf(disposition: string | null): string | null {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ''));
    } catch {
      /* fall through */
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain?.[1]?.trim() ?? null;
}

/** Save a blob as a download. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Numbers, sizes and dates in the shell's language. */
export function useFormat() {
  const locale = useLocale();
  const { t } = useI18n();
  const number = computed(() => new Intl.NumberFormat(locale.value));
  const decimal = computed(() => new Intl.NumberFormat(locale.value, { maximumFractionDigits: 1 }));
  const dateTime = computed(() => new Intl.DateTimeFormat(locale.value, { dateStyle: 'medium', timeStyle: 'short' }));
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  return {
    number: (n: number | null | undefined) => (n === null || n === undefined ? '—' : number.value.format(n)),
    bytes: (n: number | null | undefined) => {
      if (n === null || n === undefined) return '—';
      let value = n;
      let unit = 0;
      while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
        value /= 1024;
        unit++;
      }
      return `${unit === 0 ? number.value.format(value) : decimal.value.format(value)} ${UNITS[unit]}`;
    },
    date: (iso: string | null | undefined) => (iso ? dateTime.value.format(new Date(iso)) : '—'),
    taskType: (type: string) => t(`datasets.taskTypes.${type}`),
    retention: (keep: number | null) => (keep === null ? t('datasets.retention.all') : t('datasets.retention.newest', { n: keep }, keep)),
  };
}

/** `useErrorMessage` plus the server's own words for the errors whose message says what was wrong (a bad path, a checksum mismatch). */
export function useShownError() {
  const errorMessage = useErrorMessage();
  return (error: unknown): string => {
    const shown = errorMessage(error);
    if (isApiError(error) && error.message && !shown.includes(error.message)) return `${shown} ${error.message}`;
    return shown;
  };
}

/** The team's name, for the teams the signed-in user belongs to (else its id). */
export function teamName(id: string): string {
  return session.state.user?.teams.find((team) => team.id === id)?.name ?? id;
}

const POLL_MS = 2000;

/**
 * Follow one operation (an import) from the request that starts it to its end: its changes arrive
 * on the `operations` stream topic while it runs, and it is read back every few seconds and after a
 * stream reset, so a missed event never leaves the bar stuck.
 */
export function useOperation<R>(onFinished?: (op: Operation<R>) => void) {
  const operation = shallowRef<Operation<R>>();
  const starting = ref(false);
  const startError = shallowRef<unknown>();
  const running = computed(() => starting.value || operation.value?.state === 'running');
  const percent = computed(() => Math.min(100, Math.max(0, Math.round((operation.value?.progress ?? 0) * 100))));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let generation = 0;

  function apply(op: Operation<R>) {
    const current = operation.value;
    if (!current || op.id !== current.id || current.state !== 'running') return;
    if (op.state === 'running' && op.updatedAt < current.updatedAt) return;
    operation.value = { ...current, ...op, progress: Math.max(current.progress ?? 0, op.progress ?? 0) };
    if (op.state !== 'running') {
      clearTimeout(timer);
      onFinished?.(operation.value);
    }
  }

  async function poll() {
    const current = operation.value;
    if (!current || current.state !== 'running') return;
    const mine = generation;
    try {
      const op = await coreApi.get<Operation<R>>(`/operations/${enc(current.id)}`);
      if (mine === generation) apply(op);
    } catch {
      /* the stream may still bring it; try again */
    }
    if (mine === generation && operation.value?.state === 'running') {
      clearTimeout(timer);
      timer = setTimeout(() => void poll(), POLL_MS);
    }
  }

  const topic = computed(() => (operation.value?.state === 'running' ? 'operations' : null));
  useStream<Operation<R>>(topic, (event) => event.payload?.id && apply(event.payload), { onReset: () => void poll() });

  async function start(request: () => Promise<{ operation: Partial<Operation<R>> & { id: string } }>): Promise<boolean> {
    reset();
    starting.value = true;
    const mine = generation;
    try {
      const { operation: op } = await request();
      if (mine !== generation) return false;
      operation.value = { progress: 0, message: null, error: null, title: '', updatedAt: '', result: undefined as R, ...op, state: op.state ?? 'running' } as Operation<R>;
      if (operation.value.state !== 'running') onFinished?.(operation.value);
      else timer = setTimeout(() => void poll(), 500);
      return true;
    } catch (e) {
      if (mine === generation) startError.value = e;
      return false;
    } finally {
      if (mine === generation) starting.value = false;
    }
  }

  function reset() {
    generation++;
    clearTimeout(timer);
    operation.value = undefined;
    startError.value = undefined;
    starting.value = false;
  }

  onScopeDispose(() => {
    generation++;
    clearTimeout(timer);
  });

  return { operation, starting, startError, running, percent, start, reset };
}
