import type { Readable } from 'node:stream';

export interface BlobInfo {
  /** The key within the caller's namespace. */
  key: string;
  size: number;
  /** Hex SHA-256 of the content, computed while it was written. */
  sha256: string;
  contentType?: string;
  /** RFC 3339 UTC. */
  createdAt: string;
}

export interface PutOptions {
  contentType?: string;
  /** Refuse the write (nothing becomes visible) if the content's SHA-256 differs. */
  expectedSha256?: string;
  /** Refuse the write once the content passes this many bytes. */
  maxBytes?: number;
}

/**
 * Blob storage. Writes are streamed and atomic: an object becomes visible only complete, with
 * its size and SHA-256; a write that fails half-way leaves nothing behind. Keys are
 * `/`-separated segments of letters, digits, `.`, `_`, `-` (no `..`). A folder under the data
 * folder by default; S3-compatible storage when configured.
 */
export interface BlobStore {
  put(key: string, body: Readable | Buffer | string, options?: PutOptions): Promise<BlobInfo>;
  /** The content as a stream; `not_found` when missing. */
  get(key: string): Promise<{ info: BlobInfo; stream: Readable }>;
  stat(key: string): Promise<BlobInfo | undefined>;
  /** Objects whose keys start with `prefix`, in key order. */
  list(prefix?: string, options?: { limit?: number; cursor?: string }): Promise<{ items: BlobInfo[]; nextCursor: string | null }>;
  delete(key: string): Promise<boolean>;
  /** A local file path holding the object's content, for executors that need a path. */
  materialise(key: string): Promise<string>;
}
