/** The rest of `ApiClient.download`, loaded with the first download. */
import { saveBlob } from './api.ts';

/** The file name a `Content-Disposition` header gives (`filename*=UTF-8''…` first), if any. */
function dispositionName(header: string | null): string | undefined {
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(header ?? '')?.[1];
  if (star) {
    try {
      return decodeURIComponent(star.trim().replace(/^"|"$/g, ''));
    } catch {
      /* fall back to the plain name */
    }
  }
  return /filename\s*=\s*"?([^";]+)"?/i.exec(header ?? '')?.[1]?.trim() || undefined;
}

/** Save the response's body as `filename`, else the server's name for it, else the path's last segment; returns the name. */
export async function saveResponse(res: Response, path: string, filename?: string): Promise<string> {
  const name = filename || dispositionName(res.headers.get('content-disposition')) || path.split(/[?#]/)[0]!.split('/').pop() || 'download';
  saveBlob(await res.blob(), name);
  return name;
}
