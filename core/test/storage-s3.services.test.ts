/**
 * The S3 storage backend (core/src/storage/s3-backend.ts, AIPLAT_STORAGE=s3) against a real
 * S3-compatible server over HTTP.
 *
 * THE S3 SERVER IS MOTO IN SERVER MODE (https://github.com/getmoto/moto, `moto[server]` from PyPI),
 * A STAND-IN FOR REAL S3: it speaks the S3 API (buckets, objects, multipart uploads, listing) but
 * it is not AWS, and it does not check credentials or enforce limits such as the 5 MiB part
 * minimum. Passing here shows the backend drives the S3 API correctly; it does not prove that
 * every S3 implementation behaves as moto does.
 *
 * The test provisions moto itself (scripts/provision-moto.sh: a venv in
 * node_modules/.cache/aiplat-moto-venv, about a minute the first time, instant after), starts
 * `moto_server` as a child process on a free port for this file, and creates a bucket. It runs in
 * the server pass of `npm test` (*.services.test.ts); it needs python3 with venv and, the first
 * time, PyPI.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparedDataDir, startTestCore, type TestCore } from '@aiplat/testing';
import { S3Backend, type S3BackendOptions } from '../src/storage/s3-backend.js';
import { createStorage, type Storage } from '../src/storage/storage.js';
import { notesPackage } from './fixtures/packages.js';
import { freePort, startMoto, type Moto } from './helpers/moto.js';
import { describeBackendContract, failingAfter, inChunks, MiB, readAll, sha256 } from './helpers/storage-contract.js';

const BUCKET = 'aiplat-test';
const REGION = 'us-east-1';
/** moto accepts any credentials; these look like real ones so the redaction check means something. */
const ACCESS_KEY_ID = 'AKIAMOTOSTANDIN00001';
const SECRET_ACCESS_KEY = `moto-stand-in-secret-${randomBytes(12).toString('hex')}`;
const logger = pino({ level: 'silent' });

let moto: Moto | undefined;
let endpoint = '';
let s3: S3Client;


async function listNames(prefix: string): Promise<string[]> {
  const names: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
    names.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return names;
}

async function pendingUploads(prefix: string, bucket = BUCKET): Promise<string[]> {
  const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix || undefined }));
  return (page.Uploads ?? []).map((u) => u.Key!);
}

async function exists(name: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: name }));
    return true;
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw error;
  }
}

function backendOptions(prefix: string, dataDir: string, more: Partial<S3BackendOptions> = {}): S3BackendOptions {
  return {
    bucket: BUCKET,
    endpoint,
    region: REGION,
    prefix,
    accessKeyId: ACCESS_KEY_ID,
    secretAccessKey: SECRET_ACCESS_KEY,
    cacheDir: path.join(dataDir, 'storage-cache'),
    logger,
    ...more,
  };
}

/** A storage on a prefix of its own in the shared bucket. */
async function openS3(more: Partial<S3BackendOptions> = {}): Promise<{ storage: Storage; backend: S3Backend; prefix: string; dataDir: string; close(): void }> {
  const prefix = `t-${randomUUID().slice(0, 8)}/`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-s3-'));
  const backend = new S3Backend(backendOptions(prefix, dataDir, more));
  const storage = await createStorage({ dataDir, logger, backend });
  return {
    storage,
    backend,
    prefix,
    dataDir,
    close() {
      backend.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

beforeAll(async () => {
  // Provision (quick when the venv is there), then one moto server for this file.
  moto = await startMoto();
  endpoint = moto.endpoint;
  s3 = new S3Client({ region: REGION, endpoint, forcePathStyle: true, credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY } });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 300_000);

afterAll(async () => {
  s3?.destroy();
  await moto?.stop();
});

// The behaviour every backend owes, as the folder backend's tests check it. Small listing pages
// (4 names a call) so that paging and the out-of-order lookups run on a handful of keys.
describeBackendContract('S3 backend on moto, a stand-in for S3', async () => {
  const opened = await openS3({ listPageSize: 4 });
  return {
    storage: opened.storage,
    dataDir: opened.dataDir,
    maxKeyBytes: opened.backend.maxKeyBytes('core'),
    async leftovers() {
      const names = new Set(await listNames(opened.prefix));
      const found = (await pendingUploads(opened.prefix)).map((key) => `pending multipart upload of ${key}`);
      for (const name of names) {
        if (name.endsWith('@meta.json')) {
          if (!names.has(name.slice(0, -'@meta.json'.length))) found.push(`metadata without content: ${name}`);
        } else if (!names.has(`${name}@meta.json`)) {
          found.push(`content without metadata: ${name}`);
        }
      }
      const cache = path.join(opened.dataDir, 'storage-cache');
      found.push(...readdirSync(cache).filter((n) => n.startsWith('.tmp-')));
      return found;
    },
    async traces(namespace, key) {
      const name = `${opened.prefix}${namespace}/${key}`;
      const found: string[] = [];
      for (const n of [name, `${name}@meta.json`]) if (await exists(n)) found.push(n);
      return found;
    },
    close: async () => opened.close(),
  };
});

describe('S3 backend on moto (a stand-in for S3)', () => {
  it('lays objects out as <prefix><namespace>/<key> with a JSON metadata sidecar, and sends big ones in 8 MiB parts', async () => {
    const { storage, prefix, close } = await openS3();
    try {
      const data = randomBytes(20 * MiB + 3);
      const plugin = storage.forPlugin('models');
      const put = await plugin.put('weights/model.bin', inChunks(data, 3 * MiB), { contentType: 'application/octet-stream' });
      await storage.put('small.txt', 'small');
      expect(await listNames(prefix)).toEqual([`${prefix}core/small.txt`, `${prefix}core/small.txt@meta.json`, `${prefix}plugins/models/weights/model.bin`, `${prefix}plugins/models/weights/model.bin@meta.json`]);
      const meta = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}plugins/models/weights/model.bin@meta.json` }));
      expect(JSON.parse(await meta.Body!.transformToString())).toEqual({ v: 1, size: data.length, sha256: sha256(data), contentType: 'application/octet-stream', createdAt: put.createdAt });
      // A multipart upload's ETag ends in the number of parts: 8 + 8 + 4 MiB.
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}plugins/models/weights/model.bin` }));
      expect(head.ETag).toMatch(/-3"$/);
      expect(head.ContentLength).toBe(data.length);
      expect((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}core/small.txt` }))).ETag).not.toContain('-');
      expect(await pendingUploads(prefix)).toEqual([]);
    } finally {
      close();
    }
  });

  it('keeps nothing of a failed multi-part write: no content, no metadata, no pending multipart upload', async () => {
    const { storage, prefix, close } = await openS3();
    try {
      const data = randomBytes(20 * MiB);
      const old = await storage.put('model.bin', 'the old version');
      const oldNames = await listNames(prefix);
      await expect(storage.put('model.bin', inChunks(data, MiB), { expectedSha256: sha256('other') })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.put('other.bin', inChunks(data, MiB), { maxBytes: 17 * MiB })).rejects.toMatchObject({ code: 'payload_too_large' });
      await expect(storage.put('gone.bin', failingAfter(100, 128 * 1024))).rejects.toThrow('source went away');
      expect(await pendingUploads(prefix)).toEqual([]);
      expect(await listNames(prefix)).toEqual(oldNames);
      expect(await storage.stat('model.bin')).toEqual(old);
      expect((await readAll((await storage.get('model.bin')).stream)).toString()).toBe('the old version');
    } finally {
      close();
    }
  });

  it('materialises into <dataDir>/storage-cache/<sha256>, downloading once and reusing the file', async () => {
    const { storage, dataDir, close } = await openS3();
    try {
      const data = randomBytes(9 * MiB);
      const put = await storage.put('data/train.bin', data);
      const file = await storage.materialise('data/train.bin');
      expect(file).toBe(path.join(dataDir, 'storage-cache', put.sha256));
      expect(readFileSync(file).equals(data)).toBe(true);
      const first = statSync(file);
      // The same content under another key: the same file, not downloaded again.
      await storage.put('data/copy.bin', data);
      expect(await storage.materialise('data/copy.bin')).toBe(file);
      expect(await storage.materialise('data/train.bin')).toBe(file);
      expect(statSync(file).mtimeMs).toBe(first.mtimeMs);
      // An overwrite materialises to its own content.
      const second = await storage.put('data/train.bin', 'new content');
      const newer = await storage.materialise('data/train.bin');
      expect(newer).toBe(path.join(dataDir, 'storage-cache', second.sha256));
      expect(readFileSync(newer, 'utf8')).toBe('new content');
      expect(readdirSync(path.join(dataDir, 'storage-cache')).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    } finally {
      close();
    }
  });

  it('aborts at start the multipart uploads under its prefix older than 24 hours, and removes cache temp files', async () => {
    const { prefix, dataDir, close } = await openS3();
    try {
      for (const key of [`${prefix}core/crashed.bin`, `${prefix}plugins/p-one/crashed.bin`]) {
        await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
      }
      const leftover = path.join(dataDir, 'storage-cache', '.tmp-crashed-download');
      writeFileSync(leftover, 'partial');
      // Recovery compares the start time S3 reports with its clock. moto (the stand-in) reports
      // the same fixed start time for every upload, so the clock is set relative to it.
      const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }));
      const initiated = listed.Uploads![0]!.Initiated!.getTime();
      const hour = 60 * 60 * 1000;
      // A restart an hour after they began: young (another core on the bucket may own them), kept.
      let reopened = new S3Backend(backendOptions(prefix, dataDir, { now: () => initiated + hour }));
      await createStorage({ dataDir, logger, backend: reopened });
      reopened.close();
      expect((await pendingUploads(prefix)).sort()).toEqual([`${prefix}core/crashed.bin`, `${prefix}plugins/p-one/crashed.bin`]);
      expect(existsSync(leftover)).toBe(false);
      // A day later: aborted; another application's upload elsewhere in the bucket is not touched.
      reopened = new S3Backend(backendOptions(prefix, dataDir, { now: () => initiated + 25 * hour }));
      await createStorage({ dataDir, logger, backend: reopened });
      reopened.close();
      expect(await pendingUploads(prefix)).toEqual([]);

      // Without a prefix, only the namespaces' uploads are aborted: another application's in the bucket are not touched.
      const bucket = `shared-${randomUUID().slice(0, 8)}`;
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      for (const key of ['core/crashed.bin', 'plugins/p-two/crashed.bin', 'other-app/file.bin', 'corer/file.bin']) {
        await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      }
      reopened = new S3Backend({ ...backendOptions('', dataDir, { now: () => initiated + 25 * hour }), bucket });
      await createStorage({ dataDir, logger, backend: reopened });
      reopened.close();
      expect((await pendingUploads('', bucket)).sort()).toEqual(['corer/file.bin', 'other-app/file.bin']);
    } finally {
      close();
    }
  });

  it('fails at start naming the endpoint and the bucket when the bucket is missing or the endpoint does not answer', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-s3-'));
    try {
      const missing = new S3Backend({ ...backendOptions('x/', dataDir), bucket: 'no-such-bucket' });
      await expect(createStorage({ dataDir, logger, backend: missing })).rejects.toMatchObject({
        code: 'unavailable',
        message: `Storage: cannot use the S3 bucket "no-such-bucket" at ${endpoint}: the bucket "no-such-bucket" does not exist (create it, or set AIPLAT_S3_BUCKET to one that does)`,
      });
      const closedPort = await freePort();
      const nowhere = new S3Backend({ ...backendOptions('x/', dataDir), endpoint: `http://127.0.0.1:${closedPort}` });
      await expect(createStorage({ dataDir, logger, backend: nowhere })).rejects.toMatchObject({
        code: 'unavailable',
        message: `Storage: cannot use the S3 bucket "${BUCKET}" at http://127.0.0.1:${closedPort}: the endpoint cannot be reached (ECONNREFUSED)`,
      });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('names the bucket and the endpoint when the bucket goes away while in use', async () => {
    const bucket = `short-lived-${randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-s3-'));
    const backend = new S3Backend({ ...backendOptions('', dataDir), bucket });
    try {
      const storage = await createStorage({ dataDir, logger, backend });
      await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
      const expected = { code: 'unavailable', message: expect.stringContaining(`bucket "${bucket}" at ${endpoint} failed: the bucket "${bucket}" does not exist`) };
      await expect(storage.put('a.txt', 'a')).rejects.toMatchObject(expected);
      await expect(storage.put('b.bin', inChunks(randomBytes(10 * MiB), MiB))).rejects.toMatchObject(expected);
      await expect(storage.stat('a.txt')).rejects.toMatchObject(expected);
      await expect(storage.list()).rejects.toMatchObject(expected);
    } finally {
      backend.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a core with AIPLAT_STORAGE=s3 (moto, a stand-in for S3)', () => {
  const s3Config = (prefix: string, bucket = BUCKET) => ({
    storage: 's3' as const,
    s3Endpoint: endpoint,
    s3Region: REGION,
    s3Bucket: bucket,
    s3Prefix: prefix,
    s3AccessKeyId: ACCESS_KEY_ID,
    s3SecretAccessKey: SECRET_ACCESS_KEY,
  });

  it('keeps its blobs and the plugin packages it installs in the bucket, and redacts the secret key', async () => {
    const prefix = `core-${randomUUID().slice(0, 8)}`;
    let core: TestCore | undefined;
    try {
      core = await startTestCore({ config: s3Config(prefix) });
      expect(core.core.storage.backend.kind).toBe('s3');
      await core.core.storage.put('notes/hello.txt', 'kept in the bucket');
      await core.core.storage.forPlugin('hello').put('state.json', '{}');
      expect(await listNames(`${prefix}/`)).toEqual(
        expect.arrayContaining([`${prefix}/core/notes/hello.txt`, `${prefix}/core/notes/hello.txt@meta.json`, `${prefix}/plugins/hello/state.json@meta.json`]),
      );
      const body = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/core/notes/hello.txt` }));
      expect(await body.Body!.transformToString()).toBe('kept in the bucket');
      expect(existsSync(path.join(core.dataDir, 'storage', 'core', 'notes'))).toBe(false);

      // An uploaded plugin package (unsigned, allow-listed) lands in the bucket too.
      const work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-s3-pkg-'));
      try {
        const { file } = await notesPackage({ id: 's3-notes', version: '1.0.0' }, work);
        expect((await core.client.post('/api/v1/plugins/unsigned-allowlist', { pluginId: 's3-notes', note: 'S3 storage test' })).status).toBe(201);
        const upload = await core.client.request('POST', '/api/v1/plugins/upload', { raw: readFileSync(file), headers: { 'content-type': 'application/gzip' } });
        expect(upload.status, upload.text).toBe(202);
        let op: any;
        for (let i = 0; i < 600; i++) {
          op = (await core.client.get(`/api/v1/operations/${upload.body.operation.id}`)).body;
          if (op.state !== 'running') break;
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded' });
        const packageBytes = readFileSync(file);
        const stored = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/core/plugins/s3-notes/1.0.0.tgz` }));
        expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(packageBytes)).toBe(true);
        expect(await core.core.storage.stat('plugins/s3-notes/1.0.0.tgz')).toMatchObject({ size: packageBytes.length, sha256: sha256(packageBytes) });
      } finally {
        rmSync(work, { recursive: true, force: true });
      }

      // The secret access key is one the redactor knows.
      core.core.logger.info({ note: `the key is ${SECRET_ACCESS_KEY}` }, 'redaction probe');
      const probe = core.logs.find((l) => l.msg === 'redaction probe');
      expect(probe).toBeDefined();
      expect(JSON.stringify(probe)).not.toContain(SECRET_ACCESS_KEY);
    } finally {
      await core?.stop();
    }
  });

  it('does not start when the bucket is missing, saying which bucket at which endpoint', async () => {
    // A data folder of this test's own (embedded database, from the template: quick), removed after.
    const dataDir = await preparedDataDir();
    try {
      await expect(startTestCore({ database: 'embedded', dataDir, config: s3Config('p', 'missing-bucket') })).rejects.toThrow(
        `Storage: cannot use the S3 bucket "missing-bucket" at ${endpoint}: the bucket "missing-bucket" does not exist`,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
