import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { REPO_ROOT } from './helpers/spawn-core.js';

const FIXTURE = 'core/test/fixtures/storage-plugin';
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const q = (key: string) => encodeURIComponent(key);

async function until(fn: () => boolean, ms: number): Promise<void> {
  const started = Date.now();
  while (!fn()) {
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('storage in the core', () => {
  let core: TestCore | undefined;
  afterEach(async () => {
    await core?.stop();
    core = undefined;
  });

  const storageDir = () => path.join(core!.dataDir, 'storage');
  const tmpFiles = () => readdirSync(path.join(storageDir(), '.tmp'));
  const probe = '/api/plugins/storage-probe';
  const putBlob = (key: string, data: string | Buffer, query = '') =>
    core!.client.request('PUT', `${probe}/blobs?key=${q(key)}${query}`, { raw: data, headers: { 'content-type': 'text/plain' } });

  it('gives a plugin its own namespace: its keys land under plugins/<id>/, it cannot see the core\'s or another plugin\'s', async () => {
    core = await startTestCore({ plugins: [FIXTURE] });
    const put = await putBlob('notes/today.txt', 'written by the plugin');
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ key: 'notes/today.txt', size: 21, sha256: sha256('written by the plugin'), contentType: 'text/plain' });

    const got = await core.client.get(`${probe}/blobs?key=${q('notes/today.txt')}`);
    expect(got.body).toEqual({ info: put.body, text: 'written by the plugin' });
    const where = (await core.client.get(`${probe}/path?key=${q('notes/today.txt')}`)).body.path as string;
    expect(where.startsWith(path.join(storageDir(), 'plugins', 'storage-probe') + path.sep)).toBe(true);
    expect(readFileSync(where, 'utf8')).toBe('written by the plugin');
    await putBlob('flat.txt', 'flat');
    expect(readFileSync(path.join(storageDir(), 'plugins', 'storage-probe', 'flat.txt'), 'utf8')).toBe('flat');

    // The core's namespace and another plugin's hold the same keys; the plugin sees only its own.
    await core.core.storage.put('secret.txt', 'core secret');
    await core.core.storage.forPlugin('hello').put('secret.txt', 'hello secret');
    await core.core.storage.put('notes/today.txt', 'core version');
    expect(readFileSync(path.join(storageDir(), 'core', 'secret.txt'), 'utf8')).toBe('core secret');
    expect((await core.client.get(`${probe}/blobs?key=secret.txt`)).status).toBe(404);
    expect((await core.client.get(`${probe}/stat?key=secret.txt`)).status).toBe(404);
    expect((await core.client.get(`${probe}/blobs?key=${q('notes/today.txt')}`)).body.text).toBe('written by the plugin');
    expect((await core.client.get(`${probe}/list`)).body).toEqual({
      items: [expect.objectContaining({ key: 'flat.txt' }), expect.objectContaining({ key: 'notes/today.txt' })],
      nextCursor: null,
    });
    expect((await core.core.storage.list()).items.map((i) => i.key)).toEqual(['notes/today.txt', 'secret.txt']);

    // Climbing out is refused before anything is touched.
    for (const key of ['../hello/secret.txt', '../../core/secret.txt', '..', 'a/../../../core/secret.txt', '/etc/passwd', '..\\core\\secret.txt', 'a\0b']) {
      for (const res of [
        await core.client.get(`${probe}/blobs?key=${q(key)}`),
        await putBlob(key, 'overwrite attempt'),
        await core.client.delete(`${probe}/blobs?key=${q(key)}`),
        await core.client.get(`${probe}/path?key=${q(key)}`),
      ]) {
        expect(res.status, key).toBe(400);
        expect(res.body.error.code).toBe('validation_failed');
        expect(res.body.error.message).toContain(JSON.stringify(key));
      }
    }
    expect((await core.client.get(`${probe}/list?prefix=${q('../')}`)).status).toBe(400);
    const kept = await core.core.storage.get('secret.txt');
    kept.stream.destroy();
    expect(kept.info.size).toBe(11);
    expect(readFileSync(path.join(storageDir(), 'plugins', 'hello', 'secret.txt'), 'utf8')).toBe('hello secret');

    expect((await core.client.delete(`${probe}/blobs?key=flat.txt`)).body).toEqual({ deleted: true });
    expect((await core.client.delete(`${probe}/blobs?key=flat.txt`)).body).toEqual({ deleted: false });
  });

  it('keeps nothing of an upload the client abandons half-way, or that passes maxBytes or fails its checksum', async () => {
    core = await startTestCore({ plugins: [FIXTURE] });
    const url = new URL(`${core.url}${probe}/blobs?key=upload.bin`);
    const req = http.request(url, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${core.client.token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(4 * 1024 * 1024),
      },
    });
    req.on('error', () => undefined);
    req.write(randomBytes(1024 * 1024));
    // The core is streaming into a temp file: now the client goes away.
    await until(() => tmpFiles().length > 0, 5000);
    req.destroy();
    await until(() => tmpFiles().length === 0, 5000);
    expect(await core.core.storage.forPlugin('storage-probe').stat('upload.bin')).toBeUndefined();
    expect((await core.client.get(`${probe}/stat?key=upload.bin`)).status).toBe(404);

    const tooBig = await putBlob('big.txt', 'x'.repeat(2000), '&maxBytes=1000');
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toMatchObject({ code: 'payload_too_large', details: { key: 'big.txt', maxBytes: 1000 } });
    const wrongSum = await putBlob('sum.txt', 'content', `&expectedSha256=${sha256('other')}`);
    expect(wrongSum.status).toBe(400);
    expect(wrongSum.body.error.message).toContain(sha256('content'));
    expect((await core.client.get(`${probe}/list`)).body).toEqual({ items: [], nextCursor: null });
    expect(tmpFiles()).toEqual([]);
    expect(existsSync(path.join(storageDir(), 'plugins', 'storage-probe', 'big.txt'))).toBe(false);
  });

  it('removes what a crash left in storage when the core starts again', async () => {
    core = await startTestCore({ plugins: [FIXTURE] });
    await putBlob('kept.txt', 'kept');
    const stale = path.join(storageDir(), '.tmp', 'crashed-upload.data');
    writeFileSync(stale, randomBytes(10_000));
    core = await core.restart();
    expect(existsSync(stale)).toBe(false);
    expect(tmpFiles()).toEqual([]);
    expect(core.logs.some((l) => l.msg === 'storage: removed files of writes a crash interrupted' && l.tempFiles === 1)).toBe(true);
    expect((await core.client.get(`${probe}/blobs?key=kept.txt`)).body.text).toBe('kept');
  });

  it('streams 1 GiB in and out with the process RSS growing by less than 100 MB', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-storage-big-'));
    try {
      const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', 'core/test/helpers/storage-big-blob.ts', dataDir], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code, err).toBe(0);
      const result = JSON.parse(out.trim().split('\n').pop()!) as Record<string, number | string | boolean>;
      console.log(`storage 1 GiB: put ${result.putMs} ms, get ${result.getMs} ms, RSS ${result.rssBeforeMiB} → ${result.rssPeakMiB} MiB (+${result.rssGrowthMiB} MiB, ${result.samples} samples)`);
      expect(result.size).toBe(1024 ** 3);
      expect(result.read).toBe(1024 ** 3);
      expect(result.storedSha256).toBe(result.sourceSha256);
      expect(result.readSha256).toBe(result.sourceSha256);
      expect(((result.rssPeakMiB as number) - (result.rssBeforeMiB as number)) * 1024 * 1024).toBeLessThan(100_000_000);
      // the sampler really ran while the data flowed (every 50 ms; allow for a busy event loop)
      expect(result.samples as number).toBeGreaterThan(((result.putMs as number) + (result.getMs as number)) / 200);
      expect(result.deleted).toBe(true);
      expect(result.fileGone).toBe(true);
      expect(readdirSync(path.join(dataDir, 'storage', '.tmp'))).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 300_000);
});
