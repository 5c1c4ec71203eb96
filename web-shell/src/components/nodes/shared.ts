/**
 * What the nodes page and its dialogs share: the node connectors' rules (core/src/scheduler), the
 * Docker executor plugin's image API, `name = value` rows, and errors of the node API in the
 * shell's language with the server's explanation where it has one (an unreachable host says why).
 */
import { useI18n } from 'vue-i18n';
import { ApiError, apiErrorFromText, createFormat, isApiError, pluginApi, session, useErrorMessage, withBase } from '@aiplat/plugin-sdk/web';

/** A node's name (its id): 1–63 letters, digits, ".", "_" or "-". */
export const NODE_NAME = /^[A-Za-z0-9._-]{1,63}$/;
/** The Docker engine's address: a Unix socket, plain TCP or TLS. */
export const DOCKER_URL = /^(unix:\/\/\/\S+|tcp:\/\/[^\s/:]+:\d{1,5}|https:\/\/[^\s/:]+:\d{1,5})\/?$/;
export const LABEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Set by the scheduler for each replica: a node cannot set them. */
export const RESERVED_ENV = ['CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK', 'MASTER_ADDR', 'MASTER_PORT'];
/** The captures a connected node can replay for a demo machine without GPUs. */
export const SIMULATED_GPU_SETS = ['v100s-8', 'a100-mig', 't4', 'a5000-2'] as const;

export interface KeyValueRow {
  key: number;
  name: string;
  value: string;
}

let nextKey = 0;
export const newRow = (name = '', value = ''): KeyValueRow => ({ key: nextKey++, name, value });

/** Rows from an object (`{ pool: "fast" }`), sorted by name. */
export function rowsOf(values: Record<string, string> | undefined | null): KeyValueRow[] {
  return Object.entries(values ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => newRow(name, value));
}

/** The rows as an object (blank names left out). */
export function objectOf(rows: KeyValueRow[]): Record<string, string> {
  return Object.fromEntries(rows.filter((r) => r.name.trim()).map((r) => [r.name.trim(), r.value]));
}

// ---- errors ----------------------------------------------------------------------------------

export interface NodeError {
  /** In the shell's language. */
  title: string;
  /** The server's own words, where they add something (why a host did not answer, what still runs). */
  detail?: string;
  /** For `validation_failed`: each problem the server named. */
  problems: string[];
}

/** Errors of the node and image APIs: the translation of the code, and the server's message beside it. */
export function useNodeError(): (error: unknown) => NodeError {
  const generic = useErrorMessage();
  const { t, te } = useI18n();
  return (error) => {
    if (!isApiError(error)) return { title: generic(error), problems: [] };
    const details = (error.details ?? {}) as { problems?: unknown };
    if (error.code === 'validation_failed' && Array.isArray(details.problems) && details.problems.length > 0) {
      const problems = (details.problems as { path?: unknown; message?: unknown }[]).map((p) => (p.path ? `${String(p.path)}: ${String(p.message)}` : String(p.message)));
      return { title: t('errors.validation_failed'), problems };
    }
    const key = `errors.${error.code}`;
    if (!te(key)) return { title: error.message || error.code, problems: [] };
    return { title: t(key), detail: error.message && error.message !== t(key) ? error.message : undefined, problems: [] };
  };
}

// ---- the Docker executor plugin's images ------------------------------------------------------

export const DOCKER_PLUGIN = 'executor-docker';
export const dockerApi = pluginApi(DOCKER_PLUGIN);

export interface DockerImage {
  id: string;
  tags: string[];
  sizeBytes: number;
  createdAt: string | null;
}

/**
 * Upload a tarball to `POST /nodes/<node>/images/import` with progress (fetch cannot report an
 * upload's progress; XMLHttpRequest can). `reference` names a root-filesystem tarball's image.
 */
export function importImage(
  node: string,
  file: Blob,
  options: { reference?: string; onProgress?: (loaded: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<{ images: DockerImage[] }> {
  return session.accessToken().then(
    (token) =>
      new Promise((resolve, reject) => {
        const query = options.reference ? `?reference=${encodeURIComponent(options.reference)}` : '';
        const xhr = new XMLHttpRequest();
        xhr.open('POST', withBase(`/api/plugins/${DOCKER_PLUGIN}/nodes/${encodeURIComponent(node)}/images/import${query}`));
        xhr.setRequestHeader('authorization', `Bearer ${token}`);
        // A gzip of a tarball is taken too (docker save | gzip).
        xhr.setRequestHeader('content-type', /\.(gz|tgz)$/i.test((file as File).name ?? '') ? 'application/gzip' : 'application/x-tar');
        xhr.upload.onprogress = (e) => options.onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
        xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed'));
        xhr.onabort = () => reject(new DOMException('The upload was cancelled', 'AbortError'));
        xhr.onload = () => {
          if (xhr.status < 200 || xhr.status >= 300) return reject(apiErrorFromText(xhr.status, xhr.responseText, xhr.statusText));
          try {
            resolve({ images: (JSON.parse(xhr.responseText) as { images?: DockerImage[] }).images ?? [] });
          } catch {
            resolve({ images: [] });
          }
        };
        options.signal?.addEventListener('abort', () => xhr.abort(), { once: true });
        xhr.send(file);
      }),
  );
}

/** Bytes as "1.2 GB" in the given locale (decimal units, as Docker shows them; the SDK's formatting). */
export function formatBytes(bytes: number, locale: string): string {
  return createFormat(locale).bytes(bytes);
}
