/**
 * The API client: JSON in and out, the session's bearer token on every call, one transparent
 * refresh and retry on a 401, errors as {@link ApiError} with the catalog's `code`.
 */
import { withBase } from './boot.ts';
import { ApiError, errorMessagesReady } from './errors.ts';
import { parseError, session } from './session.ts';

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

export interface ApiClient {
  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<T>;
  get<T = unknown>(path: string, query?: Query, options?: Omit<RequestOptions, 'query'>): Promise<T>;
  post<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  put<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  patch<T = unknown>(path: string, body?: unknown, options?: Omit<RequestOptions, 'body'>): Promise<T>;
  delete<T = unknown>(path: string, options?: RequestOptions): Promise<T>;
}

function url(prefix: string, path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  const qs = params.toString();
  return withBase(`${prefix}${path}`) + (qs ? `?${qs}` : '');
}

/** A client for the routes under `prefix` (`/api/v1` for the core, `/api/plugins/<id>` for a plugin). */
export function createApiClient(prefix = ''): ApiClient {
  async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const send = async (token: string) => {
      try {
        return await fetch(url(prefix, path, options.query), {
          method,
          signal: options.signal,
          headers: {
            authorization: `Bearer ${token}`,
            ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...options.headers,
          },
          body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
        });
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
    if (!res.ok) throw await parseError(res);
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
  };
}

/** The core's API (`/api/v1`). */
export const coreApi = createApiClient('/api/v1');

/** A plugin's routes (`/api/plugins/<id>`). */
export function pluginApi(pluginId: string): ApiClient {
  return createApiClient(`/api/plugins/${pluginId}`);
}
