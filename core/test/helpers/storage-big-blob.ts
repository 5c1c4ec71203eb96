/**
 * Streams a big pseudo-random blob through the storage module and back, measuring this
 * process's RSS. Run as its own process (so the test runner's memory does not count):
 *   node --expose-gc --import tsx core/test/helpers/storage-big-blob.ts <dataDir> [bytes]
 * Prints one JSON line with the hashes, timings and RSS figures.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import pino from 'pino';
import { createStorage } from '../../src/storage/storage.js';

const [dataDir, bytesArg] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: storage-big-blob.ts <dataDir> [bytes]');
const total = Number(bytesArg ?? 1024 ** 3);
const CHUNK = 1 << 20;
const MiB = 1024 * 1024;

const storage = await createStorage({ dataDir, logger: pino({ level: 'warn' }) });
// Warm up every code path once, so lazy loading is not counted as growth.
await storage.put('warmup', Buffer.alloc(4 * CHUNK, 1));
for await (const _ of (await storage.get('warmup')).stream);
await storage.delete('warmup');
(globalThis as { gc?: () => void }).gc?.();

const rssBefore = process.memoryUsage().rss;
let rssPeak = rssBefore;
let samples = 0;
const sampler = setInterval(() => {
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  samples++;
}, 50);

const sourceHash = createHash('sha256');
let produced = 0;
const source = new Readable({
  read() {
    if (produced >= total) {
      this.push(null);
      return;
    }
    const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, total - produced)));
    produced += chunk.length;
    sourceHash.update(chunk);
    this.push(chunk);
  },
});

let started = Date.now();
const info = await storage.put('big/blob.bin', source, { contentType: 'application/octet-stream' });
const putMs = Date.now() - started;

started = Date.now();
const readHash = createHash('sha256');
let read = 0;
const { stream } = await storage.get('big/blob.bin');
for await (const chunk of stream) {
  readHash.update(chunk as Buffer);
  read += (chunk as Buffer).length;
}
const getMs = Date.now() - started;
clearInterval(sampler);
rssPeak = Math.max(rssPeak, process.memoryUsage().rss);

const file = await storage.materialise('big/blob.bin');
const deleted = await storage.delete('big/blob.bin');

console.log(
  JSON.stringify({
    bytes: total,
    size: info.size,
    read,
    sourceSha256: sourceHash.digest('hex'),
    storedSha256: info.sha256,
    readSha256: readHash.digest('hex'),
    putMs,
    getMs,
    rssBeforeMiB: Math.round(rssBefore / MiB),
    rssPeakMiB: Math.round(rssPeak / MiB),
    samples,
    rssGrowthMiB: Math.round(((rssPeak - rssBefore) / MiB) * 10) / 10,
    deleted,
    fileGone: !existsSync(file),
  }),
);
