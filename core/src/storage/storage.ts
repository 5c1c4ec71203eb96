import { createHash } from 'node:crypto';
import path from 'node:path';
import { Readable, Transform, pipeline } from 'node:stream';
import { AiplatError, type BlobInfo, type BlobStore, type Logger, type PutOptions } from '@aiplat/plugin-sdk';
import type { ObjectMeta, StorageBackend } from './backend.js';
import { FolderBackend } from './folder-backend.js';
import { decodeCursor, encodeCursor, pluginNamespace, validateKey, validatePrefix } from './keys.js';

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

/** The core's storage: a `BlobStore` on the core's own namespace (`core/`), and one per plugin. */
export interface Storage extends BlobStore {
  /** The namespace `plugins/<id>/` of one plugin: it cannot see or reach any other. */
  forPlugin(pluginId: string): BlobStore;
  readonly backend: StorageBackend;
}

export interface StorageOptions {
  dataDir: string;
  logger: Logger;
  /** Another backend (the S3 backend when AIPLAT_STORAGE=s3, tests); by default the folder `<dataDir>/storage/`. */
  backend?: StorageBackend;
}

function info(key: string, meta: ObjectMeta): BlobInfo {
  const result: BlobInfo = { key, size: meta.size, sha256: meta.sha256, createdAt: meta.createdAt };
  if (meta.contentType !== undefined) result.contentType = meta.contentType;
  return result;
}

function checkPutOptions(key: string, options: PutOptions): { contentType?: string; expectedSha256?: string; maxBytes?: number } {
  const { contentType, expectedSha256, maxBytes } = options;
  if (contentType !== undefined && (typeof contentType !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(contentType))) {
    throw new AiplatError('validation_failed', `Storage key "${key}": contentType must be 1 to 255 printable ASCII characters`, { key, contentType });
  }
  if (expectedSha256 !== undefined && (typeof expectedSha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(expectedSha256))) {
    throw new AiplatError('validation_failed', `Storage key "${key}": expectedSha256 must be 64 hex digits`, { key, expectedSha256 });
  }
  if (maxBytes !== undefined && (!Number.isSafeInteger(maxBytes) || maxBytes < 0)) {
    throw new AiplatError('validation_failed', `Storage key "${key}": maxBytes must be a non-negative integer`, { key, maxBytes });
  }
  return { contentType, expectedSha256: expectedSha256?.toLowerCase(), maxBytes };
}

function toReadable(key: string, body: unknown): Readable {
  if (typeof body === 'string') body = Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) {
    const buffer = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return Readable.from(buffer.length > 0 ? [buffer] : [], { objectMode: false });
  }
  if (body !== null && typeof body === 'object' && typeof (body as Readable).pipe === 'function' && typeof (body as Readable).on === 'function') {
    return body as Readable;
  }
  throw new AiplatError('validation_failed', `Storage key "${key}": the body must be a Readable, a Buffer or a string`, { key });
}

/** One namespace. Everything a backend needs not know: key rules, hashing, limits, cursors. */
class NamespacedStore implements BlobStore {
  constructor(
    protected readonly backendRef: StorageBackend,
    private readonly namespace: string,
  ) {}

  async put(key: string, body: Readable | Buffer | string, options: PutOptions = {}): Promise<BlobInfo> {
    validateKey(key);
    const { contentType, expectedSha256, maxBytes } = checkPutOptions(key, options ?? {});
    const source = toReadable(key, body);
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        size += chunk.length;
        if (maxBytes !== undefined && size > maxBytes) {
          done(new AiplatError('payload_too_large', `Storage key "${key}": the content is larger than maxBytes (${maxBytes} bytes)`, { key, maxBytes }));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    // A failing source destroys the meter with its error (and a failing backend the source), so
    // the backend sees the failure and keeps nothing.
    const metered = pipeline(source, meter, () => undefined);
    const meta = await this.backendRef.put(this.namespace, key, {
      body: metered,
      seal: () => {
        const sha256 = hash.digest('hex');
        if (expectedSha256 !== undefined && sha256 !== expectedSha256) {
          throw new AiplatError('validation_failed', `Storage key "${key}": the content's SHA-256 is ${sha256}, not the expected ${expectedSha256}`, {
            key,
            expectedSha256,
            sha256,
          });
        }
        const sealed: ObjectMeta = { size, sha256, createdAt: new Date().toISOString() };
        if (contentType !== undefined) sealed.contentType = contentType;
        return sealed;
      },
    });
    return info(key, meta);
  }

  async get(key: string): Promise<{ info: BlobInfo; stream: Readable }> {
    validateKey(key);
    const found = await this.backendRef.get(this.namespace, key);
    if (!found) throw new AiplatError('not_found', `No object "${key}" in storage`, { key });
    return { info: info(key, found.meta), stream: found.stream };
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    validateKey(key);
    const meta = await this.backendRef.stat(this.namespace, key);
    return meta && info(key, meta);
  }

  async list(prefix = '', options: { limit?: number; cursor?: string } = {}): Promise<{ items: BlobInfo[]; nextCursor: string | null }> {
    validatePrefix(prefix);
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new AiplatError('validation_failed', `Storage list limit must be an integer from 1 to ${MAX_LIST_LIMIT}`, { limit });
    }
    const after = options.cursor === undefined || options.cursor === null ? undefined : decodeCursor(options.cursor);
    const page = await this.backendRef.list(this.namespace, prefix, { limit, after });
    const items = page.items.map((item) => info(item.key, item.meta));
    return { items, nextCursor: page.more && items.length > 0 ? encodeCursor(items[items.length - 1]!.key) : null };
  }

  async delete(key: string): Promise<boolean> {
    validateKey(key);
    return this.backendRef.delete(this.namespace, key);
  }

  /**
   * A local file holding the content. With the folder backend this is the object's own file;
   * with the S3 backend a downloaded copy in `<dataDir>/storage-cache/<sha256>`. Either way
   * callers must only read it, never modify, move or delete it, and must not keep the path past
   * their use (an overwrite replaces the file, a delete removes it).
   */
  async materialise(key: string): Promise<string> {
    validateKey(key);
    const file = await this.backendRef.materialise(this.namespace, key);
    if (file === undefined) throw new AiplatError('not_found', `No object "${key}" in storage`, { key });
    return file;
  }
}

class CoreStorage extends NamespacedStore implements Storage {
  private readonly plugins = new Map<string, BlobStore>();

  constructor(readonly backend: StorageBackend) {
    super(backend, 'core');
  }

  forPlugin(pluginId: string): BlobStore {
    let store = this.plugins.get(pluginId);
    if (!store) {
      store = new NamespacedStore(this.backend, pluginNamespace(pluginId));
      this.plugins.set(pluginId, store);
    }
    return store;
  }
}

/**
 * Open the storage service: the folder `<dataDir>/storage/` unless another backend is given.
 * What a crash left behind (temp files, half-committed writes) is removed before it returns.
 */
export async function createStorage(options: StorageOptions): Promise<Storage> {
  const logger = options.logger.child({ component: 'storage' });
  const backend: StorageBackend = options.backend ?? new FolderBackend(path.join(options.dataDir, 'storage'), logger);
  try {
    await backend.recover();
  } catch (error) {
    backend.close?.();
    throw error;
  }
  return new CoreStorage(backend);
}
