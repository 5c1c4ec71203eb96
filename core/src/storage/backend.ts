import type { Readable } from 'node:stream';

/** What a backend stores beside each object's content. */
export interface ObjectMeta {
  size: number;
  /** Hex SHA-256 of the content. */
  sha256: string;
  contentType?: string;
  /** RFC 3339 UTC, when the object became visible. */
  createdAt: string;
}

/** Whether a parsed metadata document has the fields of `ObjectMeta` (backends store more beside them). */
export function isObjectMeta(value: unknown): value is ObjectMeta {
  const v = value as ObjectMeta | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    Number.isSafeInteger(v.size) &&
    v.size >= 0 &&
    typeof v.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(v.sha256) &&
    typeof v.createdAt === 'string' &&
    (v.contentType === undefined || typeof v.contentType === 'string')
  );
}

/** One write as the backend sees it. */
export interface BackendWrite {
  /**
   * The content. It errors (and the backend must then keep nothing) when the source fails or
   * passes `maxBytes`; it is already being measured and hashed.
   */
  body: Readable;
  /**
   * Call once the whole body is stored but before the object becomes visible: returns the
   * metadata to store, or throws (SHA-256 mismatch) and the backend must then keep nothing.
   */
  seal(): ObjectMeta;
}

export interface BackendListPage {
  /** Keys with their metadata, in key order. */
  items: Array<{ key: string; meta: ObjectMeta }>;
  /** Whether keys after the last item match too. */
  more: boolean;
}

/**
 * Where blobs physically live. The storage service in front validates keys, measures and
 * hashes the content, enforces `maxBytes` and `expectedSha256`, scopes namespaces and makes
 * cursors; a backend only stores. `namespace` is `core` or `plugins/<id>` (checked), and `key`
 * is a validated key inside it. Backends must make an object visible only once complete, with
 * its metadata, and keep nothing of a failed write.
 *
 * Two backends, chosen per install (AIPLAT_STORAGE): the folder backend (`folder-backend.ts`,
 * the default) and the S3 backend (`s3-backend.ts`: S3-compatible object storage, metadata in a
 * sidecar object, multipart upload aborted on failure). Callers of `BlobStore` do not change.
 */
export interface StorageBackend {
  readonly kind: string;
  /** Remove what a crash left behind (temp files, half-committed writes). Runs once, before use. */
  recover(): Promise<void>;
  put(namespace: string, key: string, write: BackendWrite): Promise<ObjectMeta>;
  /** The metadata and an open stream of the content, or undefined when absent. */
  get(namespace: string, key: string): Promise<{ meta: ObjectMeta; stream: Readable } | undefined>;
  stat(namespace: string, key: string): Promise<ObjectMeta | undefined>;
  /** Objects whose keys start with `prefix` and sort after `after` (exclusive), in key order, at most `limit`. */
  list(namespace: string, prefix: string, options: { limit: number; after?: string }): Promise<BackendListPage>;
  delete(namespace: string, key: string): Promise<boolean>;
  /** A local file holding the content, or undefined when absent. */
  materialise(namespace: string, key: string): Promise<string | undefined>;
  /** Release what the backend holds open (the S3 client's connections); none for the folder backend. */
  close?(): void;
}
