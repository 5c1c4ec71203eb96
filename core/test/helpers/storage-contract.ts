/**
 * The behaviour every storage backend owes the storage service (core/src/storage/backend.ts),
 * checked through the service as plugins use it. The folder backend's tests
 * (core/src/storage/storage.test.ts) and the S3 backend's (core/test/storage-s3.services.test.ts)
 * both run these, then their own checks of layout and recovery.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Storage } from '../../src/storage/storage.js';

export const MiB = 1024 * 1024;
export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Yields `chunks` chunks of `size` bytes, then fails (like a client that goes away). */
export function failingAfter(chunks: number, size = 64 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent++ < chunks) this.push(randomBytes(size));
      else this.destroy(new Error('source went away'));
    },
  });
}

/** `data` in chunks of `size` bytes (the last one shorter), as a slow network would hand it over. */
export function inChunks(data: Buffer, size: number): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= data.length) this.push(null);
      else {
        this.push(data.subarray(offset, offset + size));
        offset += size;
      }
    },
  });
}

export interface BackendUnderTest {
  storage: Storage;
  /** A folder of this test's own: the folder backend's data folder, the S3 backend's cache's parent. */
  dataDir: string;
  /** What writes, finished or failed, must not leave behind: temp files, pending multipart uploads, content without metadata. */
  leftovers(): Promise<string[]>;
  /** Whatever the backend holds of one object (its content, its metadata), visible or not. */
  traces(namespace: string, key: string): Promise<string[]>;
  /** The longest key of the core's namespace, in bytes, when the backend allows less than the service's 1024 (S3: its names hold 1024 bytes, prefix included). */
  maxKeyBytes?: number;
  close(): Promise<void>;
}

/** The contract checks, one fresh, empty storage per test from `open`. */
export function describeBackendContract(label: string, open: () => Promise<BackendUnderTest>): void {
  describe(`storage contract (${label})`, () => {
    let target: BackendUnderTest;
    let storage: Storage;
    const leftovers = () => target.leftovers();

    beforeEach(async () => {
      target = await open();
      storage = target.storage;
    });
    afterEach(async () => {
      await target.close();
    });

    it('puts and gets a stream, a Buffer and a string, with size, SHA-256 and content type', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const put = await storage.put('models/m1/weights.bin', Readable.from([data.subarray(0, 1000), data.subarray(1000)]), {
        contentType: 'application/octet-stream',
      });
      expect(put).toMatchObject({ key: 'models/m1/weights.bin', size: data.length, sha256: sha256(data), contentType: 'application/octet-stream' });
      expect(new Date(put.createdAt).toISOString()).toBe(put.createdAt);

      const got = await storage.get('models/m1/weights.bin');
      expect(got.info).toEqual(put);
      const content = await readAll(got.stream);
      expect(content.equals(data)).toBe(true);
      expect(await storage.stat('models/m1/weights.bin')).toEqual(put);

      expect(await storage.put('notes.txt', 'héllo')).toMatchObject({ size: 6, sha256: sha256('héllo') });
      expect(await storage.put('empty', Buffer.alloc(0))).toMatchObject({ size: 0, sha256: sha256('') });
      expect((await readAll((await storage.get('notes.txt')).stream)).toString()).toBe('héllo');
      expect((await readAll((await storage.get('empty')).stream)).length).toBe(0);
      expect((await storage.stat('notes.txt'))!.contentType).toBeUndefined();

      // overwrite: the new content and its metadata together
      await storage.put('notes.txt', 'second version');
      expect((await readAll((await storage.get('notes.txt')).stream)).toString()).toBe('second version');
      expect((await storage.stat('notes.txt'))!.sha256).toBe(sha256('second version'));
      expect(await leftovers()).toEqual([]);
    });

    it('streams an object of several parts (20 MiB) in and out byte-identical, and overwrites it with a small one', async () => {
      const data = randomBytes(20 * MiB + 12345);
      const put = await storage.put('big/model.safetensors', inChunks(data, MiB + 17));
      expect(put).toMatchObject({ size: data.length, sha256: sha256(data) });
      const got = await storage.get('big/model.safetensors');
      expect(got.info).toEqual(put);
      const content = await readAll(got.stream);
      expect(content.length).toBe(data.length);
      expect(content.equals(data)).toBe(true);
      expect(readFileSync(await storage.materialise('big/model.safetensors')).equals(data)).toBe(true);
      // exactly one part's worth and an empty body are single writes
      const eight = randomBytes(8 * MiB);
      expect(await storage.put('big/eight.bin', eight)).toMatchObject({ size: eight.length, sha256: sha256(eight) });
      expect((await readAll((await storage.get('big/eight.bin')).stream)).equals(eight)).toBe(true);
      await storage.put('big/model.safetensors', 'small now');
      expect((await readAll((await storage.get('big/model.safetensors')).stream)).toString()).toBe('small now');
      expect(await storage.stat('big/model.safetensors')).toMatchObject({ size: 9, sha256: sha256('small now') });
      expect(await leftovers()).toEqual([]);
    });

    it('keeps a and a/b apart, and materialises them to local files holding the content', async () => {
      await storage.put('a', 'file a');
      await storage.put('a/b', 'file a/b');
      expect((await readAll((await storage.get('a')).stream)).toString()).toBe('file a');
      expect((await readAll((await storage.get('a/b')).stream)).toString()).toBe('file a/b');
      const file = await storage.materialise('a/b');
      expect(path.isAbsolute(file)).toBe(true);
      expect(readFileSync(file, 'utf8')).toBe('file a/b');
      expect(readFileSync(await storage.materialise('a'), 'utf8')).toBe('file a');
      await expect(storage.materialise('missing')).rejects.toMatchObject({ code: 'not_found' });
    });

    it('lists by prefix in key order, page by page with a cursor', async () => {
      const keys = ['a', 'a/b', 'a-b', 'a.txt', 'a/c/d', 'a/c/e', 'a0', 'b/x', 'models/m1/w.bin', 'models/m10/w.bin', 'models/m2/w.bin', 'Z', '_u', '.hidden'];
      for (const key of keys) await storage.put(key, key);
      const sorted = [...keys].sort();

      const all = await storage.list();
      expect(all.items.map((i) => i.key)).toEqual(sorted);
      expect(all.nextCursor).toBeNull();
      expect(all.items.find((i) => i.key === 'a/c/d')).toMatchObject({ size: 5, sha256: sha256('a/c/d') });

      expect((await storage.list('a/')).items.map((i) => i.key)).toEqual(['a/b', 'a/c/d', 'a/c/e']);
      expect((await storage.list('a')).items.map((i) => i.key)).toEqual(sorted.filter((k) => k.startsWith('a')));
      expect((await storage.list('models/m1')).items.map((i) => i.key)).toEqual(['models/m1/w.bin', 'models/m10/w.bin']);
      expect((await storage.list('models/m1/')).items.map((i) => i.key)).toEqual(['models/m1/w.bin']);
      expect((await storage.list('nothing/')).items).toEqual([]);
      expect((await storage.list('.')).items.map((i) => i.key)).toEqual(['.hidden']);

      for (const limit of [1, 2, 3, 5]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await storage.list('', { limit, cursor });
          expect(page.items.length).toBeLessThanOrEqual(limit);
          seen.push(...page.items.map((i) => i.key));
          cursor = page.nextCursor ?? undefined;
          pages++;
        } while (cursor);
        expect(seen).toEqual(sorted);
        expect(pages).toBe(Math.ceil(sorted.length / limit));
      }
      const firstA = await storage.list('a/', { limit: 2 });
      expect(firstA.items.map((i) => i.key)).toEqual(['a/b', 'a/c/d']);
      expect((await storage.list('a/', { limit: 2, cursor: firstA.nextCursor! })).items.map((i) => i.key)).toEqual(['a/c/e']);

      await expect(storage.list('', { cursor: 'not a cursor!' })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.list('', { limit: 0 })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.list('', { limit: 1001 })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.list('../')).rejects.toMatchObject({ code: 'validation_failed' });
    });

    it('lists in key order when keys are prefixes of others followed by "-", ".", "/" or a digit', async () => {
      // Backends that list names with a suffix (S3: `<key>@meta.json`) see these out of key order.
      const keys = ['x', 'x-1', 'x.1', 'x/1', 'x0', 'x1', 'x1-a', 'x1/b', 'x10', 'xA', 'x_'];
      for (const key of [...keys].reverse()) await storage.put(key, key);
      const sorted = [...keys].sort();
      expect((await storage.list()).items.map((i) => i.key)).toEqual(sorted);
      for (const limit of [1, 2, 4]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await storage.list('x', { limit, cursor });
          seen.push(...page.items.map((i) => i.key));
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
        expect(seen, `limit ${limit}`).toEqual(sorted);
      }
      expect((await storage.list('x1')).items.map((i) => i.key)).toEqual(['x1', 'x1-a', 'x1/b', 'x10']);
    });

    it('deletes: true once, then false; the object is gone everywhere', async () => {
      await storage.put('x/y/z.bin', 'zzz');
      await storage.put('x/keep', 'k');
      expect(await storage.delete('x/y/z.bin')).toBe(true);
      expect(await storage.delete('x/y/z.bin')).toBe(false);
      expect(await storage.stat('x/y/z.bin')).toBeUndefined();
      await expect(storage.get('x/y/z.bin')).rejects.toMatchObject({ code: 'not_found', message: 'No object "x/y/z.bin" in storage' });
      await expect(storage.materialise('x/y/z.bin')).rejects.toMatchObject({ code: 'not_found' });
      expect((await storage.list('x/')).items.map((i) => i.key)).toEqual(['x/keep']);
      expect(await target.traces('core', 'x/y/z.bin')).toEqual([]);
      expect(await storage.delete('never/there')).toBe(false);
      // and it can be written again
      await storage.put('x/y/z.bin', 'again');
      expect((await storage.stat('x/y/z.bin'))!.size).toBe(5);
    });

    it('refuses path traversal and other bad keys, naming the key and the rule', async () => {
      const outside = path.join(target.dataDir, 'outside.txt');
      const bad: Array<[unknown, RegExp]> = [
        ['../outside.txt', /no "\." or "\.\." segment/],
        ['a/../../b', /no "\." or "\.\." segment/],
        ['../../../../etc/passwd', /no "\." or "\.\." segment/],
        ['./a', /no "\." or "\.\." segment/],
        ['a/.', /no "\." or "\.\." segment/],
        ['/etc/passwd', /no leading "\/"/],
        [outside, /no leading "\/"/],
        ['..\\..\\x', /no backslash/],
        ['C:\\Windows', /no backslash/],
        ['a\0b', /no NUL/],
        ['', /not empty/],
        ['a//b', /no empty segment/],
        ['a/', /no empty segment/],
        ['a b', /only letters, digits/],
        ['é', /only letters, digits/],
        ['%2e%2e/x', /only letters, digits/],
        ['a:b', /only letters, digits/],
        ['a@meta.json', /only letters, digits/],
        ['x'.repeat(1025), /at most 1024 bytes/],
        ['y'.repeat(201), /each segment at most 200 bytes/],
        [42, /must be a string/],
      ];
      for (const [key, rule] of bad) {
        for (const call of [
          () => storage.put(key as string, 'x'),
          () => storage.get(key as string),
          () => storage.stat(key as string),
          () => storage.delete(key as string),
          () => storage.materialise(key as string),
        ]) {
          const error = await call().then(
            () => undefined,
            (e: unknown) => e as { code: string; message: string },
          );
          expect(error, `key ${JSON.stringify(key)}`).toMatchObject({ code: 'validation_failed' });
          expect(error!.message).toMatch(rule);
          if (typeof key === 'string') expect(error!.message).toContain(JSON.stringify(key));
        }
      }
      expect(existsSync(outside)).toBe(false);
      expect((await storage.list()).items).toEqual([]);
      // the longest allowed key works
      const maxBytes = target.maxKeyBytes ?? 1024;
      const longest = Array.from({ length: 5 }, () => 'k'.repeat(200)).join('/').slice(0, maxBytes - 20) + '/' + 'k'.repeat(19);
      expect(Buffer.byteLength(longest)).toBe(maxBytes);
      await storage.put(longest, 'ok');
      expect(await storage.stat(longest)).toMatchObject({ size: 2 });
      expect((await storage.list()).items.map((i) => i.key)).toEqual([longest]);
      if (maxBytes < 1024) {
        // one byte more: refused, saying why, before anything is stored
        await expect(storage.put(`${longest}k`, 'x')).rejects.toMatchObject({ code: 'validation_failed', message: expect.stringContaining(`at most ${maxBytes} bytes`) });
        expect((await storage.list()).items.map((i) => i.key)).toEqual([longest]);
      }
    });

    it('keeps nothing when the source fails half-way (in the first part or after several), and keeps the old version', async () => {
      await expect(storage.put('half.bin', failingAfter(16))).rejects.toThrow('source went away');
      expect(await storage.stat('half.bin')).toBeUndefined();
      await expect(storage.get('half.bin')).rejects.toMatchObject({ code: 'not_found' });
      expect((await storage.list()).items).toEqual([]);
      expect(await leftovers()).toEqual([]);
      expect(await target.traces('core', 'half.bin')).toEqual([]);

      // 20 MiB, then the client goes away: parts were already sent
      await expect(storage.put('parts/half.bin', failingAfter(160, 128 * 1024))).rejects.toThrow('source went away');
      expect(await storage.stat('parts/half.bin')).toBeUndefined();
      expect(await leftovers()).toEqual([]);
      expect(await target.traces('core', 'parts/half.bin')).toEqual([]);

      const old = await storage.put('kept.bin', 'old content');
      await expect(storage.put('kept.bin', failingAfter(4))).rejects.toThrow('source went away');
      expect(await storage.stat('kept.bin')).toEqual(old);
      expect((await readAll((await storage.get('kept.bin')).stream)).toString()).toBe('old content');
      await expect(storage.put('kept.bin', failingAfter(160, 128 * 1024))).rejects.toThrow('source went away');
      expect(await storage.stat('kept.bin')).toEqual(old);
      expect((await readAll((await storage.get('kept.bin')).stream)).toString()).toBe('old content');
      expect(await leftovers()).toEqual([]);
    });

    it('keeps nothing when the source fails at once or after one chunk', async () => {
      for (let i = 0; i < 50; i++) {
        await expect(storage.put(`quick-${i % 3}.bin`, failingAfter(i % 2))).rejects.toThrow('source went away');
        expect(await leftovers()).toEqual([]);
      }
      expect((await storage.list()).items).toEqual([]);
    });

    it('refuses a write past maxBytes and one whose SHA-256 is not the expected one, keeping nothing', async () => {
      const data = randomBytes(1024 * 1024);
      await expect(storage.put('big.bin', Readable.from([data, data]), { maxBytes: 1024 * 1024 + 10 })).rejects.toMatchObject({
        code: 'payload_too_large',
        message: expect.stringContaining('maxBytes'),
      });
      expect(await storage.stat('big.bin')).toBeUndefined();
      expect(await leftovers()).toEqual([]);

      await expect(storage.put('sum.bin', data, { expectedSha256: sha256('something else') })).rejects.toMatchObject({
        code: 'validation_failed',
        details: { key: 'sum.bin', sha256: sha256(data) },
      });
      expect(await storage.stat('sum.bin')).toBeUndefined();
      expect((await storage.list()).items).toEqual([]);
      expect(await leftovers()).toEqual([]);

      // the same past one part: the parts sent are dropped too
      const bigger = randomBytes(20 * MiB);
      await expect(storage.put('parts/big.bin', inChunks(bigger, MiB), { maxBytes: 12 * MiB })).rejects.toMatchObject({ code: 'payload_too_large' });
      expect(await storage.stat('parts/big.bin')).toBeUndefined();
      expect(await target.traces('core', 'parts/big.bin')).toEqual([]);
      await expect(storage.put('parts/sum.bin', inChunks(bigger, MiB), { expectedSha256: sha256('something else') })).rejects.toMatchObject({
        code: 'validation_failed',
        details: { key: 'parts/sum.bin', sha256: sha256(bigger) },
      });
      expect(await storage.stat('parts/sum.bin')).toBeUndefined();
      expect(await target.traces('core', 'parts/sum.bin')).toEqual([]);
      expect((await storage.list()).items).toEqual([]);
      expect(await leftovers()).toEqual([]);

      // exactly at the limit and the right checksum (any case) are fine
      expect(await storage.put('sum.bin', data, { expectedSha256: sha256(data).toUpperCase(), maxBytes: data.length })).toMatchObject({
        size: data.length,
        sha256: sha256(data),
      });
      await expect(storage.put('x', 'x', { expectedSha256: 'abc' })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.put('x', 'x', { maxBytes: -1 })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.put('x', 'x', { contentType: 'a\nb' })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(storage.put('x', 42 as unknown as string)).rejects.toMatchObject({ code: 'validation_failed' });
    });

    it('keeps content and metadata consistent under concurrent puts, gets and deletes of one key', async () => {
      const versions = Array.from({ length: 12 }, (_, i) => randomBytes(64 * 1024 + i));
      const readers: Promise<void>[] = [];
      const check = async () => {
        try {
          const { info, stream } = await storage.get('hot.bin');
          expect(sha256(await readAll(stream))).toBe(info.sha256);
        } catch (error) {
          expect(error).toMatchObject({ code: 'not_found' });
        }
      };
      const writers = versions.map(async (v, i) => {
        await storage.put('hot.bin', Readable.from([v.subarray(0, 1000), v.subarray(1000)]));
        readers.push(check());
        if (i % 5 === 4) await storage.delete('hot.bin');
      });
      await Promise.all(writers);
      await Promise.all(readers);
      await storage.put('hot.bin', versions[0]!);
      const { info, stream } = await storage.get('hot.bin');
      expect(sha256(await readAll(stream))).toBe(info.sha256);
      expect(info.sha256).toBe(sha256(versions[0]!));
      expect(await leftovers()).toEqual([]);
    });

    it('gives each plugin its own namespace under plugins/<id>/', async () => {
      const a = storage.forPlugin('plugin-a');
      const b = storage.forPlugin('plugin-b');
      await storage.put('shared.txt', 'core');
      await a.put('shared.txt', 'plugin a');
      await expect(b.get('shared.txt')).rejects.toMatchObject({ code: 'not_found' });
      expect((await readAll((await a.get('shared.txt')).stream)).toString()).toBe('plugin a');
      expect((await readAll((await storage.get('shared.txt')).stream)).toString()).toBe('core');
      expect((await b.list()).items).toEqual([]);
      expect((await a.list()).items.map((i) => i.key)).toEqual(['shared.txt']);
      expect((await storage.list()).items.map((i) => i.key)).toEqual(['shared.txt']);
      expect(readFileSync(await a.materialise('shared.txt'), 'utf8')).toBe('plugin a');
      expect(await target.traces('plugins/plugin-a', 'shared.txt')).toHaveLength(2);
      expect(await target.traces('plugins/plugin-b', 'shared.txt')).toEqual([]);
      expect(await b.delete('shared.txt')).toBe(false);
      expect(await a.delete('shared.txt')).toBe(true);
      expect((await readAll((await storage.get('shared.txt')).stream)).toString()).toBe('core');
      expect(() => storage.forPlugin('../core')).toThrow(/not a plugin id/);
      expect(() => storage.forPlugin('a/b')).toThrow(/not a plugin id/);
    });
  });
}
