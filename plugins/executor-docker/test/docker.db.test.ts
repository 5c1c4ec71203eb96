// The docker executor end to end: submit over the API with `executor: "docker"`, place on a
// SIMULATED GPU node (a fake nvidia-smi replays a real 8× V100S capture; there is no GPU here, so
// the executor asks the engine for none), run a real busybox container on the real Docker engine,
// store its logs and metrics, stop it, publish a service's port, and re-attach after a core restart.
// Runs on both passes (embedded PostgreSQL, then a real server with Redis).
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { IMAGE, containersOf, docker, ensureEngine, logText, managedContainerNames, waitFor, waitForState } from './helpers.js';

const CONFIG = { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } as const;

async function submit(core: TestCore, spec: Record<string, unknown>): Promise<any> {
  const res = await core.client.post('/api/v1/workloads', { executor: 'docker', image: IMAGE, ...spec });
  expect(res.status, `submitting ${JSON.stringify(spec).slice(0, 300)}: ${res.text}`).toBe(201);
  return res.body;
}

/** The workload's container once it runs (the executor removes it after it ends). */
async function runningContainer(id: string) {
  let found: Awaited<ReturnType<typeof containersOf>> = [];
  await waitFor(async () => (found = await containersOf(id)).some((c) => c.State === 'running'), 30_000, `a running container of ${id}`);
  return docker.getContainer(found[0]!.Id).inspect();
}

async function expectNoContainer(id: string): Promise<void> {
  // The agent cleans up just after it records the end.
  await waitFor(async () => (await containersOf(id)).length === 0, 10_000, `the containers of ${id} to be removed`);
}

describe('the docker executor on a real engine', () => {
  let core: TestCore;
  let storage: string;

  beforeAll(async () => {
    await ensureEngine();
    core = await startTestCore({ plugins: ['plugins/executor-docker'], config: CONFIG });
    storage = path.join(core.dataDir, 'storage', 'docker-tests');
    mkdirSync(storage, { recursive: true });
  });
  afterAll(() => core?.stop());

  it('offers the docker executor on the local and the simulated node', async () => {
    const nodes = (await core.client.get('/api/v1/nodes')).body.items as { id: string; executors: string[] }[];
    expect(nodes.map((n) => [n.id, n.executors.includes('docker')])).toEqual([
      ['sim-001', true],
      ['test-node', true],
    ]);
  });

  it('runs a job: stdout and stderr in order, env from the reservation, metrics, exit code 0', async () => {
    // stdout and stderr are two pipes: nothing orders writes to both that come at the same moment
    // (plain `docker run` mixes them too), so the writes here are a moment apart.
    const script = [
      'echo out-1; sleep 0.1; echo err-2 >&2; sleep 0.1; echo out-3; sleep 0.1; echo err-4 >&2; sleep 0.1',
      'echo "visible=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES mine=$MY_VAR rank=$RANK world=$WORLD_SIZE who=$AIPLAT_WORKLOAD_ID"',
      'for s in 1 2 3; do echo "{\\"type\\":\\"metric\\",\\"step\\":$s,\\"loss\\":$((4 - s))}"; done',
    ].join('; ');
    const w = await submit(core, { name: 'hello', command: ['sh', '-c', script], env: { MY_VAR: 'a b $c' }, resources: { gpus: 2 } });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state, done.reason).toBe('succeeded');
    expect(done.exitCode).toBe(0);
    const devices = (done.placements[0].devices as { index: number }[]).map((d) => d.index);
    expect(devices).toHaveLength(2);
    expect(done.placements[0].nodeId).toBe('sim-001');
    // The image it really ran: the engine's id of local/busybox:1.
    expect(done.placements[0].image).toBe((await docker.getImage(IMAGE).inspect()).Id);
    const text = await logText(core.client, w.id);
    expect(text).toBe(
      [
        'out-1',
        'err-2',
        'out-3',
        'err-4',
        // A simulated node's cards do not exist: the reservation's indexes, and no device asked of the engine.
        `visible=${devices.join(',')} nvidia=void mine=a b $c rank=0 world=1 who=${w.id}`,
        '{"type":"metric","step":1,"loss":3}',
        '{"type":"metric","step":2,"loss":2}',
        '{"type":"metric","step":3,"loss":1}',
        '',
      ].join('\n'),
    );
    const metrics = await core.client.get(`/api/v1/workloads/${w.id}/metrics`);
    expect(metrics.body.series).toEqual([
      { name: 'loss', points: [expect.objectContaining({ step: 1, value: 3 }), expect.objectContaining({ step: 2, value: 2 }), expect.objectContaining({ step: 3, value: 1 })] },
    ]);
    await expectNoContainer(w.id);
  });

  it('passes argv to the program without a shell', async () => {
    const w = await submit(core, { name: 'argv', command: ['echo', '$(id)', ';', '`id`', '&&', 'rm -rf /'] });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state, done.reason).toBe('succeeded');
    expect(await logText(core.client, w.id)).toBe('$(id) ; `id` && rm -rf /\n');
  });

  it('runs a gang whose ranks reach each other at MASTER_ADDR:MASTER_PORT', async () => {
    // Rank 0 listens until a connection brings a message: on a shared machine something else may
    // connect to the host port (the ranks share the host's network) and bring nothing. busybox nc
    // copies stdin to the socket and exits as soon as the peer closes its side; rank 0's stdin is
    // empty (/dev/null), so it closes its side at once, and a rank 1 fed by `echo ... | nc` could
    // exit before echo had written anything. Both read a file instead (data there before nc
    // connects, and read before the socket), and rank 1 retries until rank 0's ack comes back.
    const script = [
      'if [ "$RANK" = 0 ]; then',
      '  echo "ack $AIPLAT_WORKLOAD_ID" > /tmp/ack',
      '  while :; do msg=$(nc -l -p "$MASTER_PORT" < /tmp/ack); if [ -n "$msg" ]; then echo "$msg"; break; fi; done',
      'else',
      '  echo "hello from rank $RANK of $WORLD_SIZE" > /tmp/msg',
      '  until [ "$(nc "$MASTER_ADDR" "$MASTER_PORT" < /tmp/msg)" = "ack $AIPLAT_WORKLOAD_ID" ]; do sleep 0.1; done',
      'fi',
    ].join('\n');
    const w = await submit(core, { name: 'gang', command: ['sh', '-c', script], replicas: 2, resources: { gpus: 1 } });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state, done.reason).toBe('succeeded');
    expect(await logText(core.client, w.id)).toContain('hello from rank 1 of 2\n');
    await expectNoContainer(w.id);
  });

  it('records a non-zero exit code and removes the container', async () => {
    const w = await submit(core, { name: 'fails', command: ['sh', '-c', 'echo trying; echo "no luck" >&2; exit 3'] });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state).toBe('failed');
    expect(done.exitCode).toBe(3);
    expect(done.reason).toMatch(/exited with code 3/);
    expect(await logText(core.client, w.id)).toContain('no luck');
    await expectNoContainer(w.id);
  });

  it('says in the log when the memory limit killed the container', async () => {
    const w = await submit(core, { name: 'hungry', command: ['sh', '-c', 'echo eating; a=$(head -c 50000000 /dev/zero | tr "\\0" x); echo ${#a}'], resources: { memoryMiB: 8 } });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state).toBe('failed');
    expect(done.exitCode).toBe(137);
    expect(await logText(core.client, w.id)).toBe('eating\naiplat: the container ran out of memory (its limit of 8 MiB) and was killed\n');
    await expectNoContainer(w.id);
  });

  it('sets limits, labels and mounts on the container, and cancels it with SIGTERM first', async () => {
    const data = path.join(storage, 'inputs');
    mkdirSync(data, { recursive: true });
    writeFileSync(path.join(data, 'hello.txt'), 'from storage\n');
    const w = await submit(core, {
      name: 'long',
      command: ['sh', '-c', "trap 'echo saving; exit 0' TERM; cat /data/hello.txt; touch /data/x 2>/dev/null || echo read-only; echo up; while true; do sleep 0.1; done"],
      mounts: [{ source: data, target: '/data', readOnly: true }],
      workingDir: '/tmp',
      resources: { gpus: 1, memoryMiB: 64, cpu: 0.5 },
    });
    const info = await runningContainer(w.id);
    expect(info.Name).toBe(`/aiplat-${w.id}-r0-e1`);
    expect(info.HostConfig.Memory).toBe(64 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(500_000_000);
    expect(info.HostConfig.DeviceRequests ?? []).toEqual([]);
    expect(info.Config.WorkingDir).toBe('/tmp');
    expect(info.Config.Labels).toMatchObject({ 'aiplat.managed': 'true', 'aiplat.workload': w.id, 'aiplat.replica': '0', 'aiplat.epoch': '1' });
    expect(info.Mounts).toEqual([expect.objectContaining({ Source: data, Destination: '/data', RW: false })]);
    await waitFor(async () => (await logText(core.client, w.id)).includes('up\n'), 30_000, 'the job to say it is up');
    expect(await logText(core.client, w.id)).toBe('from storage\nread-only\nup\n');

    expect((await core.client.post(`/api/v1/workloads/${w.id}/cancel`)).status).toBe(200);
    const done = await waitForState(core.client, w.id, ['cancelled', 'failed', 'succeeded', 'lost']);
    expect(done.state).toBe('cancelled');
    expect(await logText(core.client, w.id)).toBe('from storage\nread-only\nup\nsaving\n');
    expect((await core.client.get(`/api/v1/gpus/reservations?workload=${w.id}`)).body.items).toHaveLength(0);
    await expectNoContainer(w.id);
  });

  it('publishes a service port on the host: readiness passes and the test reaches it', async () => {
    const w = await submit(core, {
      name: 'web',
      kind: 'service',
      command: ['httpd', '-f', '-p', '8080', '-h', '/'],
      ports: [{ name: 'http', containerPort: 8080 }],
      readiness: { httpGet: { port: 'http', path: '/etc/passwd' }, periodSeconds: 0.2 },
    });
    const ready = await waitForState(core.client, w.id, ['ready', 'failed', 'lost']);
    expect(ready.state, ready.reason).toBe('ready');
    const info = await runningContainer(w.id);
    const binding = info.HostConfig.PortBindings?.['8080/tcp']?.[0] as { HostIp: string; HostPort: string };
    expect(binding.HostIp).toBe('127.0.0.1');
    expect(info.Config.Env).toContain('PORT_HTTP=8080');
    const res = await fetch(`http://127.0.0.1:${binding.HostPort}/etc/passwd`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^root:x:0:0:/);
    await core.client.post(`/api/v1/workloads/${w.id}/cancel`);
    expect((await waitForState(core.client, w.id, ['cancelled', 'failed', 'succeeded', 'lost'])).state).toBe('cancelled');
    await expectNoContainer(w.id);
  });

  it('refuses bad input at submission (422) and creates no container', async () => {
    const before = await managedContainerNames();
    const outside = path.join(storage, 'escape');
    symlinkSync('/etc', outside);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ image: 'local/never-imported:1' }, /image local\/never-imported:1 is not on the Docker engine \(no registry is reachable: import it with docker load \/ docker import/],
      [{ image: undefined }, /a docker workload needs an "image"/],
      [{ image: '../../containers/json' }, /is not an image reference/],
      [{ mounts: [{ source: '/etc', target: '/host-etc' }] }, /"\/etc" is a mount outside storage/],
      [{ mounts: [{ source: path.join(storage, '..', '..', 'secrets'), target: '/s' }] }, /is a mount outside storage/],
      [{ mounts: [{ source: outside, target: '/s' }] }, /is a mount outside storage.*links to \/etc/],
      [{ resources: { memoryMiB: 1 } }, /memoryMiB must be at least 6/],
    ];
    for (const [spec, message] of cases) {
      const res = await core.client.post('/api/v1/workloads', { name: 'bad', executor: 'docker', image: IMAGE, command: ['true'], ...spec });
      expect(res.status, JSON.stringify(spec)).toBe(422);
      expect(res.body.error.message).toMatch(message);
    }
    expect(await managedContainerNames()).toEqual(before);
  });

  it('re-attaches after a core restart: the output goes on without gaps or repeats, and the exit code is recorded', async () => {
    // The job prints ten lines, then waits for a file from the test (through a mount) before the rest.
    const sync = path.join(storage, 'sync');
    mkdirSync(sync, { recursive: true });
    const script = 'i=0; while [ $i -lt 10 ]; do echo line $i; i=$((i+1)); done; while [ ! -e /sync/go ]; do sleep 0.05; done; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); done; exit 4';
    const w = await submit(core, { name: 'restart', command: ['sh', '-c', script], mounts: [{ source: sync, target: '/sync' }] });
    await waitFor(async () => (await logText(core.client, w.id)).includes('line 9\n'), 30_000, 'the first ten lines');
    const [before] = await containersOf(w.id);

    core = await core.restart();
    // The same container (never started twice), still running, followed by the new core.
    const after = await containersOf(w.id);
    expect(after.map((c) => [c.Id, c.State])).toEqual([[before!.Id, 'running']]);
    writeFileSync(path.join(sync, 'go'), '');

    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state).toBe('failed');
    expect(done.exitCode).toBe(4);
    expect(await logText(core.client, w.id)).toBe(Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join(''));
    expect(core.logs.some((l) => l.msg === 're-attached to a running replica')).toBe(true);
    await expectNoContainer(w.id);
  });

  it('re-attaches when the plugin is disabled and enabled again while a container runs', async () => {
    const sync = path.join(storage, 'sync2');
    mkdirSync(sync, { recursive: true });
    const script = 'echo first; while [ ! -e /sync/go ]; do sleep 0.05; done; echo second';
    const w = await submit(core, { name: 'toggled', command: ['sh', '-c', script], mounts: [{ source: sync, target: '/sync' }] });
    await waitFor(async () => (await logText(core.client, w.id)).includes('first\n'), 30_000, 'the first line');
    expect((await core.client.post('/api/v1/plugins/executor-docker/disable')).status).toBe(200);
    expect((await core.client.post('/api/v1/plugins/executor-docker/enable')).status).toBe(200);
    writeFileSync(path.join(sync, 'go'), '');
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed', 'lost']);
    expect(done.state, done.reason ?? '').toBe('succeeded');
    expect(await logText(core.client, w.id)).toBe('first\nsecond\n');
    await expectNoContainer(w.id);
  });
});
