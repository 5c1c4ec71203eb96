// The docker executor driven directly, as the core's agent drives it, where the core cannot provoke
// a case honestly: a host port taken between the core's choice and the container's start, GPUs on a
// host without the NVIDIA container runtime (this machine has none), a core that stops while a
// container ends, a start delivered again for an epoch that runs, the grace period of a stop.
// Real engine, real containers (scripts/provision-docker.sh); no GPU here.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaLaunch } from '@aiplat/plugin-sdk';
import { DockerExecutor, type DockerReplicaHandle } from '../src/executor.js';
import { IMAGE, Recorder, SOCKET, containersOf, docker, ensureEngine, waitFor } from './helpers.js';

let dataDir: string;
let seq = 0;

function launch(spec: Partial<ReplicaLaunch['spec']>, extra: Partial<ReplicaLaunch> = {}): ReplicaLaunch {
  const workloadId = `wexec${process.pid}x${Date.now().toString(36)}x${seq++}`;
  return {
    workloadId,
    replica: 0,
    epoch: 1,
    nodeId: 'test-node',
    spec: { name: 'x', kind: 'job', image: IMAGE, command: ['true'], ...spec },
    env: { CUDA_VISIBLE_DEVICES: '' },
    ports: {},
    devices: [],
    simulated: true,
    nodeLabels: {},
    ...extra,
  };
}

function opened(): DockerExecutor {
  const executor = new DockerExecutor();
  executor.open({ socketPath: SOCKET, dataDir });
  return executor;
}

describe('the docker executor, driven directly', () => {
  const executors: DockerExecutor[] = [];
  const make = () => {
    const e = opened();
    executors.push(e);
    return e;
  };

  beforeAll(async () => {
    await ensureEngine();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-docker-exec-'));
    mkdirSync(path.join(dataDir, 'storage'), { recursive: true });
  });
  afterAll(async () => {
    for (const e of executors) e.close();
    for (const c of await docker.listContainers({ all: true, filters: { label: ['aiplat.managed=true'] } })) {
      if (c.Labels['aiplat.workload']?.startsWith(`wexec${process.pid}x`)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('says clearly when it is not running, or the engine does not answer', async () => {
    const idle = new DockerExecutor();
    await expect(idle.start(launch({}), new Recorder())).rejects.toThrow(/the docker executor is not running/);
    expect(await idle.validate({ name: 'x', kind: 'job', image: IMAGE, command: ['true'] })).toEqual([expect.stringMatching(/not running/)]);
    const nowhere = new DockerExecutor();
    nowhere.open({ socketPath: '/tmp/no-such-docker.sock', dataDir });
    expect(await nowhere.validate({ name: 'x', kind: 'job', image: IMAGE, command: ['true'] })).toEqual([
      expect.stringMatching(/^the Docker engine does not answer on \/tmp\/no-such-docker.sock \(connect ENOENT/),
    ]);
    await expect(nowhere.start(launch({}), new Recorder())).rejects.toThrow(/does not answer on \/tmp\/no-such-docker.sock/);
    nowhere.close();
  });

  it('reports a host port already taken as lost, and leaves no container', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const l = launch({ kind: 'service', command: ['httpd', '-f', '-p', '80'], ports: [{ name: 'http', containerPort: 80 }] }, { ports: { http: port } });
      const r = new Recorder();
      const { handle } = await make().start(l, r);
      expect(await r.ended()).toEqual({ lost: expect.stringMatching(new RegExp(`did not start: a host port given to it is already taken .*127\\.0\\.0\\.1:${port}`)) });
      expect(r.calls).toEqual(['lost']);
      expect(await containersOf(l.workloadId)).toEqual([]);
      await make().cleanup(handle); // gone already: nothing to do
    } finally {
      server.close();
    }
  });

  it('reports GPUs on a host without the NVIDIA container runtime as lost, and leaves no container', async () => {
    const l = launch({ resources: { gpus: 1 } }, { simulated: false, devices: [{ index: 0, uuid: 'GPU-00000000-0000-0000-0000-000000000000' }] });
    const r = new Recorder();
    await make().start(l, r);
    expect(await r.ended()).toEqual({ lost: expect.stringMatching(/this Docker host has no NVIDIA container runtime/) });
    expect(await containersOf(l.workloadId)).toEqual([]);
  });

  it('re-attaches to a container that ended while no core followed it, and never starts an epoch twice', async () => {
    const sync = path.join(dataDir, 'storage', 'sync');
    mkdirSync(sync, { recursive: true });
    const script = 'for i in 0 1 2 3 4; do echo line $i; done; echo oops >&2; while [ ! -e /sync/go ]; do sleep 0.05; done; for i in 5 6 7 8 9; do echo line $i; done; printf tail; exit 2';
    const l = launch({ command: ['sh', '-c', script], mounts: [{ source: sync, target: '/sync' }] });
    const first = make();
    const r1 = new Recorder();
    const { handle } = await first.start(l, r1);
    await waitFor(() => r1.text.includes('oops\n'), 30_000, 'the first lines');
    // The same epoch again in this process: refused.
    await expect(first.start(l, new Recorder())).rejects.toThrow(/already running/);
    // The core stops (the container goes on), the container ends meanwhile.
    first.close();
    const stored = r1.offset;
    expect(stored).toBe(Buffer.byteLength(r1.text));
    writeFileSync(path.join(sync, 'go'), '');
    await waitFor(async () => (await docker.getContainer(handle.containerId).inspect()).State.Status === 'exited', 30_000, 'the container to exit');

    // A new core re-attaches from where its stored output ends: the rest, the exit code, once.
    const r2 = new Recorder();
    await make().attach(handle, r2, { outputOffset: stored });
    expect(await r2.ended()).toEqual({ exitCode: 2 });
    expect(r2.text).toBe('line 5\nline 6\nline 7\nline 8\nline 9\ntail');
    expect(r2.offset).toBe(stored + Buffer.byteLength(r2.text));
    expect(r2.calls.filter((c) => c !== 'output')).toEqual(['started', 'exited']);

    // The start delivered again after a restart (the same epoch, its output offset): the container's
    // name fences it, so the existing one is followed, not a second one started.
    const r3 = new Recorder();
    const again = await make().start({ ...l, outputOffset: stored }, r3);
    expect(again.handle).toEqual(handle);
    expect(await r3.ended()).toEqual({ exitCode: 2 });
    expect(r3.text).toBe(r2.text);
    expect((await containersOf(l.workloadId)).map((c) => c.Id)).toEqual([handle.containerId]);

    const executor = make();
    await executor.stop(handle, { graceSeconds: 1 }); // already stopped: nothing to do
    await executor.cleanup(handle);
    expect(await containersOf(l.workloadId)).toEqual([]);
    await executor.cleanup(handle);
    const r4 = new Recorder();
    await executor.attach(handle, r4, { outputOffset: 0 });
    expect(r4.end).toEqual({ lost: expect.stringMatching(/container .* is gone/) });
  });

  it('stops with SIGTERM, the grace period, then SIGKILL; stop() returns once that is under way', async () => {
    const l = launch({ command: ['sh', '-c', "trap 'echo ignoring TERM' TERM; echo up; while true; do sleep 0.1; done"] });
    const executor = make();
    const r = new Recorder();
    const { handle } = await executor.start(l, r);
    await waitFor(() => r.text === 'up\n', 30_000, 'the container to be up');
    const t0 = Date.now();
    await executor.stop(handle, { graceSeconds: 1 });
    expect(Date.now() - t0).toBeLessThan(900);
    expect(await r.ended()).toEqual({ exitCode: 137 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(r.text).toBe('up\nignoring TERM\n');
    await executor.cleanup(handle);
  });

  it('reports the image it runs and the host PIDs of its container; old handles (no node) are the local engine', async () => {
    const l = launch({ command: ['sh', '-c', 'echo up; while true; do sleep 0.1; done'] });
    const executor = make();
    const r = new Recorder();
    const { handle } = await executor.start(l, r);
    expect(handle).toEqual({ containerId: expect.any(String), name: `aiplat-${l.workloadId}-r0-e1`, nodeId: 'test-node' });
    await waitFor(() => r.text === 'up\n', 30_000, 'the container to be up');
    expect(r.image).toBe((await docker.getImage(IMAGE).inspect()).Id);
    const pid = (await docker.getContainer(handle.containerId).inspect()).State.Pid;
    expect(await executor.processIds(handle)).toContain(pid);
    const old = { containerId: handle.containerId, name: handle.name };
    expect(await executor.processIds(old)).toContain(pid);
    await executor.stop(old, { graceSeconds: 0 });
    // SIGTERM through docker-init ends sh (143) unless the SIGKILL right after wins (137).
    expect(await r.ended()).toEqual({ exitCode: expect.toBeOneOf([137, 143]) });
    expect(await executor.processIds(old)).toEqual([]);
    await executor.cleanup(old);
    expect(await executor.processIds(old)).toEqual([]);
    await expect(executor.processIds({ ...old, remote: true })).rejects.toThrow(/not a handle of the docker executor/);
  });

  it('refuses handles that are not its own', async () => {
    const executor = make();
    await expect(executor.stop({ containerId: 'abc', name: 'x' }, { graceSeconds: 1 })).rejects.toThrow(/not a handle of the docker executor/);
    const other = await docker.createContainer({ Image: IMAGE, Cmd: ['true'], name: `aiplat-wexec${process.pid}xforeign-r0-e1` });
    try {
      const handle: DockerReplicaHandle = { containerId: other.id, name: `aiplat-wexec${process.pid}xforeign-r0-e1` };
      await expect(executor.cleanup(handle)).rejects.toThrow(/not .* made by aiplat: not touching it/);
      await docker.getContainer(other.id).inspect();
    } finally {
      await other.remove({ force: true });
    }
  });
});
