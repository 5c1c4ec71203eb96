// Services end to end: named ports handed out as PORT_<NAME>, a readiness check, a replica
// restarted by its policy when its process dies, replicas placed one by one, and the checks on
// input. Real core, real database, real processes and real HTTP; the GPUs are SIMULATED (a fake
// nvidia-smi replays a real 8× V100S capture; there is no GPU here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { alive, events, liveReservations, logText, nodeCommand, submit, transitions } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

/** A tiny HTTP app on PORT_HTTP that says which port and epoch it serves. */
const APP = nodeCommand(`
  const http = require('http');
  const { PORT_HTTP, PORT, AIPLAT_EPOCH } = process.env;
  http.createServer((req, res) => res.end('hello from epoch ' + AIPLAT_EPOCH)).listen(Number(PORT_HTTP), '127.0.0.1', () => console.log('listening on ' + PORT_HTTP + ' (PORT=' + PORT + ')'));
  process.on('SIGTERM', () => { console.log('shutting down'); process.exit(0); });
`);

/** The ports the app said it listens on, in order. */
async function listening(core: TestCore, id: string): Promise<number[]> {
  return [...(await logText(core.client, id)).matchAll(/listening on (\d+) \(PORT=(\d+)\)/g)].map((m) => {
    expect(m[2]).toBe(m[1]);
    return Number(m[1]);
  });
}

async function get(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

describe('services on simulated GPUs', () => {
  let core: TestCore;

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1 } });
  });
  afterAll(() => core?.stop());

  it('becomes ready, answers on its port, is restarted when its process dies, and is cancelled', async () => {
    const id = (
      await submit(core.client, {
        name: 'web',
        kind: 'service',
        command: APP,
        ports: [{ name: 'http' }],
        readiness: { httpGet: { port: 'http', path: '/' }, periodSeconds: 0.2 },
        resources: { gpus: 1 },
      })
    ).id;
    const ready = await waitForState(core.client, id, ['ready']);
    expect(ready.reason).toBe('every replica passes its readiness check');
    // Readiness may pass before the output is stored (it is flushed every 150 ms).
    await waitFor(async () => (await listening(core, id)).length === 1, 30_000, 'the app to say where it listens');
    const [port] = await listening(core, id);
    expect(await get(port!)).toBe(`hello from epoch ${ready.epoch}`);

    // Kill the app behind the supervisor's back (an OOM kill, a crash).
    const { handle } = (await core.core.database.knex('workload_replicas').where({ workload_id: id, replica: 0 }).first('handle')) as { handle: { pid: number } };
    process.kill(handle.pid, 'SIGKILL');
    await waitFor(async () => (await listening(core, id)).length === 2, 30_000, 'the replica to be started again');
    const again = await waitForState(core.client, id, ['ready']);
    expect(again.epoch).toBeGreaterThan(ready.epoch);
    const [, second] = await listening(core, id);
    expect(await get(second!)).toBe(`hello from epoch ${again.epoch}`);
    const replica = (await core.core.database.knex('workload_replicas').where({ workload_id: id, replica: 0 }).first('restarts')) as { restarts: number };
    expect(replica.restarts).toBe(1);
    const all = await events(core.client, id);
    expect(all.some((e) => e.reason === 'replica 0 was killed by SIGKILL; restarting it')).toBe(true);

    const cancel = await core.client.post(`/api/v1/workloads/${id}/cancel`);
    expect(cancel.status).toBe(200);
    expect((await waitForState(core.client, id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
    expect(await logText(core.client, id)).toMatch(/shutting down\n$/);
    expect(await get(second!)).toBeUndefined();
    expect(await transitions(core.client, id)).toEqual(['pending', 'scheduled', 'running', 'ready', 'running', 'ready', 'cancelled']);
    expect(await liveReservations(core.client, id)).toEqual([]);
    expect(alive(handle.pid)).toBe(false);
  });

  it('goes back to running while its replica fails the readiness check, and to ready when it passes again', async () => {
    // /health answers 503 after /sick and 200 after /well.
    const app = nodeCommand(`
      let healthy = true;
      require('http').createServer((req, res) => {
        if (req.url === '/sick') healthy = false;
        if (req.url === '/well') healthy = true;
        res.statusCode = req.url === '/health' && !healthy ? 503 : 200;
        res.end();
      }).listen(Number(process.env.PORT_API), '127.0.0.1', () => console.log('listening on ' + process.env.PORT_API + ' (PORT=' + process.env.PORT + ')'));
      process.on('SIGTERM', () => process.exit(0));
    `);
    const id = (
      await submit(core.client, {
        name: 'moody',
        kind: 'service',
        command: app,
        ports: [{ name: 'api' }],
        readiness: { httpGet: { port: 'api', path: '/health' }, periodSeconds: 0.2, failureThreshold: 2 },
      })
    ).id;
    await waitForState(core.client, id, ['ready']);
    await waitFor(async () => (await listening(core, id)).length === 1, 30_000, 'the app to say where it listens');
    const [port] = await listening(core, id);
    await fetch(`http://127.0.0.1:${port}/sick`);
    const unready = await waitForState(core.client, id, ['running']);
    expect(unready.reason).toBe('replica 0 fails its readiness check');
    await fetch(`http://127.0.0.1:${port}/well`);
    await waitForState(core.client, id, ['ready']);
    // The same process all along: failing readiness does not restart it.
    expect(await listening(core, id)).toHaveLength(1);
    await core.client.post(`/api/v1/workloads/${id}/cancel`);
    expect((await waitForState(core.client, id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
    expect(await transitions(core.client, id)).toEqual(['pending', 'scheduled', 'running', 'ready', 'running', 'ready', 'cancelled']);
  });

  it('places replicas one by one: one runs while the other waits, and the second starts once cards free up', async () => {
    const waits = nodeCommand("console.log('replica ' + process.env.AIPLAT_REPLICA + ' up'); process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000);");
    const blocker = (await submit(core.client, { name: 'blocker', command: waits, resources: { gpus: 8 } })).id;
    await waitForState(core.client, blocker, ['running']);
    const id = (await submit(core.client, { name: 'pair', kind: 'service', command: waits, replicas: 2, resources: { gpus: 8 } })).id;
    await waitForState(core.client, id, ['running']);
    await waitFor(
      async () => (await core.client.get(`/api/v1/workloads/${id}`)).body.reason === 'waiting for 8 free GPUs on one node (0 free in all, at most 0 on one node)',
      30_000,
      'the second replica to wait with the reason',
    );
    const half = (await core.client.get(`/api/v1/workloads/${id}`)).body;
    expect(half.placements).toHaveLength(1);
    expect(half.placements[0].replica).toBe(0);

    await core.client.post(`/api/v1/workloads/${blocker}/cancel`);
    await waitForState(core.client, blocker, ['cancelled']);
    await waitFor(async () => (await core.client.get(`/api/v1/workloads/${id}`)).body.placements.filter((p: { state: string }) => p.state === 'running').length === 2, 30_000, 'both replicas to run');
    const full = (await core.client.get(`/api/v1/workloads/${id}`)).body;
    expect(full.state).toBe('running');
    // Nothing waits any more: no stale reason saying otherwise.
    expect(full.reason).toBeNull();
    expect(new Set(full.placements.map((p: { nodeId: string }) => p.nodeId)).size).toBe(2);
    await waitFor(async () => (await logText(core.client, id, 1)) === 'replica 1 up\n', 30_000, 'replica 1 to be up');

    await core.client.post(`/api/v1/workloads/${id}/cancel`);
    expect((await waitForState(core.client, id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
  });

  it('follows the restart policy: a service that may not restart fails with its exit code', async () => {
    const id = (await submit(core.client, { name: 'once', kind: 'service', command: nodeCommand('process.exit(4)'), restartPolicy: 'never' })).id;
    const done = await waitForState(core.client, id, ['failed', 'succeeded', 'cancelled']);
    expect(done.state).toBe('failed');
    expect(done.reason).toBe('replica 0 exited with code 4');
    expect(done.exitCode).toBe(4);
  });

  it('refuses service settings on a job, and readiness on a port the service lacks, with the reasons', async () => {
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ name: 'j', command: ['true'], ports: [{ name: 'http' }] }, 422, /ports are for services \(kind "service"\); a job has none/],
      [{ name: 'j', command: ['true'], readiness: { tcpSocket: { port: 'http' } } }, 422, /readiness is for services/],
      [{ name: 'j', command: ['true'], restartPolicy: 'always' }, 422, /restartPolicy is for services; a job uses retries/],
      [
        { name: 's', kind: 'service', command: ['true'], ports: [{ name: 'http' }], readiness: { httpGet: { port: 'web', path: '/' } } },
        422,
        /readiness checks port "web", which is not among the service's ports/,
      ],
      [{ name: 's', kind: 'service', command: ['true'], ports: [{ name: 'http' }, { name: 'http' }] }, 422, /port "http" is named twice/],
      [{ name: 's', kind: 'service', command: ['true'], ports: [{ name: 'http' }], readiness: { initialDelaySeconds: 1 } }, 422, /readiness needs httpGet or tcpSocket/],
      [{ name: 's', kind: 'service', command: ['true'], ports: [{ name: 'HTTP!' }] }, 400, /ports/],
      [{ name: 's', kind: 'service', command: ['true'], readiness: { httpGet: { port: 'http', path: 'no-slash' } } }, 400, /path/],
      [{ name: 's', kind: 'service', command: ['true'], env: { MASTER_PORT: '1' } }, 422, /env MASTER_PORT is set by the scheduler/],
    ];
    for (const [body, status, message] of cases) {
      const res = await core.client.post('/api/v1/workloads', body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.error.message).toMatch(message);
    }
  });
});
