/**
 * The API client: JSON in and out, the session's bearer token on every call, one transparent
 * refresh and retry on a 401, errors as {@link ApiError} with the catalog's `code`. For what is not
 * JSON (a multipart upload, a text body, a file), `fetch` gives the raw `Response` under the same
 * rules and `download` saves a response as a file.
 */
import { withBase } from './boot.ts';
import { ApiError, apiErrorOf, errorMessagesReady } from './errors.ts';
import { session } from './session.ts';

export type Query = Record<string, string | number | boolean | undefined | null>;

/** One page of a list endpoint (ARCHITECTURE §5). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** `fetch`'s options, plus a query string built like the JSON calls' (empty values left out). */
export type FetchInit = RequestInit & { query?: Query };

export interface ApiClient {
  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<T>;
  get<T = unknown>(path: string, query?: Query, options?: Omit<RequestOptions, 'query'>): Promise<T>;
  post<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  put<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  patch<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  delete<T = unknown>(path: string, options?: RequestOptions): Promise<T>;
  /** The raw `Response` (any body, any method) with the token and refresh rule; throws an {@link ApiError} unless it is ok. */
  fetch(path: string, init?: FetchInit): Promise<Response>;
  /**
   * GET `path` with the token and make the browser save it as `filename` (else the name the server
   * gave in `Content-Disposition`, else the path's last segment). Resolves with the name used.
   */
  download(path: string, filename?: string, query?: Query): Promise<string>;
}

function url(prefix: string, path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  const qs = params.toString();
  return withBase(`${prefix}${path}`) + (qs ? `?${qs}` : '');
}

/** Hand a Blob to the browser to save as `filename` (the usual download bar, no navigation). */
export function saveBlob(blob: Blob, filename: string): void {
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 30_000);
}

/** A client for the routes under `prefix` (`/api/v1` for the core, `/api/plugins/<id>` for a plugin). */
export function createApiClient(prefix = ''): ApiClient {
  async function raw(path: string, { query, headers, ...init }: FetchInit = {}): Promise<Response> {
    const send = async (token: string) => {
      const all = new Headers(headers);
      if (!all.has('authorization')) all.set('authorization', `Bearer ${token}`);
      try {
        return await fetch(url(prefix, path, query), { ...init, headers: all });
      } catch (error) {
        if ((error as Error).name === 'AbortError') throw error;
        await errorMessagesReady();
        throw new ApiError(0, 'network', (error as Error).message);
      }
    };
    let res = await send(await session.accessToken());
    if (res.status === 401) {
      await session.refresh();
      res = await send(await session.accessToken());
    }
    if (!res.ok) throw await apiErrorOf(res);
    return res;
  }
  async function request<T>(method: string, path: string, { body, headers, ...options }: RequestOptions = {}): Promise<T> {
    const res = await raw(path, {
      ...options,
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    if (res.status === 204) return undefined as T;
    const type = res.headers.get('content-type') ?? '';
    return (type.includes('json') ? await res.json() : await res.text()) as T;
  }
  return {
    request,
    get: (path, query, options) => request('GET', path, { ...options, query }),
    post: (path, body, options) => request('POST', path, { ...options, body }),
    put: (path, body, options) => request('PUT', path, { ...options, body }),
    patch: (path, body, options) => request('PATCH', path, { ...options, body }),
    delete: (path, options) => request('DELETE', path, options),
    fetch: raw,
    download: async (path, filename, query) => (await import('./download.ts')).saveResponse(await raw(path, { query }), path, filename),
  };
}

/** The core's API (`/api/v1`). */
export const coreApi = createApiClient('/api/v1');

/** A plugin's routes (`/api/plugins/<id>`). */
export function pluginApi(pluginId: string): ApiClient {
  return createApiClient(`/api/plugins/${pluginId}`);
}
