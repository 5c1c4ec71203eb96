/**
 * Resumable uploads: a tus 1.0 endpoint (`@tus/server` with its file store) under
 * `/api/plugins/datasets/uploads`. Bytes land in a staging folder under the data folder; when the
 * last one arrives the file is stored by its SHA-256 (checked against the client's, when given) and
 * staged in its commit. The checksum is computed while the bytes arrive, so finishing a 2 GB upload
 * does not read it twice; after a restart, or a PATCH that broke off at an unknown point, the file
 * is hashed again from disk instead.
 *
 * Staging is local to the replica that took the upload's first request: behind a load balancer,
 * route `/api/plugins/datasets/uploads` with session affinity.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage } from 'node:http';
import { Server, type ServerOptions } from '@tus/server';
import { FileStore } from '@tus/file-store';
import { Metadata, type Upload } from '@tus/utils';
import { AiplatError, checkRelativePath, type PluginContext } from '@aiplat/plugin-sdk';
import { T, stageChange, storeBlob, type CommitRow } from './store.js';

export const UPLOADS_PATH = '/api/plugins/datasets/uploads';

/** A file store that hashes bytes as they are written, while it can vouch for the running hash. */
class HashingFileStore extends FileStore {
  readonly hashes = new Map<string, { hash: Hash; offset: number }>();

  override async write(readable: IncomingMessage | Readable, id: string, offset: number): Promise<number> {
    let state = this.hashes.get(id);
    if (state && state.offset !== offset) state = undefined;
    if (!state && offset === 0) state = { hash: createHash('sha256'), offset: 0 };
    this.hashes.delete(id);
    if (!state) return super.write(readable, id, offset);
    const running = state;
    let seen = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        running.hash.update(chunk);
        seen += chunk.length;
        done(null, chunk);
      },
    });
    readable.on('error', (err) => tap.destroy(err));
    readable.pipe(tap);
    try {
      return await super.write(tap, id, offset);
    } finally {
      // Keep the running hash only if what it saw is exactly what is on disk now.
      const size = await stat(path.join(this.directory, id)).then((s) => s.size, () => -1);
      if (size === offset + seen) this.hashes.set(id, { hash: running.hash, offset: size });
    }
  }

  /** The file's SHA-256: the running hash when it covers the whole file, else read from disk. */
  async sha256(id: string, size: number): Promise<string> {
    const state = this.hashes.get(id);
    this.hashes.delete(id);
    if (state && state.offset === size) return state.hash.digest('hex');
    const hash = createHash('sha256');
    await pipeline(createReadStream(path.join(this.directory, id)), hash);
    return hash.digest('hex');
  }

  override async remove(id: string): Promise<void> {
    this.hashes.delete(id);
    await super.remove(id);
  }
}

export interface UploadMetadata {
  commit: string;
  path: string;
  sha256?: string;
}

/** A tus error answer in the core's error style, so clients show one kind of message. */
function tusError(status: number, code: string, message: string, details?: Record<string, unknown>) {
  return { status_code: status, body: JSON.stringify({ error: { code, message, details: details ?? {} } }) };
}

/** Checks the metadata a client sends with a new upload; throws `validation_failed` naming what is wrong. */
export function checkMetadata(meta: Record<string, string | null | undefined>): UploadMetadata {
  const commit = meta.commit ?? '';
  const file = meta.path ?? meta.filename ?? '';
  if (!commit) throw new AiplatError('validation_failed', 'Upload-Metadata must name the commit ("commit")', { field: 'commit' });
  if (!file) throw new AiplatError('validation_failed', 'Upload-Metadata must name the file\'s path in the version ("path")', { field: 'path' });
  checkRelativePath(file);
  const sha256 = meta.sha256 ? meta.sha256.toLowerCase() : undefined;
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) throw new AiplatError('validation_failed', `"sha256" must be 64 hexadecimal digits, not ${JSON.stringify(meta.sha256)}`, { field: 'sha256' });
  return { commit, path: file, sha256 };
}

/** Parses an `Upload-Metadata` header (tus: comma-separated `key base64value` pairs). */
export function parseMetadataHeader(header: string | undefined): Record<string, string | null> {
  if (!header) return {};
  try {
    return Metadata.parse(header) as Record<string, string | null>;
  } catch {
    throw new AiplatError('bad_request', 'The Upload-Metadata header is malformed: comma-separated "key base64value" pairs expected');
  }
}

export interface Uploads {
  server: Server;
  store: HashingFileStore;
  /** The metadata of an upload in progress, or undefined when there is none with that id. */
  metadataOf(id: string): Promise<UploadMetadata | undefined>;
  /** Drops the uploads of a commit (abandoned, finished or expired). */
  dropForCommit(commitId: string): Promise<void>;
}

export async function createUploads(plugin: PluginContext, options: { maxBytes: () => number; expiryMs: () => number }): Promise<Uploads> {
  const directory = path.join(plugin.platform.dataDir, 'plugins', 'datasets', 'uploads');
  await mkdir(directory, { recursive: true });
  const store = new HashingFileStore({ directory, expirationPeriodInMilliseconds: options.expiryMs() });
  const byCommit = new Map<string, Set<string>>();

  const onUploadFinish: ServerOptions['onUploadFinish'] = async (_req, upload: Upload) => {
    const meta = checkMetadata(upload.metadata ?? {});
    const size = upload.size ?? upload.offset;
    try {
      const sha256 = await store.sha256(upload.id, size);
      if (meta.sha256 && meta.sha256 !== sha256) {
        throw tusError(422, 'unprocessable', `The checksum of ${meta.path} does not match: you sent sha256 ${meta.sha256}, the server received content with sha256 ${sha256}. The upload was discarded; send the file again.`, {
          path: meta.path,
          expected: meta.sha256,
          received: sha256,
        });
      }
      const commit = (await plugin.db(T.commits).where({ id: meta.commit }).first()) as CommitRow | undefined;
      if (!commit) throw tusError(404, 'not_found', `The commit ${meta.commit} no longer exists (finished, abandoned or expired): the upload was discarded`, { commit: meta.commit });
      const newBlob = await storeBlob(plugin, path.join(directory, upload.id), sha256, size);
      await stageChange(plugin.db, commit.id, { path: meta.path, op: 'put', sha256, size, newBlob });
      return { headers: { 'Upload-Sha256': sha256 } };
    } finally {
      // Stored or refused, the staged bytes are done with: a retry starts a fresh upload.
      await store.remove(upload.id).catch(() => undefined);
      byCommit.get(meta.commit)?.delete(upload.id);
    }
  };

  const server = new Server({
    path: UPLOADS_PATH,
    datastore: store,
    relativeLocation: true,
    respectForwardedHeaders: true,
    maxSize: () => options.maxBytes(),
    exposedHeaders: ['Upload-Sha256'],
    async onUploadCreate(_req, upload) {
      const meta = checkMetadata(upload.metadata ?? {});
      if (!byCommit.has(meta.commit)) byCommit.set(meta.commit, new Set());
      byCommit.get(meta.commit)!.add(upload.id);
      return {};
    },
    onUploadFinish,
  });

  return {
    server,
    store,
    async metadataOf(id) {
      try {
        const upload = await store.getUpload(id);
        return checkMetadata(upload.metadata ?? {});
      } catch {
        return undefined;
      }
    },
    async dropForCommit(commitId) {
      for (const id of byCommit.get(commitId) ?? []) await store.remove(id).catch(() => undefined);
      byCommit.delete(commitId);
    },
  };
}
