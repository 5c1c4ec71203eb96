import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { describeBackendContract, failingAfter, readAll } from '../../test/helpers/storage-contract.js';
import { createStorage, type Storage } from './storage.js';

const logger = pino({ level: 'silent' });

/** Where the folder backend keeps an object: folders get a "+", the metadata sits beside the content. */
function objectFiles(dataDir: string, namespace: string, key: string): string[] {
  const segments = key.split('/');
  const name = segments.pop()!;
  const dir = path.join(dataDir, 'storage', ...namespace.split('/'), ...segments.map((s) => `${s}+`));
  return [path.join(dir, name), path.join(dir, `${name}@meta.json`)];
}

// The behaviour every backend owes (core/test/helpers/storage-contract.ts); the S3 backend runs it too.
describeBackendContract('folder backend', async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-storage-'));
  const storage = await createStorage({ dataDir, logger });
  return {
    storage,
    dataDir,
    leftovers: async () => readdirSync(path.join(dataDir, 'storage', '.tmp')),
    traces: async (namespace, key) => objectFiles(dataDir, namespace, key).filter((file) => existsSync(file)),
    close: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
});

describe('storage (folder backend): layout and recovery', () => {
  let dataDir: string;
  let storage: Storage;
  const tmpFiles = () => readdirSync(path.join(dataDir, 'storage', '.tmp'));

  beforeEach(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-storage-'));
    storage = await createStorage({ dataDir, logger });
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('materialises to the object\'s own file under the namespace, keeping its name', async () => {
    await storage.put('a', 'file a');
    await storage.put('a/b', 'file a/b');
    const file = await storage.materialise('a/b');
    expect(file.startsWith(path.join(dataDir, 'storage', 'core') + path.sep)).toBe(true);
    expect(path.basename(file)).toBe('b');
    expect(readFileSync(file, 'utf8')).toBe('file a/b');
    expect(await storage.materialise('a')).toBe(path.join(dataDir, 'storage', 'core', 'a'));
  });

  it('prunes the folders a delete leaves empty', async () => {
    await storage.put('x/y/z.bin', 'zzz');
    await storage.put('x/keep', 'k');
    expect(await storage.delete('x/y/z.bin')).toBe(true);
    expect(readdirSync(path.join(dataDir, 'storage', 'core', 'x+'))).toEqual(['keep', 'keep@meta.json']);
    await storage.put('x/y/z.bin', 'again');
    expect((await storage.stat('x/y/z.bin'))!.size).toBe(5);
  });

  it('leaves no file when the source fails half-way, and no temp file when it fails before the file is even open', async () => {
    await expect(storage.put('half.bin', failingAfter(16))).rejects.toThrow('source went away');
    expect(existsSync(path.join(dataDir, 'storage', 'core', 'half.bin'))).toBe(false);
    expect(tmpFiles()).toEqual([]);
    for (let i = 0; i < 50; i++) {
      await expect(storage.put(`quick-${i % 3}.bin`, failingAfter(i % 2))).rejects.toThrow('source went away');
      expect(tmpFiles()).toEqual([]);
    }
  });

  it('keeps plugin objects in plugins/<id>/ and materialises them there', async () => {
    const a = storage.forPlugin('plugin-a');
    await a.put('shared.txt', 'plugin a');
    expect(readFileSync(path.join(dataDir, 'storage', 'plugins', 'plugin-a', 'shared.txt'), 'utf8')).toBe('plugin a');
    expect(await a.materialise('shared.txt')).toBe(path.join(dataDir, 'storage', 'plugins', 'plugin-a', 'shared.txt'));
  });

  it('removes what a crash left at start: temp files, and a half-committed write', async () => {
    const root = path.join(dataDir, 'storage');
    const kept = await storage.put('kept/a.bin', 'complete object');
    await storage.put('overwritten.bin', 'old version');
    // A crash mid-stream: a partial temp file.
    writeFileSync(path.join(root, '.tmp', '0a-stale.data'), randomBytes(1000));
    // A crash inside a commit of "overwritten.bin": the old metadata is gone, the content was
    // renamed into place, the metadata temp file is still in .tmp.
    const meta = JSON.parse(readFileSync(path.join(root, 'core', 'overwritten.bin@meta.json'), 'utf8')) as Record<string, unknown>;
    rmSync(path.join(root, 'core', 'overwritten.bin@meta.json'));
    writeFileSync(path.join(root, 'core', 'overwritten.bin'), 'new version, never committed');
    writeFileSync(path.join(root, '.tmp', '1b.meta.json'), JSON.stringify({ ...meta, size: 28 }));
    // A crash before the commit began: the old version stays.
    writeFileSync(path.join(root, '.tmp', '2c.meta.json'), JSON.stringify({ ...meta, key: 'kept/a.bin', namespace: 'core' }));
    writeFileSync(path.join(root, '.tmp', '2c.data'), 'x');
    // A truncated metadata temp file: ignored, removed.
    writeFileSync(path.join(root, '.tmp', '3d.meta.json'), '{"v":1,"namesp');
    mkdirSync(path.join(root, '.tmp', 'odd-folder'));

    const reopened = await createStorage({ dataDir, logger });
    expect(tmpFiles()).toEqual([]);
    expect(await reopened.stat('overwritten.bin')).toBeUndefined();
    expect(existsSync(path.join(root, 'core', 'overwritten.bin'))).toBe(false);
    expect(await reopened.stat('kept/a.bin')).toEqual(kept);
    expect((await readAll((await reopened.get('kept/a.bin')).stream)).toString()).toBe('complete object');
  });
});
