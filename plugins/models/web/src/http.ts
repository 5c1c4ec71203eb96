/**
 * What the SDK's JSON client cannot send: multipart uploads and a Markdown body, through its raw
 * `fetch` (same token and refresh-once-on-401 rule). Downloads use the client's `download`.
 */
import { pluginApi } from '@aiplat/plugin-sdk/web';

export const modelsApi = pluginApi('models');

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
  const res = await modelsApi.fetch(`/models/${encodeURIComponent(modelId)}/versions`, { method: 'POST', body: form, signal });
  return (await res.json()) as T;
}

/** `PUT /models/:id/card` as `text/markdown`. */
export async function saveCard(modelId: string, card: string): Promise<void> {
  await modelsApi.fetch(`/models/${encodeURIComponent(modelId)}/card`, { method: 'PUT', body: card, headers: { 'content-type': 'text/markdown; charset=utf-8' } });
}

/** The path of one file of a version, each segment escaped. */
export const filePath = (versionId: string, file: string) => `/versions/${encodeURIComponent(versionId)}/files/${file.split('/').map(encodeURIComponent).join('/')}`;
