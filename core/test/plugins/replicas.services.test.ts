// Two core replicas on one PostgreSQL database and one Redis, each with its own data folder, with
// S3 storage (moto in server mode: a STAND-IN for S3, core/test/helpers/moto.ts): a plugin
// installed, upgraded, rolled back and uninstalled through one replica is followed by the other
// without a restart, the other loading the package from the bucket. Real registry, real packages,
// real PostgreSQL and Redis. Needs PostgreSQL (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL): the
// server pass of `npm test`.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestCore, type TestCore } from '@aiplat/testing';
import { generateKeyPair, publicKeyOf } from '@aiplat/plugin-sdk/package';
import { startRegistry, type RunningRegistry } from '../../../registry/src/server.js';
import { hashToken } from '../../../registry/src/publishers.js';
import { notesPackage, publish } from '../fixtures/packages.js';
import { startMoto, type Moto } from '../helpers/moto.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const key = generateKeyPair('acme');
const token = 'replica-publisher-token-0123456789';
let work: string;
let registry: RunningRegistry;
let database: { url: string; drop(): Promise<void> };
let a: TestCore;
let b: TestCore;
let moto: Moto | undefined;

async function finished(core: TestCore, operation: { id: string }): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const { body } = await core.client.get(`/api/v1/operations/${operation.id}`);
    if (body.state !== 'running') return body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`operation ${operation.id} did not finish`);
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`replica b never saw ${what}`);
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-replicas-'));
  registry = await startRegistry({ dataDir: path.join(work, 'registry'), port: 0, host: '127.0.0.1', publishers: [{ name: 'acme', tokenSha256: hashToken(token), keys: [publicKeyOf(key)] }] });
  for (const pkg of [{ version: '1.0.0' }, { version: '2.0.0', columns: [{ name: '002_priority', column: 'priority' }] }]) {
    const { file } = await notesPackage({ ...pkg, key }, work);
    expect((await publish(registry.url, token, readFileSync(file))).status).toBe(201);
  }
  const keysFile = path.join(work, 'trusted.json');
  writeFileSync(keysFile, JSON.stringify([publicKeyOf(key)]));
  database = await createTestDatabase();
  moto = await startMoto();
  const credentials = { accessKeyId: 'AKIAMOTOSTANDIN00002', secretAccessKey: 'moto-stand-in-secret-replicas' };
  const s3 = new S3Client({ region: 'us-east-1', endpoint: moto.endpoint, forcePathStyle: true, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: 'aiplat-replicas' }));
  s3.destroy();
  const dataDir = (name: string) => {
    const dir = path.join(work, name);
    mkdirSync(dir);
    return dir;
  };
  const config = {
    redisUrl: REDIS_URL,
    registries: [registry.url],
    trustedKeysFile: keysFile,
    storage: 's3' as const,
    s3Endpoint: moto.endpoint,
    s3Bucket: 'aiplat-replicas',
    s3AccessKeyId: credentials.accessKeyId,
    s3SecretAccessKey: credentials.secretAccessKey,
  };
  a = await startTestCore({ database: 'postgres', databaseUrl: database.url, dataDir: dataDir('a'), config });
  b = await startTestCore({ database: 'postgres', databaseUrl: database.url, dataDir: dataDir('b'), config });
});

afterAll(async () => {
  await b?.stop({ keep: true });
  await a?.stop({ keep: true });
  await registry?.close();
  await moto?.stop();
  await database?.drop();
  rmSync(work, { recursive: true, force: true });
});

describe('plugin packages across replicas', () => {
  it('an install through one replica is served by the other at once', async () => {
    const op = await finished(a, (await a.client.post('/api/v1/plugins/install', { id: 'notes', version: '1.0.0' })).body.operation);
    expect(op.state, JSON.stringify(op)).toBe('succeeded');
    await eventually(async () => (await b.client.get('/api/plugins/notes/items')).status === 200, 'the install');
    // b had nothing of it: it took the package from the bucket.
    expect(existsSync(path.join(b.dataDir, 'installed', 'notes', '1.0.0', 'aiplat-plugin.json'))).toBe(true);
    expect(existsSync(path.join(b.dataDir, 'storage'))).toBe(false);
    expect((await b.client.get('/api/plugins/notes/items')).body.version).toBe('1.0.0');
    expect((await b.client.post('/api/plugins/notes/items', { text: 'written through b' })).status).toBe(200);
  });

  it('upgrade and rollback are followed; the schema change is made once', async () => {
    expect((await finished(a, (await a.client.post('/api/v1/plugins/notes/upgrade', {})).body.operation)).state).toBe('succeeded');
    await eventually(async () => (await b.client.get('/api/plugins/notes/items')).body.version === '2.0.0', 'the upgrade');
    expect((await b.client.get('/api/plugins/notes/items')).body.items).toEqual([expect.objectContaining({ text: 'written through b', priority: null })]);
    expect((await finished(a, (await a.client.post('/api/v1/plugins/notes/rollback', {})).body.operation)).state).toBe('succeeded');
    await eventually(async () => (await b.client.get('/api/plugins/notes/items')).body.version === '1.0.0', 'the rollback');
    expect((await b.client.get('/api/plugins/notes/items')).body.items).toEqual([{ id: 1, text: 'written through b' }]);
  });

  it('an uninstall through one replica removes the plugin from the other', async () => {
    expect((await finished(a, (await a.client.post('/api/v1/plugins/notes/uninstall', { keepData: false })).body.operation)).state).toBe('succeeded');
    await eventually(async () => (await b.client.get('/api/plugins/notes/items')).status === 404, 'the uninstall');
    expect((await b.client.get('/api/v1/plugins')).body.items.map((p: { id: string }) => p.id)).not.toContain('notes');
  });
});
