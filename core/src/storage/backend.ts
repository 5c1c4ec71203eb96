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
 * Today: the folder backend (`folder-backend.ts`). An S3-compatible one (object metadata on the
 * object, multipart upload aborted on failure) can implement the same interface; callers of
 * `BlobStore` do not change.
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
}
