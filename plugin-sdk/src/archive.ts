/**
 * Streamed tar downloads: a route answers many stored files as one archive without holding them in
 * memory or on disk (a model version, a dataset version, a job's artifacts).
 */
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { reply, type Reply } from './routes.js';

/** One file of an archive: its path in the archive, its exact size, and how to read it when its turn comes. */
export interface ArchiveEntry {
  name: string;
  size: number;
  open(): Promise<Readable>;
}

/**
 * A 200 reply streaming `entries` as a tar archive saved as `<filename>.tar` (characters other
 * than letters, digits, `.`, `_` and `-` become `_`). Entries are opened one at a time as the
 * client reads. A failure half-way (a missing object, a short read) cuts the response, so the
 * client sees a broken download rather than a short archive; `onError` hears why.
 */
export function tarReply(entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>, filename: string, onError?: (err: unknown) => void): Reply {
  const pack = tar.pack();
  const out = new PassThrough();
  pack.pipe(out);
  void (async () => {
    try {
      for await (const entry of entries) await pipeline(await entry.open(), pack.entry({ name: entry.name, size: entry.size, mode: 0o644 }));
      pack.finalize();
    } catch (err) {
      onError?.(err);
      out.destroy(err as Error);
    }
  })();
  return reply(200, out, { 'content-type': 'application/x-tar', 'content-disposition': `attachment; filename="${filename.replace(/[^A-Za-z0-9._-]/g, '_')}.tar"` });
}
