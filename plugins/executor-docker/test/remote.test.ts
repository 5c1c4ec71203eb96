// Remote Docker hosts as nodes, driven directly (connector and executor, as the core drives them):
// a SECOND Docker node over TCP. There is one engine here, so the test reaches it through a TCP
// proxy on 127.0.0.1 that pipes every connection to its Unix socket; `tcp://127.0.0.1:<port>` is
// then a remote host in every respect the plugin can tell. The executor's own (local) engine is a
// socket that does not exist, so anything that runs ran through the TCP client.
// Real engine, real containers; no GPU and no NVIDIA runtime here.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeConnection, ReplicaLaunch } from '@aiplat/plugin-sdk';
import { DockerConnector } from '../src/connector.js';
import { DockerHosts, dockerTarget } from '../src/engine.js';
import { DockerExecutor, type DockerReplicaHandle } from '../src/executor.js';
import { probeGpus } from '../src/gpu-probe.js';
import { IMAGE, Recorder, docker, dockerProxy, ensureEngine, leftovers, silentServer, waitFor, type DockerProxy } from './helpers.js';

const PREFIX = `wremote${process.pid}x`;
const NODE = 'remote-1';
let dataDir: string;
let seq = 0;

function launch(spec: Partial<ReplicaLaunch['spec']>, extra: Partial<ReplicaLaunch> = {}): ReplicaLaunch {
  return {
    workloadId: `${PREFIX}${Date.now().toString(36)}x${seq++}`,
    replica: 0,
    epoch: 1,
    nodeId: NODE,
    spec: { name: 'x', kind: 'job', image: IMAGE, command: ['true'], ...spec },
    env: { CUDA_VISIBLE_DEVICES: '' },
    ports: {},
    devices: [],
    simulated: false,
    nodeLabels: {},
    ...extra,
  };
}

describe('a remote Docker host as a node (over TCP)', () => {
  let proxy: DockerProxy;
  let hosts: DockerHosts;
  let connector: DockerConnector;
  let executor: DockerExecutor;
  let connection: NodeConnection;
  const executors: DockerExecutor[] = [];

  /** An executor whose own engine does not exist: only remote hosts can run anything. */
  function remoteOnly(h: DockerHosts, options: { remoteConnectWaitMs?: number } = {}): DockerExecutor {
    const e = new DockerExecutor(h);
    e.open({ socketPath: '/tmp/aiplat-no-such-docker.sock', dataDir, ...options });
    executors.push(e);
    return e;
  }

  beforeAll(async () => {
    await ensureEngine();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-docker-remote-'));
    mkdirSync(path.join(dataDir, 'storage', 'in'), { recursive: true });
    proxy = await dockerProxy();
    hosts = new DockerHosts();
    connector = new DockerConnector(hosts);
    executor = remoteOnly(hosts);
    connection = { nodeId: NODE, settings: { url: proxy.url }, secrets: {} };
  });
  afterAll(async () => {
    for (const e of executors) e.close();
    for (const c of await docker.listContainers({ all: true, filters: { label: ['aiplat.managed=true'] } })) {
      if (c.Labels['aiplat.workload']?.startsWith(PREFIX)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    }
    await proxy?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('connects through tcp://127.0.0.1:<port> and reports the engine as a node', async () => {
    const info = await docker.info();
    const node = await connector.connect(connection);
    expect(node).toEqual({
      name: info.Name,
      address: '127.0.0.1',
      cpu: info.NCPU,
      memoryMiB: Math.floor(info.MemTotal / 1024 / 1024),
      labels: {
        'docker.host': proxy.url,
        'docker.hostname': info.Name,
        'docker.version': info.ServerVersion,
        'docker.os': info.OperatingSystem,
        'docker.arch': info.Architecture,
        'docker.nvidia-runtime': 'false',
      },
      executors: ['docker'],
      // No NVIDIA runtime here: no cards (the core adds simulated ones when asked).
      devices: [],
    });
    expect(hosts.get(NODE)?.engine.where).toBe(proxy.url);
    expect(await connector.sample(connection)).toEqual([]);
    // Connected again (every discovery round): the same client while the settings are the same.
    const client = hosts.get(NODE)!.engine.docker;
    await connector.connect(connection);
    expect(hosts.get(NODE)!.engine.docker).toBe(client);
  });

  it('fails fast and clearly for a host that refuses, or does not answer, and keeps nothing', async () => {
    const dead = new DockerConnector(new DockerHosts());
    const t0 = Date.now();
    await expect(dead.connect({ nodeId: 'dead', settings: { url: 'tcp://127.0.0.1:1' }, secrets: {} })).rejects.toThrow(
      'Docker host tcp://127.0.0.1:1 does not answer: connect ECONNREFUSED 127.0.0.1:1',
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect(dead.connect({ nodeId: 'dead', settings: { url: 'unix:///tmp/aiplat-no-such-docker.sock' }, secrets: {} })).rejects.toThrow(
      /^Docker host unix:\/\/\/tmp\/aiplat-no-such-docker.sock does not answer: connect ENOENT/,
    );

    const silent = await silentServer();
    try {
      const hanging = new DockerConnector(new DockerHosts(), { connectTimeoutMs: 500 });
      const t1 = Date.now();
      await expect(hanging.connect({ nodeId: 'hangs', settings: { url: `http://127.0.0.1:${silent.port}` }, secrets: {} })).rejects.toThrow(
        `Docker host http://127.0.0.1:${silent.port} does not answer: no answer within 0.5 s`,
      );
      expect(Date.now() - t1).toBeLessThan(2000);
    } finally {
      await silent.close();
    }
    expect(new DockerHosts().all()).toEqual([]);
  });

  it('refuses settings it cannot use, saying why', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    expect(() => dockerTarget({ url: 'ftp://x:1' }, {})).toThrow(/"url" must be unix:\/\/\/path\/to\/docker.sock, tcp:\/\/host:port/);
    expect(() => dockerTarget({ url: 'tcp://host' }, {})).toThrow(/"url" must be/);
    expect(() => dockerTarget({ url: 'http://h:2375' }, { tlsCa: pem })).toThrow(/http:\/\/ does not use TLS/);
    expect(() => dockerTarget({ url: 'https://h:2376' }, { tlsCert: pem })).toThrow(/tlsCert and tlsKey go together/);
    expect(() => dockerTarget({ url: 'https://h:2376' }, { tlsCa: 'not pem' })).toThrow(/must be PEM/);
    expect(dockerTarget({ url: 'tcp://h:2376' }, { tlsCa: pem, tlsCert: pem, tlsKey: pem })).toMatchObject({ tls: true, address: 'h', options: { protocol: 'https', host: 'h', port: 2376, ca: pem } });
    expect(dockerTarget({ url: 'tcp://[::1]:2375' }, {})).toMatchObject({ tls: false, address: '::1', options: { protocol: 'http', host: '::1', port: 2375 } });
    expect(dockerTarget({ url: 'unix:///var/run/docker.sock' }, {})).toMatchObject({ address: '127.0.0.1', options: { socketPath: '/var/run/docker.sock' } });
  });

  it('runs a replica on the TCP node: its image, output and exit code, through the TCP client', async () => {
    const before = proxy.requestBytes;
    const l = launch({ command: ['sh', '-c', 'echo hi from $AIPLAT_WHERE; sleep 0.1; echo oops >&2; exit 3'] }, { env: { AIPLAT_WHERE: 'remote' }, nodeLabels: { 'docker.host': proxy.url } });
    const r = new Recorder();
    const { handle } = await executor.start(l, r);
    expect(handle).toEqual({ containerId: expect.stringMatching(/^[0-9a-f]{64}$/), name: `aiplat-${l.workloadId}-r0-e1`, nodeId: NODE, remote: true });
    expect(await r.ended()).toEqual({ exitCode: 3 });
    expect(r.text).toBe('hi from remote\noops\n');
    expect(r.image).toBe((await docker.getImage(IMAGE).inspect()).Id);
    expect(r.image).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(proxy.requestBytes).toBeGreaterThan(before);
    const info = await docker.getContainer(handle.containerId).inspect();
    expect(info.Config.Labels).toMatchObject({ 'aiplat.managed': 'true', 'aiplat.node': NODE });
    await executor.cleanup(handle);
    expect(await leftovers(l.workloadId)).toEqual([]);
  });

  it('lists the host PIDs of a running replica, cancels it, then lists none', async () => {
    const l = launch({ command: ['sh', '-c', "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"] });
    const r = new Recorder();
    const { handle } = await executor.start(l, r);
    await waitFor(() => r.text === 'up\n', 30_000, 'the replica to be up');
    const pids = await executor.processIds(handle);
    expect(pids.length).toBeGreaterThanOrEqual(2); // docker-init, sh (and a sleep now and then)
    // The host's PIDs: this machine is the host, so they are in its /proc, and one is the script's shell.
    const commands = pids.filter((pid) => existsSync(`/proc/${pid}`)).map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '));
    expect(commands.some((c) => c.includes("trap 'echo bye; exit 0' TERM"))).toBe(true);
    expect((await docker.getContainer(handle.containerId).inspect()).State.Pid).toBeOneOf(pids);

    await executor.stop(handle, { graceSeconds: 5 });
    expect(await r.ended()).toEqual({ exitCode: 0 });
    expect(r.text).toBe('up\nbye\n');
    expect(await executor.processIds(handle)).toEqual([]);
    await executor.cleanup(handle);
    expect(await executor.processIds(handle)).toEqual([]);
    expect(await leftovers(l.workloadId)).toEqual([]);
  });

  it('refuses mounts on a remote host, and a node whose host is not connected; creates nothing', async () => {
    writeFileSync(path.join(dataDir, 'storage', 'in', 'x'), 'x');
    const mounted = launch({ mounts: [{ source: path.join(dataDir, 'storage', 'in'), target: '/in' }] });
    await expect(executor.start(mounted, new Recorder())).rejects.toThrow(
      /node remote-1 is a remote Docker host \(tcp:\/\/127\.0\.0\.1:\d+\), and mounts from the storage area exist only on the core's machine/,
    );
    const away = launch({}, { nodeId: 'remote-away', nodeLabels: { 'docker.host': 'tcp://10.0.0.9:2375' } });
    await expect(executor.start(away, new Recorder())).rejects.toThrow(/node remote-away is the Docker host tcp:\/\/10\.0\.0\.9:2375, which is not connected \(yet\)/);
    expect(await leftovers(mounted.workloadId)).toEqual([]);
    expect(await leftovers(away.workloadId)).toEqual([]);
  });

  it('checks images on every engine at submission: the core’s (gone here) and the connected hosts', async () => {
    expect(await executor.validate({ name: 'x', kind: 'job', image: IMAGE, command: ['true'] })).toEqual([]);
    const problems = await executor.validate({ name: 'x', kind: 'job', image: 'local/never-imported:1', command: ['true'] });
    expect(problems).toEqual([expect.stringMatching(/^image local\/never-imported:1 is on none of the Docker engines \(the core's machine, node remote-1\)/)]);
  });

  it('after a restart, waits for the host to be connected again and follows on; lost if it never is', async () => {
    const l = launch({ command: ['sh', '-c', 'echo first; sleep 2; echo second; exit 5'] });
    const r1 = new Recorder();
    const { handle } = await executor.start(l, r1);
    await waitFor(() => r1.text === 'first\n', 30_000, 'the first line');

    // A new core: no host connected yet. The replica is followed once the core connects the node.
    const hosts2 = new DockerHosts();
    const later = remoteOnly(hosts2, { remoteConnectWaitMs: 20_000 });
    executor.close();
    const r2 = new Recorder();
    await later.attach(handle, r2, { outputOffset: r1.offset });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(r2.calls).toEqual([]);
    await new DockerConnector(hosts2).connect(connection);
    expect(await r2.ended()).toEqual({ exitCode: 5 });
    expect(r2.text).toBe('second\n');
    await later.cleanup(handle);

    // Never connected: lost, saying the container may still run there.
    const l2 = launch({ command: ['sleep', '30'] });
    const e2 = remoteOnly(hosts);
    const r3 = new Recorder();
    const started = await e2.start(l2, r3);
    e2.close();
    const r4 = new Recorder();
    await remoteOnly(new DockerHosts(), { remoteConnectWaitMs: 300 }).attach(started.handle, r4, { outputOffset: 0 });
    expect(await r4.ended()).toEqual({ lost: expect.stringMatching(/the Docker host of node remote-1 was not connected within 0 s .* may still run there/) });
    await expect(remoteOnly(new DockerHosts()).stop(started.handle, { graceSeconds: 0 })).rejects.toThrow(/the Docker host of node remote-1 is not connected/);
    await docker.getContainer(started.handle.containerId).remove({ force: true });
    expect(await leftovers(l2.workloadId)).toEqual([]);
  });

  it('goes on following after the node is disconnected (removed), and stops through the follower', async () => {
    const h = new DockerHosts();
    const c = new DockerConnector(h);
    await c.connect(connection);
    const e = remoteOnly(h);
    const l = launch({ command: ['sh', '-c', "trap 'echo stopping; exit 0' TERM; echo up; while true; do sleep 0.1; done"] });
    const r = new Recorder();
    const { handle } = await e.start(l, r);
    await waitFor(() => r.text === 'up\n', 30_000, 'the replica to be up');
    c.disconnect(NODE);
    expect(h.get(NODE)).toBeUndefined();
    await e.stop(handle, { graceSeconds: 5 });
    expect(await r.ended()).toEqual({ exitCode: 0 });
    expect(r.text).toBe('up\nstopping\n');
    // Gone with its follower: nothing reaches that host any more.
    await expect(e.cleanup(handle as DockerReplicaHandle)).rejects.toThrow(/not connected/);
    await docker.getContainer(handle.containerId).remove({ force: true });
    expect(await leftovers(l.workloadId)).toEqual([]);
  });

  it('finds GPUs with a probe container running nvidia-smi -q -x (a fake one here), and leaves no container', async () => {
    // An image with a stand-in nvidia-smi that prints a real capture (8 cards).
    const capture = path.resolve(import.meta.dirname, '../../../core/simulated/nvidia-smi/captures/datakit/gtx-8card.xml');
    const src = mkdtempSync(path.join(os.tmpdir(), 'aiplat-fake-nvsmi-'));
    writeFileSync(path.join(src, 'report.xml'), readFileSync(capture));
    writeFileSync(path.join(src, 'nvidia-smi'), '#!/bin/sh\n[ "$1 $2" = "-q -x" ] || { echo "unexpected arguments: $*" >&2; exit 2; }\ncat /report.xml\n');
    const tag = `probe${process.pid}`;
    const builder = await docker.createContainer({
      Image: IMAGE,
      Cmd: ['sh', '-c', 'cp /src/report.xml /report.xml && cp /src/nvidia-smi /bin/nvidia-smi && chmod +x /bin/nvidia-smi'],
      HostConfig: { Binds: [`${src}:/src:ro`] },
    });
    try {
      await builder.start();
      expect(((await builder.wait()) as { StatusCode: number }).StatusCode).toBe(0);
      await builder.commit({ repo: 'local/aiplat-fake-nvidia-smi', tag });
    } finally {
      await builder.remove({ force: true });
      rmSync(src, { recursive: true, force: true });
    }
    const image = `local/aiplat-fake-nvidia-smi:${tag}`;
    try {
      const engine = hosts.get(NODE)?.engine ?? (await connector.connect(connection), hosts.get(NODE)!.engine);
      // No NVIDIA runtime here: the probe asks the engine for no cards (on a GPU host it asks for all).
      const report = await probeGpus(engine, image, { requestGpus: false });
      expect(report.devices).toHaveLength(8);
      expect(report.devices[0]).toMatchObject({ index: 0, uuid: expect.stringMatching(/^GPU-/), memoryMiB: expect.any(Number) });
      await expect(probeGpus(engine, 'local/aiplat-not-there:1', { requestGpus: false })).rejects.toThrow(/the GPU probe image local\/aiplat-not-there:1 is not on the Docker host on node remote-1/);
      await expect(probeGpus(engine, IMAGE, { requestGpus: false })).rejects.toThrow(/GPU probe on node remote-1 .*(nvidia-smi|executable file not found)/);
      expect(await leftovers(`${PREFIX}-probes-only`)).toEqual([]); // no probe container stays
    } finally {
      await docker.getImage(image).remove({ force: true }).catch(() => undefined);
    }
  });
});
