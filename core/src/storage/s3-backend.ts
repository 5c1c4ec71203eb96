import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat as statFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { AiplatError, isAiplatError, type Logger } from '@aiplat/plugin-sdk';
import type { CoreConfig } from '../config/config.js';
import { isObjectMeta, type BackendListPage, type BackendWrite, type ObjectMeta, type StorageBackend } from './backend.js';
import { KeyedMutex } from './keyed-mutex.js';

/*
 * The S3 backend: objects in a bucket of S3 or an S3-compatible server (AIPLAT_STORAGE=s3).
 *
 * Layout. Key `a/b/model.bin` of namespace `core` is the object `<prefix>core/a/b/model.bin`, with
 * its metadata ({ v: 1, size, sha256, contentType?, createdAt }) in the sidecar object
 * `<prefix>core/a/b/model.bin@meta.json`. Keys cannot hold "@", so the two never clash. As in the
 * folder backend, an object exists when its metadata object exists.
 *
 * Writes. The body is streamed in parts (a multipart upload; 8 MiB parts, at most two in flight,
 * so memory stays bounded whatever the size); a body that fits in one part is sent with a single
 * PutObject once it has ended. When the body has ended, `seal()` checks it (a SHA-256 mismatch
 * throws); then, under the key's lock, the old metadata object is deleted, the upload is completed
 * (the content replaced) and the new metadata object written. A multipart upload is invisible
 * until completed, and any failure aborts it: nothing of a failed write is kept. An overwrite makes
 * the old version disappear just before the new one appears.
 *
 * Part sizes double every 2,000 parts (8, 16, 32, 64, 128 MiB), since S3 allows 10,000 parts:
 * objects up to about 480 GiB, with memory growing only for objects past 15 GiB.
 *
 * Reads take the metadata and open the content under the key's lock, so a concurrent overwrite in
 * this process is never seen half-way. `materialise` downloads the content into a local cache
 * (`<dataDir>/storage-cache/<sha256>`, written to a temp file, checked against the SHA-256, then
 * renamed; reused when present). The cache is content-addressed and never pruned today.
 *
 * Recovery (at start): the bucket is checked (HeadBucket, failing with a message naming the
 * endpoint and the bucket), leftover cache temp files are removed, and multipart uploads under the
 * prefix started more than 24 hours ago are aborted (younger ones may belong to another core on
 * the same bucket). A crash between deleting old metadata and writing the new leaves a content
 * object without metadata: invisible, and replaced or removed by the next put or delete of its key.
 *
 * Locks are per process: one core writes to a bucket and prefix (as one core owns a data folder).
 * S3 names hold at most 1024 bytes, so keys here are a little shorter than the service's 1024
 * (`maxKeyBytes`: the prefix, the namespace and "@meta.json" take their share).
 */

const META_SUFFIX = '@meta.json';
const NAMESPACE = /^(core|plugins\/[a-z][a-z0-9-]{1,38}[a-z0-9])$/;
const MiB = 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * MiB;
/** S3's smallest part (all but the last). */
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
const PARTS_PER_SIZE = 2000;
const PARTS_IN_FLIGHT = 2;
/** Metadata objects read at once by `list`. */
const READ_CONCURRENCY = 8;
const LIST_PAGE = 1000;
/** S3's longest object name, in bytes. */
const MAX_NAME_BYTES = 1024;
const STALE_UPLOAD_MS = 24 * 60 * 60 * 1000;
const CACHE_TMP_PREFIX = '.tmp-';

export interface S3BackendOptions {
  bucket: string;
  /** The S3-compatible server, e.g. http://127.0.0.1:9000; unset: AWS S3 in `region`. */
  endpoint?: string;
  /** Default us-east-1. */
  region?: string;
  /** Prepended to every object name; a "/" is added when it does not end with one. */
  prefix?: string;
  /** Both or neither; neither: the SDK's default chain (AWS_* variables, shared config, instance role). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style URLs (http://host/bucket/key); default: true when an endpoint is given. */
  forcePathStyle?: boolean;
  /** Where `materialise` downloads objects (`<dataDir>/storage-cache`). */
  cacheDir: string;
  logger: Logger;
  /** Bytes of the first 2,000 parts (default 8 MiB; S3 needs at least 5 MiB). */
  partSize?: number;
  /** The clock recovery compares upload start times with (tests move it). */
  now?: () => number;
  /** Names per ListObjectsV2 call (default and S3's most: 1000; tests use a few, to page). */
  listPageSize?: number;
  /** Another client (tests); by default one made from the options above. */
  client?: S3Client;
}

type S3Settings = Pick<CoreConfig, 'dataDir' | 's3Bucket' | 's3Endpoint' | 's3Region' | 's3Prefix' | 's3AccessKeyId' | 's3SecretAccessKey' | 's3ForcePathStyle'>;

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: { code?: string };
  errors?: Array<{ code?: string }>;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'TimeoutError']);
const DENIED = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'AllAccessDisabled']);

function sdkError(error: unknown): SdkError {
  return (typeof error === 'object' && error !== null ? error : {}) as SdkError;
}

function statusOf(error: unknown): number | undefined {
  return sdkError(error).$metadata?.httpStatusCode;
}

/** An object that is not there (not a missing bucket). HEAD answers carry no body, hence "NotFound". */
function isAbsent(error: unknown): boolean {
  const { name } = sdkError(error);
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(error) === 404 && name !== 'NoSuchBucket' && name !== 'NoSuchUpload');
}

function networkCode(error: unknown): string | undefined {
  const e = sdkError(error);
  return [e.code, e.name, e.cause?.code, e.errors?.[0]?.code].find((c): c is string => c !== undefined && NETWORK_CODES.has(c));
}

/** What went wrong, in words a person can act on. `bucketLevel`: a 404 means the bucket is missing. */
export function explainS3Error(error: unknown, where: { bucket: string; region: string }, bucketLevel = false): string {
  const { bucket, region } = where;
  const e = sdkError(error);
  const status = statusOf(error);
  const network = networkCode(error);
  if (network) return `the endpoint cannot be reached (${network})`;
  if (e.name === 'NoSuchBucket' || (bucketLevel && status === 404)) return `the bucket "${bucket}" does not exist (create it, or set AIPLAT_S3_BUCKET to one that does)`;
  if (DENIED.has(e.name ?? '') || status === 403) {
    return `access denied${e.name && e.name !== 'Forbidden' ? ` (${e.name})` : ''}: check AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY, and what they may do on the bucket`;
  }
  if (e.name === 'CredentialsProviderError') return 'no credentials: set AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY (or the AWS_* variables, or give the machine a role)';
  if (status === 301 || e.name === 'PermanentRedirect' || e.name === 'AuthorizationHeaderMalformed') return `the bucket is in another region than "${region}" (set AIPLAT_S3_REGION)`;
  return `${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(error)}`;
}

function toMeta(value: ObjectMeta): ObjectMeta {
  const meta: ObjectMeta = { size: value.size, sha256: value.sha256, createdAt: value.createdAt };
  if (value.contentType !== undefined) meta.contentType = value.contentType;
  return meta;
}

/** Run `fn` over `items`, at most `limit` at a time, keeping the order of the results. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Insert into a sorted array, keeping at most `max` of the smallest. */
function insertSorted(sorted: string[], value: string, max: number): void {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  if (sorted[lo] === value || lo >= max) return;
  sorted.splice(lo, 0, value);
  if (sorted.length > max) sorted.pop();
}

export class S3Backend implements StorageBackend {
  readonly kind = 's3';
  readonly bucket: string;
  readonly prefix: string;
  /** The endpoint as people know it, for messages. */
  readonly where: string;
  readonly region: string;
  private readonly client: S3Client;
  private readonly locks = new KeyedMutex();
  private readonly cacheDir: string;
  private readonly logger: Logger;
  private readonly partSize: number;
  private readonly now: () => number;
  private readonly listPageSize: number;

  constructor(options: S3BackendOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix ? options.prefix.replace(/\/*$/, '/') : '';
    this.region = options.region ?? 'us-east-1';
    this.where = options.endpoint ?? `AWS S3 (${this.region})`;
    this.cacheDir = options.cacheDir;
    this.logger = options.logger;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (this.partSize < MIN_PART_SIZE) throw new Error(`storage: S3 parts must be at least ${MIN_PART_SIZE} bytes`);
    this.now = options.now ?? Date.now;
    this.listPageSize = options.listPageSize ?? LIST_PAGE;
    if ((options.accessKeyId === undefined) !== (options.secretAccessKey === undefined)) {
      throw new Error('storage: give both the S3 access key id and the secret access key, or neither');
    }
    this.client = options.client ?? new S3Client({
      region: this.region,
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      ...(options.accessKeyId !== undefined && options.secretAccessKey !== undefined
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
      // Our own SHA-256 covers the content; the SDK's default extra checksums (CRC32 on every
      // request) are refused by several S3-compatible servers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // An endpoint that does not answer fails in seconds, not minutes.
      requestHandler: { connectionTimeout: 10_000 },
    });
  }

  /** The backend the settings AIPLAT_S3_* describe (core/src/config/config.ts), caching under `<dataDir>/storage-cache`. */
  static fromConfig(config: S3Settings, logger: Logger): S3Backend {
    if (!config.s3Bucket) throw new Error('storage: AIPLAT_STORAGE=s3 needs AIPLAT_S3_BUCKET');
    return new S3Backend({
      bucket: config.s3Bucket,
      endpoint: config.s3Endpoint,
      region: config.s3Region,
      prefix: config.s3Prefix,
      accessKeyId: config.s3AccessKeyId,
      secretAccessKey: config.s3SecretAccessKey,
      forcePathStyle: config.s3ForcePathStyle,
      cacheDir: path.join(config.dataDir, 'storage-cache'),
      logger: logger.child({ component: 'storage' }),
    });
  }

  close(): void {
    this.client.destroy();
  }

  private base(namespace: string): string {
    if (!NAMESPACE.test(namespace)) throw new Error(`storage: "${namespace}" is not a namespace`);
    return `${this.prefix}${namespace}/`;
  }

  /** The longest key the namespace can hold: S3 names have at most 1024 bytes, and the prefix, namespace and "@meta.json" take some. */
  maxKeyBytes(namespace: string): number {
    return MAX_NAME_BYTES - Buffer.byteLength(this.base(namespace) + META_SUFFIX);
  }

  private names(namespace: string, key: string): { data: string; meta: string } {
    const room = this.maxKeyBytes(namespace);
    if (Buffer.byteLength(key) > room) {
      const rule = `at most ${room} bytes in storage on S3 (an S3 name holds at most ${MAX_NAME_BYTES} bytes, "${this.base(namespace)}" and "${META_SUFFIX}" included)`;
      throw new AiplatError('validation_failed', `Storage key ${JSON.stringify(key)} is refused: ${rule}`, { key, rule });
    }
    const data = this.base(namespace) + key;
    return { data, meta: data + META_SUFFIX };
  }

  /** An S3 failure as an error that says what failed, where, and what to do. */
  private failure(operation: string, error: unknown): Error {
    if (isAiplatError(error)) return error;
    const problem = explainS3Error(error, this);
    return new AiplatError('unavailable', `Storage: S3 ${operation} on bucket "${this.bucket}" at ${this.where} failed: ${problem}`, {
      operation,
      bucket: this.bucket,
      endpoint: this.where,
      s3Error: sdkError(error).name,
    });
  }

  private async send<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.failure(operation, error);
    }
  }

  async recover(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      const problem = explainS3Error(error, this, true);
      throw new AiplatError('unavailable', `Storage: cannot use the S3 bucket "${this.bucket}" at ${this.where}: ${problem}`, {
        bucket: this.bucket,
        endpoint: this.where,
        s3Error: sdkError(error).name,
      });
    }

    await mkdir(this.cacheDir, { recursive: true });
    const leftovers = (await readdir(this.cacheDir)).filter((name) => name.startsWith(CACHE_TMP_PREFIX));
    for (const name of leftovers) await rm(path.join(this.cacheDir, name), { force: true, recursive: true });

    // Uploads a crash (or a failed abort) left behind. A sweep that fails (a policy without
    // s3:ListBucketMultipartUploads, say) is reported, not fatal: the bucket itself works.
    let aborted = 0;
    try {
      aborted = await this.abortStaleUploads();
    } catch (error) {
      this.logger.warn({ err: error }, 'storage: could not look for multipart uploads that interrupted writes left behind; they stay until the bucket\'s lifecycle rules or a later start remove them');
    }
    if (aborted > 0 || leftovers.length > 0) {
      this.logger.warn({ abortedUploads: aborted, tempFiles: leftovers.length }, 'storage: removed what interrupted writes left behind');
    }
  }

  /** Abort the multipart uploads of our namespaces under the prefix that began more than 24 hours ago. */
  private async abortStaleUploads(): Promise<number> {
    const ours = [`${this.prefix}core/`, `${this.prefix}plugins/`];
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send('ListMultipartUploads', () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !ours.some((p) => upload.Key!.startsWith(p))) continue;
        if (!upload.Initiated || this.now() - upload.Initiated.getTime() <= STALE_UPLOAD_MS) continue;
        await this.send('AbortMultipartUpload', () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId })));
        aborted++;
      }
      if (!page.IsTruncated) return aborted;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** Parts double in size every 2,000, so that 10,000 of them hold big objects too. */
  private partSizeFor(partNumber: number): number {
    return this.partSize * 2 ** Math.min(4, Math.floor((partNumber - 1) / PARTS_PER_SIZE));
  }

  async put(namespace: string, key: string, write: BackendWrite): Promise<ObjectMeta> {
    const names = this.names(namespace, key);
    const Bucket = this.bucket;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let uploadId: string | undefined;
    let partNumber = 0;
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let partFailure: { error: unknown } | undefined;

    /** The first `size` bytes of what is pending, as one buffer. */
    const take = (size: number): Buffer => {
      const chunks: Buffer[] = [];
      let taken = 0;
      while (taken < size) {
        const head = pending[0]!;
        const want = size - taken;
        if (head.length <= want) {
          chunks.push(head);
          pending.shift();
          taken += head.length;
        } else {
          chunks.push(head.subarray(0, want));
          pending[0] = head.subarray(want);
          taken += want;
        }
      }
      pendingBytes -= size;
      return Buffer.concat(chunks, size);
    };

    const sendPart = async (body: Buffer): Promise<void> => {
      // At most PARTS_IN_FLIGHT uploads: waiting here stops reading the body (backpressure).
      while (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
      if (partFailure) throw partFailure.error;
      if (partNumber >= MAX_PARTS) {
        throw new AiplatError('payload_too_large', `Storage key "${key}": the content is larger than an S3 multipart upload can hold`, { key });
      }
      uploadId ??= (await this.send('CreateMultipartUpload', () => this.client.send(new CreateMultipartUploadCommand({ Bucket, Key: names.data })))).UploadId;
      if (!uploadId) throw this.failure('CreateMultipartUpload', new Error('the answer holds no upload id'));
      const n = ++partNumber;
      const task: Promise<void> = this.client
        .send(new UploadPartCommand({ Bucket, Key: names.data, UploadId: uploadId, PartNumber: n, Body: body, ContentLength: body.length }))
        .then(
          (out) => {
            parts.push({ PartNumber: n, ETag: out.ETag });
          },
          (error: unknown) => {
            partFailure ??= { error: this.failure('UploadPart', error) };
          },
        )
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    };

    try {
      for await (const chunk of write.body) {
        const buffer = chunk as Buffer;
        if (buffer.length === 0) continue;
        pending.push(buffer);
        pendingBytes += buffer.length;
        // A part leaves once more than a part is pending: the last part is then never empty.
        while (pendingBytes > this.partSizeFor(partNumber + 1)) await sendPart(take(this.partSizeFor(partNumber + 1)));
      }

      if (uploadId === undefined) {
        // It fits in one part: a single PutObject, now that the body has ended.
        const body = Buffer.concat(pending, pendingBytes);
        pending = [];
        const meta = write.seal();
        await this.commit(names, meta, async () => {
          await this.send('PutObject', () => this.client.send(new PutObjectCommand({ Bucket, Key: names.data, Body: body, ContentLength: body.length })));
        });
        return meta;
      }

      if (pendingBytes > 0) await sendPart(take(pendingBytes));
      await Promise.all([...inFlight]);
      if (partFailure) throw partFailure.error;
      const meta = write.seal();
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      const id = uploadId;
      await this.commit(names, meta, async () => {
        await this.send('CompleteMultipartUpload', () =>
          this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key: names.data, UploadId: id, MultipartUpload: { Parts: parts } })),
        );
        uploadId = undefined; // completed: nothing left to abort
      });
      return meta;
    } catch (error) {
      pending = [];
      // A failure of ours (not the body's) stops the source too.
      if (!write.body.destroyed) write.body.destroy();
      await Promise.all([...inFlight]);
      if (uploadId !== undefined) {
        const id = uploadId;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key: names.data, UploadId: id })).catch((abortError: unknown) => {
          // Recovery aborts it at a later start (after 24 hours).
          this.logger.warn({ key: names.data, uploadId: id, err: this.failure('AbortMultipartUpload', abortError) }, 'storage: could not abort a failed multipart upload');
        });
      }
      throw error;
    }
  }

  /** Under the key's lock: the old version disappears, `publish` replaces the content, the new metadata appears. */
  private async commit(names: { data: string; meta: string }, meta: ObjectMeta, publish: () => Promise<void>): Promise<void> {
    const stored = { v: 1, ...toMeta(meta) };
    await this.locks.run(names.data, async () => {
      await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: names.meta })));
      try {
        await publish();
        await this.send('PutObject', () =>
          this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: names.meta, Body: JSON.stringify(stored), ContentType: 'application/json' })),
        );
      } catch (error) {
        // Content without metadata is invisible; remove it so nothing half-committed lingers.
        const visible = await this.metaExists(names.meta).catch(() => true);
        if (!visible) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: names.data })).catch(() => undefined);
        throw error;
      }
    });
  }

  private async metaExists(name: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: name }));
      return true;
    } catch (error) {
      if (isAbsent(error)) return false;
      throw this.failure('HeadObject', error);
    }
  }

  private async readMeta(name: string): Promise<ObjectMeta | undefined> {
    let text: string;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }));
      text = (await out.Body?.transformToString('utf8')) ?? '';
    } catch (error) {
      if (isAbsent(error)) return undefined;
      throw this.failure('GetObject', error);
    }
    try {
      const value: unknown = JSON.parse(text);
      if (isObjectMeta(value)) return toMeta(value);
    } catch {
      /* reported below */
    }
    this.logger.warn({ object: name }, 'storage: unreadable metadata object; the object is treated as absent');
    return undefined;
  }

  async get(namespace: string, key: string): Promise<{ meta: ObjectMeta; stream: Readable } | undefined> {
    const names = this.names(namespace, key);
    // The metadata and the content's answer are taken together under the lock; once the answer
    // has begun, S3 streams that version even if a later put replaces the object.
    return this.locks.run(names.data, async () => {
      const meta = await this.readMeta(names.meta);
      if (!meta) return undefined;
      try {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: names.data }));
        return { meta, stream: out.Body as Readable };
      } catch (error) {
        if (isAbsent(error)) return undefined;
        throw this.failure('GetObject', error);
      }
    });
  }

  async stat(namespace: string, key: string): Promise<ObjectMeta | undefined> {
    return this.readMeta(this.names(namespace, key).meta);
  }

  /**
   * ListObjectsV2 lists object names in byte order; keys sort in byte order too. But a key's
   * metadata object is `<key>@meta.json`, and "@" sorts after "-", ".", "/" and the digits: key `a`
   * (listed as `a@…`) comes after `a-b@…`, `a.txt@…`, `a/b@…` and `a0@…`, though it sorts before them.
   * Only such pairs are out of order, so: list until `limit + 1` keys are known, then the only keys
   * that can still be missing before the last of them are its prefixes that end before one of those
   * characters and that the listing has not reached yet. Those few are looked up directly.
   */
  async list(namespace: string, prefix: string, options: { limit: number; after?: string }): Promise<BackendListPage> {
    const base = this.base(namespace);
    const { limit, after } = options;
    const want = limit + 1;
    const keys: string[] = [];
    const known = new Map<string, ObjectMeta>();
    let token: string | undefined;
    let last = '';
    let truncated: boolean;
    do {
      // Names after `<after>` hold every key that sorts after it (its own metadata object included, skipped below).
      const page = await this.send('ListObjectsV2', () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: base + prefix,
            MaxKeys: this.listPageSize,
            ...(token !== undefined ? { ContinuationToken: token } : after !== undefined ? { StartAfter: base + after } : {}),
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue;
        last = object.Key;
        if (!object.Key.endsWith(META_SUFFIX)) continue;
        const key = object.Key.slice(base.length, -META_SUFFIX.length);
        if (after === undefined || key > after) insertSorted(keys, key, want);
      }
      truncated = page.IsTruncated === true && page.NextContinuationToken !== undefined;
      token = page.NextContinuationToken;
    } while (truncated && keys.length < want);

    if (truncated) {
      const threshold = keys[want - 1]!;
      const missing: string[] = [];
      for (let i = Math.max(1, prefix.length); i < threshold.length; i++) {
        const candidate = threshold.slice(0, i);
        if (threshold.charCodeAt(i) >= 0x40 || candidate.endsWith('/')) continue;
        if (after !== undefined && candidate <= after) continue;
        if (base + candidate + META_SUFFIX <= last) continue; // listed already
        missing.push(candidate);
      }
      const metas = await mapLimited(missing, READ_CONCURRENCY, (key) => this.readMeta(base + key + META_SUFFIX));
      missing.forEach((key, i) => {
        if (!metas[i]) return;
        known.set(key, metas[i]);
        insertSorted(keys, key, want);
      });
    }

    const page = keys.slice(0, limit);
    const metas = await mapLimited(page, READ_CONCURRENCY, async (key) => known.get(key) ?? (await this.readMeta(base + key + META_SUFFIX)));
    const items: BackendListPage['items'] = [];
    page.forEach((key, i) => {
      if (metas[i]) items.push({ key, meta: metas[i] }); // else deleted meanwhile
    });
    return { items, more: keys.length > limit };
  }

  async delete(namespace: string, key: string): Promise<boolean> {
    const names = this.names(namespace, key);
    return this.locks.run(names.data, async () => {
      const existed = await this.metaExists(names.meta);
      await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: names.meta }))); // invisible from here on
      await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: names.data }))); // an orphan content object goes too
      return existed;
    });
  }

  /**
   * The content in the local cache, `<cacheDir>/<sha256>`: downloaded once per content (checked
   * against its SHA-256), reused by every key holding the same bytes. Read it, never modify it.
   */
  async materialise(namespace: string, key: string): Promise<string | undefined> {
    const meta = await this.stat(namespace, key);
    if (!meta) return undefined;
    const cached = path.join(this.cacheDir, meta.sha256);
    if (await sizeOf(cached) === meta.size) return cached;

    const found = await this.get(namespace, key);
    if (!found) return undefined;
    const target = path.join(this.cacheDir, found.meta.sha256);
    await mkdir(this.cacheDir, { recursive: true });
    const tmp = path.join(this.cacheDir, `${CACHE_TMP_PREFIX}${randomUUID()}`);
    const hash = createHash('sha256');
    const hasher = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(found.stream, hasher, createWriteStream(tmp, { flags: 'wx', mode: 0o444, flush: true }));
      const sha256 = hash.digest('hex');
      if (sha256 !== found.meta.sha256) {
        throw new AiplatError('internal', `Storage: the S3 object "${namespace}/${key}" has the SHA-256 ${sha256}, not the ${found.meta.sha256} its metadata records`, {
          key,
          sha256,
          expected: found.meta.sha256,
        });
      }
      await rename(tmp, target);
      return target;
    } catch (error) {
      found.stream.destroy();
      await rm(tmp, { force: true });
      throw error;
    }
  }
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await statFile(file)).size;
  } catch {
    return undefined;
  }
}
