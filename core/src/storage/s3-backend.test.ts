import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { explainS3Error, S3Backend } from './s3-backend.js';
import { createStorage } from './storage.js';

// Without a server: how the S3 backend streams parts (a scripted client), and what its errors say.
// Against a real S3-compatible server (moto, a stand-in for S3): core/test/storage-s3.services.test.ts.

const logger = pino({ level: 'silent' });
const MiB = 1024 * 1024;
const where = { bucket: 'aiplat', region: 'us-east-1' };

/** A client that answers the commands a put sends, each part after `partMs`, recording what it saw. */
function scriptedClient(options: { partMs?: number; failPart?: number } = {}) {
  const seen = { parts: [] as number[], inFlight: 0, maxInFlight: 0, completed: [] as number[], aborted: 0, puts: [] as string[], uploadedBytes: 0 };
  const client = {
    async send(command: { input: Record<string, unknown> }) {
      if (command instanceof CreateMultipartUploadCommand) return { UploadId: 'upload-1' };
      if (command instanceof UploadPartCommand) {
        const n = command.input.PartNumber!;
        seen.parts[n - 1] = (command.input.Body as Buffer).length;
        seen.inFlight++;
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
        await new Promise((r) => setTimeout(r, options.partMs ?? 2));
        seen.inFlight--;
        if (n === options.failPart) throw Object.assign(new Error('connect ECONNRESET'), { code: 'ECONNRESET' });
        seen.uploadedBytes += (command.input.Body as Buffer).length;
        return { ETag: `"etag-${n}"` };
      }
      if (command instanceof CompleteMultipartUploadCommand) {
        seen.completed = command.input.MultipartUpload!.Parts!.map((p) => p.PartNumber!);
        return {};
      }
      if (command instanceof AbortMultipartUploadCommand) {
        seen.aborted++;
        return {};
      }
      if (command instanceof PutObjectCommand) {
        seen.puts.push(command.input.Key!);
        return {};
      }
      if (command instanceof DeleteObjectCommand) return {};
      if (command instanceof HeadObjectCommand) throw Object.assign(new Error('NotFound'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
      return {};
    },
    destroy() {},
  };
  return { client: client as unknown as S3Client, seen };
}

function backendWith(client: S3Client): S3Backend {
  return new S3Backend({ bucket: 'aiplat', endpoint: 'http://s3.test', cacheDir: path.join(os.tmpdir(), 'aiplat-s3-unit-cache'), logger, client, prefix: 'pre' });
}

/** `total` bytes in 1 MiB chunks, produced only when read; `produced()` says how many so far. */
function lazySource(total: number) {
  let produced = 0;
  const stream = new Readable({
    highWaterMark: MiB,
    read() {
      if (produced >= total) return void this.push(null);
      const size = Math.min(MiB, total - produced);
      produced += size;
      this.push(Buffer.alloc(size, produced % 251));
    },
  });
  return { stream, produced: () => produced };
}

describe('S3 backend: streaming in parts (scripted client)', () => {
  it('sends 8 MiB parts, at most two at a time, reading the body only as parts leave', async () => {
    const { client, seen } = scriptedClient({ partMs: 15 });
    const backend = backendWith(client);
    const total = 100 * MiB + 5;
    const source = lazySource(total);
    let readAhead = 0;
    const watch = setInterval(() => (readAhead = Math.max(readAhead, source.produced() - seen.uploadedBytes)), 1);
    const hash = createHash('sha256');
    const info = await backend.put('core', 'big.bin', {
      body: source.stream.on('data', (c: Buffer) => hash.update(c)),
      seal: () => ({ size: total, sha256: hash.digest('hex'), createdAt: new Date().toISOString() }),
    });
    clearInterval(watch);
    expect(info.size).toBe(total);
    expect(seen.parts).toEqual([...Array.from({ length: 12 }, () => 8 * MiB), 4 * MiB + 5]);
    expect(seen.maxInFlight).toBe(2);
    expect(seen.completed).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    // memory: two parts in flight, one filling, and the streams' buffers; never the whole body
    expect(readAhead).toBeLessThanOrEqual(3 * 8 * MiB + 4 * MiB);
    expect(seen.puts).toEqual(['pre/core/big.bin@meta.json']);
    expect(seen.aborted).toBe(0);
  });

  it('sends a body of at most one part as one PutObject, after it ended', async () => {
    const { client, seen } = scriptedClient();
    const backend = backendWith(client);
    await backend.put('plugins/p-one', 'a/b.bin', {
      body: Readable.from([Buffer.alloc(8 * MiB)]),
      seal: () => ({ size: 8 * MiB, sha256: '0'.repeat(64), createdAt: new Date().toISOString() }),
    });
    expect(seen.parts).toEqual([]);
    expect(seen.puts).toEqual(['pre/plugins/p-one/a/b.bin', 'pre/plugins/p-one/a/b.bin@meta.json']);
  });

  it('aborts the upload and stops reading the body when a part fails, naming the operation and the endpoint', async () => {
    const { client, seen } = scriptedClient({ failPart: 3 });
    const storage = await createStorage({ dataDir: os.tmpdir(), logger, backend: Object.assign(backendWith(client), { recover: async () => undefined }) });
    const source = lazySource(200 * MiB);
    await expect(storage.put('big.bin', source.stream)).rejects.toMatchObject({
      code: 'unavailable',
      message: 'Storage: S3 UploadPart on bucket "aiplat" at http://s3.test failed: the endpoint cannot be reached (ECONNRESET)',
    });
    expect(seen.aborted).toBe(1);
    expect(seen.completed).toEqual([]);
    expect(seen.puts).toEqual([]);
    expect(source.produced()).toBeLessThan(60 * MiB);
    expect(source.stream.destroyed).toBe(true);
  });

  it('grows parts every 2,000 so that 10,000 hold big objects, and refuses options S3 would', () => {
    const backend = backendWith(scriptedClient().client) as unknown as { partSizeFor(n: number): number };
    expect([1, 2000, 2001, 4001, 6001, 8001, 10000].map((n) => backend.partSizeFor(n) / MiB)).toEqual([8, 8, 16, 32, 64, 128, 128]);
    expect(() => new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger, partSize: MiB })).toThrow(/at least 5242880 bytes/);
    expect(() => new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger, accessKeyId: 'AKIA' })).toThrow(/both/);
  });

  it('keeps objects under the prefix, with one "/" after it', () => {
    expect(new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger, prefix: 'aiplat' }).prefix).toBe('aiplat/');
    expect(new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger, prefix: 'a/b/' }).prefix).toBe('a/b/');
    expect(new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger }).prefix).toBe('');
    expect(new S3Backend({ bucket: 'b', cacheDir: '/tmp/x', logger, region: 'eu-west-1' }).where).toBe('AWS S3 (eu-west-1)');
    const fromConfig = S3Backend.fromConfig(
      { dataDir: '/srv/data', s3Bucket: 'b', s3Endpoint: 'http://minio:9000', s3Region: 'us-east-1', s3Prefix: undefined, s3AccessKeyId: undefined, s3SecretAccessKey: undefined, s3ForcePathStyle: undefined },
      logger,
    );
    expect(fromConfig).toMatchObject({ bucket: 'b', where: 'http://minio:9000', prefix: '' });
  });
});

describe('S3 errors in words', () => {
  const err = (name: string, status?: number, extra: Record<string, unknown> = {}) => Object.assign(new Error(`${name} happened`), { name, ...(status ? { $metadata: { httpStatusCode: status } } : {}), ...extra });

  it('says when the bucket is missing, access is denied, the endpoint does not answer, or the region is wrong', () => {
    expect(explainS3Error(err('NoSuchBucket', 404), where)).toBe('the bucket "aiplat" does not exist (create it, or set AIPLAT_S3_BUCKET to one that does)');
    expect(explainS3Error(err('NotFound', 404), where, true)).toBe('the bucket "aiplat" does not exist (create it, or set AIPLAT_S3_BUCKET to one that does)');
    expect(explainS3Error(err('Forbidden', 403), where)).toBe('access denied: check AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY, and what they may do on the bucket');
    expect(explainS3Error(err('InvalidAccessKeyId', 403), where)).toMatch(/^access denied \(InvalidAccessKeyId\): check AIPLAT_S3_ACCESS_KEY_ID/);
    expect(explainS3Error(err('SignatureDoesNotMatch', 403), where)).toMatch(/^access denied \(SignatureDoesNotMatch\)/);
    expect(explainS3Error(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }), where)).toBe('the endpoint cannot be reached (ECONNREFUSED)');
    expect(explainS3Error(Object.assign(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]), {}), where)).toBe('the endpoint cannot be reached (ECONNREFUSED)');
    expect(explainS3Error(Object.assign(new Error('getaddrinfo ENOTFOUND s3.nowhere'), { code: 'ENOTFOUND' }), where)).toBe('the endpoint cannot be reached (ENOTFOUND)');
    expect(explainS3Error(err('TimeoutError'), where)).toBe('the endpoint cannot be reached (TimeoutError)');
    expect(explainS3Error(err('PermanentRedirect', 301), where, true)).toBe('the bucket is in another region than "us-east-1" (set AIPLAT_S3_REGION)');
    expect(explainS3Error(err('CredentialsProviderError'), where)).toMatch(/^no credentials: set AIPLAT_S3_ACCESS_KEY_ID/);
    expect(explainS3Error(err('SlowDown', 503), where)).toBe('SlowDown (HTTP 503): SlowDown happened');
  });
});
