/**
 * What the SDK's JSON client cannot send: multipart uploads, a Markdown body, and downloads the
 * browser saves. Same token and refresh-once-on-401 rule as the SDK's client.
 */
import { ApiError, session, withBase } from '@aiplat/plugin-sdk/web';

export const API_PREFIX = '/api/plugins/models';

async function errorOf(res: Response): Promise<ApiError> {
  let body: { error?: { code?: string; message?: string; details?: unknown; requestId?: string } } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, body.error?.code ?? `http_${res.status}`, body.error?.message ?? res.statusText, body.error?.details, body.error?.requestId);
}

/** `fetch` of a models route with the session's bearer token; throws an ApiError on a failure. */
export async function modelsFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const send = async () => {
    const token = await session.accessToken();
    try {
      return await fetch(withBase(`${API_PREFIX}${path}`), { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } });
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw new ApiError(0, 'network', (error as Error).message);
    }
  };
  let res = await send();
  if (res.status === 401) {
    await session.refresh();
    res = await send();
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

/** One file to upload: the file and its path in the version (`onnx/model.onnx`). */
export interface UploadItem {
  file: Blob;
  path: string;
}

/** `POST /models/:id/versions` (multipart): a field `path` before each file part names its path in the version. */
export async function uploadVersion<T>(modelId: string, items: UploadItem[], signal?: AbortSignal): Promise<T> {
  const form = new FormData();
  for (const item of items) {
    form.append('path', item.path);
    form.append('file', item.file, item.path.split('/').pop() ?? item.path);
  }
  const res = await modelsFetch(`/models/${encodeURIComponent(modelId)}/versions`, { method: 'POST', body: form, signal });
  return (await res.json()) as T;
}

/** `PUT /models/:id/card` as `text/markdown`. */
export async function saveCard(modelId: string, card: string): Promise<void> {
  await modelsFetch(`/models/${encodeURIComponent(modelId)}/card`, { method: 'PUT', body: card, headers: { 'content-type': 'text/markdown; charset=utf-8' } });
}

/** Fetch a file or archive with the token and hand it to the browser to save as `name`. */
export async function download(path: string, name: string): Promise<void> {
  const res = await modelsFetch(path);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  try {
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.rel = 'noopener';
    document.body.appendChild(a);
    a.click();
    a.remove();
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
  }
}

/** The path of one file of a version, each segment escaped. */
export const filePath = (versionId: string, file: string) => `/versions/${encodeURIComponent(versionId)}/files/${file.split('/').map(encodeURIComponent).join('/')}`;
