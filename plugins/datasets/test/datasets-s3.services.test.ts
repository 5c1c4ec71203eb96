/**
 * The datasets plugin on S3 storage (AIPLAT_STORAGE=s3): uploads land in the bucket once per
 * SHA-256, previews and archives read them back. The S3 server is moto in server mode, a STAND-IN
 * for S3 that the test starts itself (core/test/helpers/moto.ts; scripts/provision-moto.sh).
 */
import { createHash, randomUUID } from 'node:crypto';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { startMoto, type Moto } from '../../../core/test/helpers/moto.js';

const API = '/api/plugins/datasets';
const BUCKET = 'datasets-test';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing-secret' };
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

let moto: Moto;
let s3: S3Client;
let core: TestCore;
const prefix = `ds-${randomUUID().slice(0, 8)}`;

async function bucketKeys(): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/plugins/datasets/blobs/`, ContinuationToken: token }));
    out.push(...(page.Contents ?? []).map((c) => c.Key!).filter((k) => !k.endsWith('@meta.json')));
    token = page.NextContinuationToken;
  } while (token);
  return out;
}

async function uploadAndFinish(datasetId: string, files: Record<string, Buffer | string>): Promise<{ id: string; number: number }> {
  const commit = (await core.client.post(`${API}/datasets/${datasetId}/commits`, {})).body.id as string;
  for (const [p, content] of Object.entries(files)) {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    const created = await fetch(new URL(`${API}/uploads`, core.url), {
      method: 'POST',
      headers: {
        authorization: `Bearer ${core.client.token}`,
        'tus-resumable': '1.0.0',
        'upload-length': String(bytes.length),
        'upload-metadata': `commit ${Buffer.from(commit).toString('base64')},path ${Buffer.from(p).toString('base64')},sha256 ${Buffer.from(sha(bytes)).toString('base64')}`,
      },
    });
    expect(created.status, await created.text()).toBe(201);
    const patched = await fetch(new URL(created.headers.get('location')!, core.url), {
      method: 'PATCH',
      headers: { authorization: `Bearer ${core.client.token}`, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      body: bytes,
    });
    expect(patched.status, await patched.text()).toBe(204);
  }
  const finished = await core.client.post(`${API}/commits/${commit}/finish`, {});
  expect(finished.status, JSON.stringify(finished.body)).toBe(201);
  return finished.body;
}

describe('datasets on S3 storage (moto, a stand-in for S3)', () => {
  beforeAll(async () => {
    moto = await startMoto();
    s3 = new S3Client({ region: 'us-east-1', endpoint: moto.endpoint, forcePathStyle: true, credentials });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    core = await startTestCore({
      plugins: [path.resolve(import.meta.dirname, '..')],
      config: { storage: 's3', s3Endpoint: moto.endpoint, s3Region: 'us-east-1', s3Bucket: BUCKET, s3Prefix: prefix, s3AccessKeyId: credentials.accessKeyId, s3SecretAccessKey: credentials.secretAccessKey },
    });
  }, 300_000);
  afterAll(async () => {
    await core?.stop();
    s3?.destroy();
    await moto?.stop();
  });

  it('stores each content once in the bucket, previews it and archives it', async () => {
    const d = (await core.client.post(`${API}/datasets`, { name: 'on-s3' })).body;
    // Bigger than one S3 multipart part, so the upload goes in parts.
    const big = Buffer.alloc(9 * 1024 * 1024, 3);
    const csv = 'a,b\n1,x\n2,y\n';
    const v1 = await uploadAndFinish(d.id, { 'big.bin': big, 'table.csv': csv });
    expect((await bucketKeys()).sort()).toEqual([`${prefix}/plugins/datasets/blobs/${sha(big)}`, `${prefix}/plugins/datasets/blobs/${sha(csv)}`].sort());

    const preview = await core.client.get(`${API}/versions/${v1.id}/preview?path=table.csv`);
    expect(preview.status, JSON.stringify(preview.body)).toBe(200);
    expect(preview.body).toMatchObject({ kind: 'csv', rowCount: 2 });

    // A second version with the same big file: nothing new for it in the bucket.
    const v2 = await uploadAndFinish(d.id, { 'big.bin': big, 'table.csv': `${csv}3,z\n` });
    expect(v2.number).toBe(2);
    expect(await bucketKeys()).toHaveLength(3);

    const archive = await fetch(new URL(`${API}/versions/${v2.id}/archive`, core.url), { headers: { authorization: `Bearer ${core.client.token}` } });
    expect(archive.status).toBe(200);
    const bytes = Buffer.from(await archive.arrayBuffer());
    // A tar holds the two files plus headers and padding.
    expect(bytes.length).toBeGreaterThan(big.length);
    expect(bytes.includes(Buffer.from('3,z'))).toBe(true);

    // Deleting the first version keeps shared content and drops what only it held.
    expect((await core.client.delete(`${API}/versions/${v1.id}`)).status).toBe(204);
    await expect.poll(async () => (await bucketKeys()).length).toBe(2);
  });
});
