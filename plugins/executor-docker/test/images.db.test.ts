// Images per node over the API (`/api/plugins/executor-docker/nodes/:node/images...`) on a real
// core and the real engine: list, import a `docker save` archive (gzip too) and a root file system,
// a corrupt file refused clearly, a pull without any registry (this machine reaches none) refused
// fast and clearly, delete (409 while a container uses the image). Then a SECOND Docker node over
// TCP added through `POST /api/v1/nodes` (a proxy on 127.0.0.1 to the engine's socket): a workload
// placed on it by a label runs there, and its placement records the image it ran.
// Runs on both passes (embedded PostgreSQL, then a real server).
import { gzipSync } from 'node:zlib';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { IMAGE, docker, dockerProxy, ensureEngine, logText, waitForState, type DockerProxy } from './helpers.js';

const CONFIG = { simulatedGpus: 't4', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } as const;
const BASE = '/api/plugins/executor-docker/nodes';
const TAG = `local/aiplat-import-test:p${process.pid}`;
const ROOTFS = `local/aiplat-rootfs-test:p${process.pid}`;

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Containers made from one of this test's images: none may stay behind. */
async function containersUsing(ids: string[]): Promise<string[]> {
  return (await docker.listContainers({ all: true })).filter((c) => ids.includes(c.ImageID)).map((c) => c.Names[0] ?? c.Id);
}

async function tagsOnEngine(): Promise<string[]> {
  return (await docker.listImages())
    .flatMap((i) => i.RepoTags ?? [])
    .filter((t) => t.includes(`:p${process.pid}`))
    .sort();
}

describe('images per node, and a TCP Docker node added through the API', () => {
  let core: TestCore;
  let busyboxId: string;
  let saved: Buffer;
  let rootfs: Buffer;

  beforeAll(async () => {
    await ensureEngine();
    busyboxId = (await docker.getImage(IMAGE).inspect()).Id;
    // A `docker save` of local/busybox:1 under a new tag, the tag then removed: the import brings it back.
    const [repo, tag] = TAG.split(':') as [string, string];
    await docker.getImage(IMAGE).tag({ repo, tag });
    saved = await bytesOf((await docker.getImage(TAG).get()) as unknown as Readable);
    await docker.getImage(TAG).remove();
    // A root file system: what `docker export` writes of a container.
    const c = await docker.createContainer({ Image: IMAGE, Cmd: ['true'] });
    try {
      rootfs = await bytesOf((await c.export()) as unknown as Readable);
    } finally {
      await c.remove({ force: true });
    }
    core = await startTestCore({ plugins: ['plugins/executor-docker'], config: CONFIG });
  }, 120_000);
  afterAll(async () => {
    await core?.stop();
    for (const tag of await tagsOnEngine()) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it("lists the images of the core's node and of its simulated node (the core's engine); 404 for others", async () => {
    for (const node of ['test-node', 'sim-001']) {
      const res = await core.client.get(`${BASE}/${node}/images`);
      expect(res.status, res.text).toBe(200);
      const busybox = (res.body.items as { id: string; tags: string[]; sizeBytes: number; createdAt: string }[]).find((i) => i.id === busyboxId);
      expect(busybox).toEqual({ id: busyboxId, tags: expect.arrayContaining([IMAGE]), sizeBytes: expect.any(Number), createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      expect(busybox!.sizeBytes).toBeGreaterThan(100_000);
    }
    const missing = await core.client.get(`${BASE}/no-such-node/images`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toBe('there is no node no-such-node (GET /api/v1/nodes lists them)');
  });

  it('imports a docker save archive (and its gzip) under its tag, and a root file system as a named image', async () => {
    expect(await tagsOnEngine()).toEqual([]);
    const res = await core.client.post(`${BASE}/test-node/images/import`, undefined, { raw: saved, headers: { 'content-type': 'application/x-tar' } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.images).toEqual([expect.objectContaining({ id: busyboxId, tags: expect.arrayContaining([IMAGE, TAG]) })]);
    expect(await tagsOnEngine()).toEqual([TAG]);
    // gzip, on the simulated node (the same engine): loaded again, nothing changes.
    const gz = await core.client.post(`${BASE}/sim-001/images/import`, undefined, { raw: gzipSync(saved), headers: { 'content-type': 'application/gzip' } });
    expect(gz.status, gz.text).toBe(201);
    expect(gz.body.images.map((i: { id: string }) => i.id)).toEqual([busyboxId]);

    const fs = await core.client.post(`${BASE}/test-node/images/import?reference=${encodeURIComponent(ROOTFS)}`, undefined, {
      raw: gzipSync(rootfs),
      headers: { 'content-type': 'application/gzip' },
    });
    expect(fs.status, fs.text).toBe(201);
    expect(fs.body.images).toEqual([expect.objectContaining({ id: expect.stringMatching(/^sha256:/), tags: [ROOTFS] })]);
    expect((await docker.getImage(ROOTFS).inspect()).Id).toBe(fs.body.images[0].id);

    const audit = await core.client.get('/api/v1/audit?action=executor-docker:images.import&limit=10');
    expect(audit.status, audit.text).toBe(200);
    expect(audit.body.items.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a corrupt file, a wrong content type and a bad reference clearly, and keeps nothing', async () => {
    const before = (await docker.listImages()).map((i) => i.Id).sort();
    const garbage = Buffer.alloc(4096, 'not a tar archive ');
    const load = await core.client.post(`${BASE}/test-node/images/import`, undefined, { raw: garbage, headers: { 'content-type': 'application/x-tar' } });
    expect(load.status).toBe(400);
    expect(load.body.error.message).toMatch(/^cannot import the docker save archive into the Docker engine of the core's machine \(\/var\/run\/docker.sock\): .*tar.*\(it must be what docker save writes/);
    const fs = await core.client.post(`${BASE}/test-node/images/import?reference=local/aiplat-bad:p${process.pid}`, undefined, {
      raw: gzipSync(garbage),
      headers: { 'content-type': 'application/gzip' },
    });
    expect(fs.status).toBe(400);
    expect(fs.body.error.message).toMatch(/cannot import the root file system tarball as local\/aiplat-bad:p\d+ .*tar of a root file system/);
    const type = await core.client.post(`${BASE}/test-node/images/import`, undefined, { raw: saved, headers: { 'content-type': 'text/plain' } });
    expect(type.status).toBe(415);
    const ref = await core.client.post(`${BASE}/test-node/images/import?reference=${encodeURIComponent('../../x')}`, undefined, { raw: saved, headers: { 'content-type': 'application/x-tar' } });
    expect(ref.status).toBe(400);
    expect((await docker.listImages()).map((i) => i.Id).sort()).toEqual(before);
    expect(await tagsOnEngine()).toEqual([TAG, ROOTFS].sort());
    const failed = await core.client.get('/api/v1/audit?action=executor-docker:images.import&outcome=failure&limit=10');
    expect(failed.body.items.length).toBeGreaterThanOrEqual(2);
  });

  it('refuses a file larger than the importMaxGiB setting, declared or streamed, and keeps nothing', async () => {
    const config = (await core.client.get('/api/v1/plugins/executor-docker/config')).body.values as Record<string, unknown>;
    const put = await core.client.put('/api/v1/plugins/executor-docker/config', { ...config, importMaxGiB: 1e-6 }); // 1073 bytes
    expect(put.status, put.text).toBe(200);
    try {
      const before = (await docker.listImages()).map((i) => i.Id).sort();
      const declared = await core.client.post(`${BASE}/test-node/images/import`, undefined, { raw: saved, headers: { 'content-type': 'application/x-tar' } });
      expect(declared.status).toBe(413);
      expect(declared.body.error.message).toMatch(/^the file has \d+ bytes, more than the 1073 this plugin accepts \(its importMaxGiB setting\)$/);
      // Sent in chunks without a length: counted as it streams, the engine's load cut off.
      const chunks = [saved.subarray(0, 1000), saved.subarray(1000, 4000)];
      const streamed = await fetch(new URL(`${BASE}/test-node/images/import`, core.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${core.client.token}`, 'content-type': 'application/x-tar' },
        body: new ReadableStream({
          pull(controller) {
            const next = chunks.shift();
            if (next) controller.enqueue(next);
            else controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      expect(streamed.status).toBe(413);
      expect(((await streamed.json()) as { error: { message: string } }).error.message).toMatch(/the file is larger than 1073 bytes/);
      expect((await docker.listImages()).map((i) => i.Id).sort()).toEqual(before);
    } finally {
      expect((await core.client.put('/api/v1/plugins/executor-docker/config', config)).status).toBe(200);
    }
  });

  it('refuses a pull where no registry is reachable, fast and naming the registry problem', async () => {
    const before = (await docker.listImages()).map((i) => i.Id).sort();
    const t0 = Date.now();
    const res = await core.client.post(`${BASE}/test-node/images/pull`, { reference: 'docker.io/library/definitely-not-here:1' });
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(res.status, res.text).toBe(503);
    expect(res.body.error.message).toMatch(
      /^cannot pull docker\.io\/library\/definitely-not-here:1 onto the Docker engine of the core's machine \(\/var\/run\/docker\.sock\): its registry cannot be reached from there \(.*registry-1\.docker\.io.*\)\. If this machine reaches no registry, save the image/,
    );
    expect((await docker.listImages()).map((i) => i.Id).sort()).toEqual(before);
    const bad = await core.client.post(`${BASE}/test-node/images/pull`, { reference: 'http://evil/x' });
    expect(bad.status).toBe(400);
    const audit = await core.client.get('/api/v1/audit?action=executor-docker:images.pull&outcome=failure&limit=5');
    expect(audit.body.items).toEqual([
      expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ node: 'test-node', reference: 'docker.io/library/definitely-not-here:1', error: res.body.error.message }) }),
    ]);
  });

  it('lets viewers list but not change images', async () => {
    const viewer = await core.createUser('image-viewer', ['viewer']);
    expect((await viewer.client.get(`${BASE}/test-node/images`)).status).toBe(200);
    expect((await viewer.client.post(`${BASE}/test-node/images/pull`, { reference: IMAGE })).status).toBe(403);
    expect((await viewer.client.delete(`${BASE}/test-node/images/${encodeURIComponent(TAG)}`)).status).toBe(403);
  });

  it('deletes an image (409 while a container uses it), by tag and by id', async () => {
    const rootfsId = (await docker.getImage(ROOTFS).inspect()).Id;
    const user = await docker.createContainer({ Image: ROOTFS, Cmd: ['true'], name: `aiplat-image-user-p${process.pid}` });
    try {
      const busy = await core.client.delete(`${BASE}/test-node/images/${rootfsId}`);
      expect(busy.status).toBe(409);
      expect(busy.body.error.message).toBe(`image ${rootfsId} is used by container aiplat-image-user-p${process.pid}: remove it first`);
    } finally {
      await user.remove({ force: true });
    }
    expect((await core.client.delete(`${BASE}/test-node/images/${rootfsId}`)).status).toBe(204);
    // By tag: only that tag goes (local/busybox:1 keeps the image).
    expect((await core.client.delete(`${BASE}/test-node/images/${encodeURIComponent(TAG)}`)).status).toBe(204);
    expect(await tagsOnEngine()).toEqual([]);
    expect((await docker.getImage(IMAGE).inspect()).Id).toBe(busyboxId);
    const gone = await core.client.delete(`${BASE}/test-node/images/${rootfsId}`);
    expect(gone.status).toBe(404);
    expect(await containersUsing([rootfsId, busyboxId]).then((names) => names.filter((n) => n.includes(`p${process.pid}`)))).toEqual([]);
  });

  describe('a second Docker node over TCP, added through the API', () => {
    let proxy: DockerProxy;
    const NAME = `tcp-node-${process.pid}`;

    beforeAll(async () => {
      proxy = await dockerProxy();
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it('refuses a host that does not answer (422 node_unreachable), storing nothing', async () => {
      const res = await core.client.post('/api/v1/nodes', { kind: 'docker', name: `${NAME}-dead`, settings: { url: 'tcp://127.0.0.1:1' } });
      expect(res.status, res.text).toBe(422);
      expect(res.body.error.code).toBe('node_unreachable');
      expect(res.body.error.message).toContain('Docker host tcp://127.0.0.1:1 does not answer: connect ECONNREFUSED 127.0.0.1:1');
      const bad = await core.client.post('/api/v1/nodes', { kind: 'docker', name: `${NAME}-bad`, settings: { url: 'ftp://127.0.0.1:1' } });
      expect(bad.status).toBe(400);
      const nodes = (await core.client.get('/api/v1/nodes')).body.items as { id: string }[];
      expect(nodes.map((n) => n.id)).not.toContain(`${NAME}-dead`);
    });

    it('runs a workload placed on it by a label, through the TCP client, and records its image', async () => {
      const added = await core.client.post('/api/v1/nodes', { kind: 'docker', name: NAME, settings: { url: proxy.url }, labels: { pool: NAME } });
      expect(added.status, added.text).toBe(201);
      expect(added.body).toMatchObject({ id: NAME, executors: ['docker'], labels: expect.objectContaining({ pool: NAME, 'docker.host': proxy.url, 'docker.nvidia-runtime': 'false' }) });

      // Its images, through the TCP client.
      const before = proxy.requestBytes;
      const images = await core.client.get(`${BASE}/${NAME}/images`);
      expect(images.status, images.text).toBe(200);
      expect(images.body.items.map((i: { id: string }) => i.id)).toContain(busyboxId);
      expect(proxy.requestBytes).toBeGreaterThan(before);

      const bytesBefore = proxy.requestBytes;
      const submitted = await core.client.post('/api/v1/workloads', { name: 'on-tcp', executor: 'docker', image: IMAGE, command: ['echo', 'hi'], nodeSelector: { pool: NAME } });
      expect(submitted.status, submitted.text).toBe(201);
      const done = await waitForState(core.client, submitted.body.id, ['succeeded', 'failed', 'lost']);
      expect(done.state, done.reason).toBe('succeeded');
      expect(done.placements[0]).toMatchObject({ nodeId: NAME, image: busyboxId });
      expect(await logText(core.client, submitted.body.id)).toBe('hi\n');
      // create, start, logs, wait, inspect, remove: all through the TCP client.
      expect(proxy.requestBytes - bytesBefore).toBeGreaterThan(1000);

      const removed = await core.client.delete(`/api/v1/nodes/${NAME}`);
      expect(removed.status, removed.text).toBe(204);
      const afterRemoval = await core.client.get(`${BASE}/${NAME}/images`);
      expect(afterRemoval.status).toBe(404);
    });
  });
});
