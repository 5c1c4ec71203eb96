/**
 * The browser side of making a version: a file's SHA-256 computed while reading it in chunks
 * (never whole), and a resumable tus upload to `/uploads` carrying the commit, the path and the
 * checksum, with a fresh bearer token on every request and retries that resume where the server's
 * offset says after a dropped connection.
 */
import { createSHA256 } from 'hash-wasm';
import { Upload, type DetailedError } from 'tus-js-client';
import { apiErrorFromText, session } from '@aiplat/plugin-sdk/web';
import { apiUrl } from './shared.ts';

const HASH_CHUNK = 8 * 1024 * 1024;
/** Each PATCH carries at most this much, so a long upload re-authenticates as it goes and a retry repeats little. */
const UPLOAD_CHUNK = 32 * 1024 * 1024;
export const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];

/** The SHA-256 (hex) of a file, read `HASH_CHUNK` bytes at a time; `onProgress(bytesRead)`. */
export async function sha256Of(file: Blob, onProgress?: (bytes: number) => void, signal?: AbortSignal): Promise<string> {
  const hasher = await createSHA256();
  hasher.init();
  for (let offset = 0; offset < file.size; offset += HASH_CHUNK) {
    if (signal?.aborted) throw new DOMException('Aborted', 'AbortError');
    const chunk = new Uint8Array(await file.slice(offset, Math.min(file.size, offset + HASH_CHUNK)).arrayBuffer());
    hasher.update(chunk);
    onProgress?.(Math.min(file.size, offset + chunk.byteLength));
  }
  return hasher.digest('hex');
}

export interface TusHandle {
  promise: Promise<void>;
  abort(): void;
}

/** Upload `file` into the commit as `path`; `onProgress(bytesSent)`. Rejects with an `ApiError` carrying the server's message. */
export function tusUpload(file: Blob, meta: { commit: string; path: string; sha256: string }, onProgress: (bytes: number) => void): TusHandle {
  let upload: Upload | undefined;
  const promise = new Promise<void>((resolve, reject) => {
    upload = new Upload(file, {
      endpoint: apiUrl('/uploads'),
      metadata: { commit: meta.commit, path: meta.path, sha256: meta.sha256, filename: meta.path.split('/').pop() ?? meta.path },
      chunkSize: UPLOAD_CHUNK,
      retryDelays: RETRY_DELAYS,
      // Uploads are tied to one commit: never resume an upload a previous commit started for the same file.
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: true,
      onBeforeRequest: async (req) => {
        req.setHeader('authorization', `Bearer ${await session.accessToken()}`);
      },
      onShouldRetry: (err: DetailedError, _attempt: number) => {
        const status = err.originalResponse?.getStatus() ?? 0;
        if (status === 401) {
          // The next attempt's onBeforeRequest asks for the refreshed token.
          void session.refresh().catch(() => undefined);
          return true;
        }
        return status === 0 || status >= 500 || status === 409 || status === 423;
      },
      onProgress: (sent) => onProgress(sent),
      onSuccess: () => resolve(),
      onError: (err) => {
        const res = (err as DetailedError).originalResponse;
        reject(res ? apiErrorFromText(res.getStatus(), res.getBody()) : err);
      },
    });
    upload.start();
  });
  return { promise, abort: () => void upload?.abort(false) };
}

/** A dropped file or folder entry, read recursively, with its path relative to what was dropped. */
export async function filesOfDrop(items: DataTransferItemList | null, fallback: FileList | null): Promise<{ file: File; path: string }[]> {
  const entries = items ? [...items].map((item) => (item.kind === 'file' ? item.webkitGetAsEntry?.() : null)) : [];
  if (entries.length === 0 || entries.some((entry) => !entry)) {
    return [...(fallback ?? [])].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
  }
  const out: { file: File; path: string }[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
      out.push({ file, path: `${prefix}${entry.name}` });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      // readEntries answers in batches until it answers an empty one.
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry!, '');
  return out;
}
