// Nodes added through the API (`POST /api/v1/nodes`) and reached through a plugin's node connector:
// checked before storing, secrets sealed, `not-ready` with the connector's reason, image allow-lists,
// removal. The connector is the fixture core/test/fixtures/node-connector, whose hosts are TEST
// DOUBLES for remote machines (the docker plugin's tests reach a real engine over TCP); the work
// placed on them runs here through the local executor. Their GPUs are SIMULATED (a fake nvidia-smi
// replays a real Tesla T4 capture; there is no GPU here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { decryptSetting, deriveSecretKey, type SecretMarker } from '../../src/secrets/crypto.js';
import { rotateSecrets } from '../../src/secrets/rotation.js';
import { nodeCommand, submit } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const MASTER_KEY = 'node-connections-test-master-key-0123456789';
const NEXT_KEY = 'node-connections-test-next-key-0123456789abcdef';
const FIXTURE = '/api/plugins/node-connector';

describe('nodes added through the API', () => {
  let core: TestCore;

  /** What the `nodes` topic said, in order. */
  const nodeEvents: string[][] = [];

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['core/test/fixtures/node-connector'], config: { nodeId: 'test-node', secretKey: MASTER_KEY, gpuSampleSeconds: 1, stopGrace: 1 } });
    core.core.events.subscribe<{ ids: string[] }>('nodes', (event) => void nodeEvents.push(event.payload.ids));
  });
  afterAll(() => core?.stop());

  const node = async (id: string) => ((await core.client.get('/api/v1/nodes')).body.items as any[]).find((n) => n.id === id);

  it('refuses what cannot be added, with a reason, and stores nothing', async () => {
    const unknownKind = await core.client.post('/api/v1/nodes', { kind: 'ssh', name: 'x1', settings: {} });
    expect(unknownKind.status).toBe(400);
    expect(unknownKind.body.error.message).toContain('No node connector of kind "ssh" is enabled (enabled: fake-host)');

    const badSettings = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'x1', settings: { cpus: 2 } });
    expect(badSettings.status).toBe(400);
    expect(badSettings.body.error.message).toMatch(/host/);

    const badName = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: '../etc', settings: { host: 'a' } });
    expect(badName.status).toBe(400);

    const unknownSecret = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'x1', settings: { host: 'a' }, secrets: { password: 'p' } });
    expect(unknownSecret.status).toBe(400);
    expect(unknownSecret.body.error.message).toContain('"password" is not a secret setting of fake-host nodes (they take: token)');

    const reservedEnv = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'x1', settings: { host: 'a' }, env: { RANK: '3' } });
    expect(reservedEnv.status).toBe(400);

    await core.client.post(`${FIXTURE}/hosts/dead/down`, { down: true });
    const unreachable = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'x1', settings: { host: 'dead' } });
    expect(unreachable.status).toBe(422);
    expect(unreachable.body.error).toMatchObject({ code: 'node_unreachable' });
    expect(unreachable.body.error.message).toBe('Cannot add node "x1": fake host dead does not answer: connect ECONNREFUSED');

    expect(await node('x1')).toBeUndefined();
  });

  it('adds a host: checked, its secrets sealed, its simulated cards labelled, ready for work', async () => {
    const res = await core.client.post('/api/v1/nodes', {
      kind: 'fake-host',
      name: 'gpu-box',
      settings: { host: 'box1' },
      secrets: { token: 'tok-secret-1234' },
      labels: { rack: 'r7' },
      env: { HF_HOME: '/cache' },
      simulatedGpus: 't4',
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({
      id: 'gpu-box',
      name: 'gpu-box',
      kind: 'fake-host',
      provider: 'connector:fake-host',
      state: 'ready',
      stateReason: null,
      simulated: true,
      settings: { host: 'box1', cpus: 4 },
      secrets: { token: { set: true } },
      labels: { rack: 'r7', 'fake.host': 'box1', 'aiplat.io/simulated': 'true' },
      env: { HF_HOME: '/cache' },
      allowedImages: [],
      removable: true,
      executors: ['local'],
      cpu: 4,
    });
    expect(res.body.gpus).toHaveLength(1);
    expect(res.body.gpus[0]).toMatchObject({ index: 0, model: 'Tesla T4', free: true });
    expect(JSON.stringify(res.body)).not.toContain('tok-secret-1234');

    // The connector got the secret in clear; the database holds it sealed.
    const received = (await core.client.get(`${FIXTURE}/received`)).body;
    expect(received.connections['gpu-box'].secrets).toEqual({ token: 'tok-secret-1234' });
    const row = await core.core.database.knex('nodes').where({ id: 'gpu-box' }).first('connection_secrets');
    expect(JSON.stringify(row.connection_secrets)).not.toContain('tok-secret-1234');
    expect(row.connection_secrets.token.$secret).toBeTypeOf('string');

    const again = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'gpu-box', settings: { host: 'box1' } });
    expect(again.status).toBe(409);
    // Told on the stream (the refusals were not).
    await waitFor(async () => nodeEvents.length > 0, 5000, 'a nodes event');
    expect(nodeEvents).toEqual([['gpu-box']]);
  });

  it('places work on it by its labels, with its environment', async () => {
    const w = await submit(core.client, {
      name: 'on-added-node',
      command: nodeCommand("console.log('HF_HOME=' + process.env.HF_HOME + ' CUDA=' + process.env.CUDA_VISIBLE_DEVICES)"),
      nodeSelector: { rack: 'r7' },
      resources: { gpus: 1 },
    });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    expect(done.placements[0]).toMatchObject({ nodeId: 'gpu-box', devices: [{ index: 0, whole: true }] });
  });

  it('keeps work off a node whose image allow-list does not admit the image', async () => {
    const patched = await core.client.patch('/api/v1/nodes/gpu-box', { allowedImages: ['local/*', 'registry.lan/team/**'] });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.allowedImages).toEqual(['local/*', 'registry.lan/team/**']);
    const refused = await core.client.post('/api/v1/workloads', { name: 'wrong-image', image: 'docker.io/evil/miner:1', command: ['true'], nodeSelector: { rack: 'r7' } });
    expect(refused.status).toBe(422);
    expect(refused.body.error.message).toContain('no node runs the "local" executor with labels {"rack":"r7"} that allows the image "docker.io/evil/miner:1"');
    const deep = await submit(core.client, { name: 'allowed-image', image: 'registry.lan/team/a/b:2', command: nodeCommand('1'), nodeSelector: { rack: 'r7' } });
    expect((await waitForState(core.client, deep.id, ['succeeded', 'failed'])).placements[0].nodeId).toBe('gpu-box');
    const bad = await core.client.patch('/api/v1/nodes/gpu-box', { allowedImages: ['ok/*', 'has space'] });
    expect(bad.status).toBe(400);
    await core.client.patch('/api/v1/nodes/gpu-box', { allowedImages: [] });
  });

  it('samples its cards and sums the cluster for the dashboard', async () => {
    await waitFor(async () => (await core.client.get('/api/v1/nodes/gpu-box/gpus/0/metrics')).body.points?.length > 0, 20_000, 'a sample of the added node');
    const metrics = await core.client.get('/api/v1/gpus/metrics');
    expect(metrics.status).toBe(200);
    const last = metrics.body.points.at(-1);
    expect(last).toMatchObject({ cards: 1, memoryTotalMiB: 15360 });
    expect(last.utilizationPercent).toBeTypeOf('number');
    expect((await core.client.get('/api/v1/gpus/metrics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z')).status).toBe(400);

    const summary = await core.client.get('/api/v1/workloads/summary');
    expect(summary.status).toBe(200);
    expect(summary.body.byState).toMatchObject({ succeeded: 2, pending: 0, running: 0 });
  });

  it('becomes not-ready with the connector’s reason while its host does not answer, and ready again', async () => {
    await core.client.post(`${FIXTURE}/hosts/box1/down`, { down: true });
    nodeEvents.length = 0;
    await core.core.scheduler.discover();
    expect(await node('gpu-box')).toMatchObject({ state: 'not-ready', stateReason: 'fake host box1 does not answer: connect ECONNREFUSED' });
    await waitFor(async () => nodeEvents.some((ids) => ids.includes('gpu-box')), 5000, 'a nodes event for the host going down');
    const refused = await core.client.post('/api/v1/workloads', { name: 'nowhere', command: ['true'], nodeSelector: { rack: 'r7' } });
    expect(refused.status).toBe(422);
    const uncordon = await core.client.patch('/api/v1/nodes/gpu-box', { cordoned: false });
    expect(uncordon.status).toBe(409);

    await core.client.post(`${FIXTURE}/hosts/box1/down`, { down: false });
    await core.core.scheduler.discover();
    expect(await node('gpu-box')).toMatchObject({ state: 'ready', stateReason: null });
  });

  it('re-encrypts its secrets when the master key rotates', async () => {
    const db = core.core.database.knex;
    const sealed = async () => ((await db('nodes').where({ id: 'gpu-box' }).first('connection_secrets')) as { connection_secrets: { token: SecretMarker } }).connection_secrets.token;
    const rotated = await rotateSecrets(db, { current: MASTER_KEY, next: NEXT_KEY });
    expect(rotated.plugins).toContain('node:gpu-box');
    const marker = await sealed();
    expect(decryptSetting(deriveSecretKey(NEXT_KEY), 'node:gpu-box', ['token'], marker)).toBe('tok-secret-1234');
    expect(() => decryptSetting(deriveSecretKey(MASTER_KEY), 'node:gpu-box', ['token'], marker)).toThrow();
    // Bound to its node: the same envelope is no secret of another node.
    expect(() => decryptSetting(deriveSecretKey(NEXT_KEY), 'node:other', ['token'], marker)).toThrow();
    // Back to the key this core runs with.
    await rotateSecrets(db, { current: NEXT_KEY, next: MASTER_KEY });
    await core.core.scheduler.discover();
    expect((await core.client.get(`${FIXTURE}/received`)).body.connections['gpu-box'].secrets).toEqual({ token: 'tok-secret-1234' });
  });

  it('removes an idle added node, never one that runs work or a discovered one that reports in', async () => {
    const discovered = await core.client.delete('/api/v1/nodes/test-node');
    expect(discovered.status).toBe(409);
    expect(discovered.body.error.message).toContain('discovered by its core and still reports in');

    const sleeper = await submit(core.client, { name: 'sleeper', command: nodeCommand('setTimeout(() => {}, 60000)'), nodeSelector: { rack: 'r7' } });
    await waitForState(core.client, sleeper.id, ['running']);
    const busy = await core.client.delete('/api/v1/nodes/gpu-box');
    expect(busy.status).toBe(409);
    expect(busy.body.error.message).toContain('still runs 1 replica: drain it');
    const cancel = await core.client.post(`/api/v1/workloads/${sleeper.id}/cancel`);
    expect(cancel.status, cancel.text).toBe(200);
    await waitForState(core.client, sleeper.id, ['cancelled']);

    const removed = await core.client.delete('/api/v1/nodes/gpu-box');
    expect(removed.status, removed.text).toBe(204);
    expect(await node('gpu-box')).toBeUndefined();
    expect((await core.client.get(`${FIXTURE}/received`)).body.disconnected).toContain('gpu-box');
    expect((await core.client.delete('/api/v1/nodes/gpu-box')).status).toBe(404);
    // Its cards leave the pool; the reservations' history stays.
    const history = await core.client.get('/api/v1/gpus/reservations?history=true');
    expect(history.body.items.some((r: { deviceId: string }) => r.deviceId === 'gpu-box/0')).toBe(true);

    // The same name can be added again.
    const back = await core.client.post('/api/v1/nodes', { kind: 'fake-host', name: 'gpu-box', settings: { host: 'box1' } });
    expect(back.status, back.text).toBe(201);
    expect(back.body).toMatchObject({ state: 'ready', simulated: false, gpus: [], secrets: {} });
  }, 60_000);

  it('audits who added and removed nodes', async () => {
    const audit = await core.client.get('/api/v1/audit?resource=node:gpu-box&limit=50');
    expect(audit.status, audit.text).toBe(200);
    const actions = (audit.body.items as { action: string; outcome: string }[]).map((e) => `${e.action} ${e.outcome}`);
    expect(actions.filter((a) => a === 'core:POST /nodes success')).toHaveLength(2);
    expect(actions).toContain('core:DELETE /nodes/:id success');
    // The add is audited with what was asked for, secrets left out.
    const added = (audit.body.items as { action: string; details: Record<string, unknown> }[]).find((e) => e.action === 'core:POST /nodes')!;
    expect(added.details).toMatchObject({ kind: 'fake-host', settings: { host: 'box1' } });
    expect(JSON.stringify(audit.body.items)).not.toContain('tok-secret-1234');
  });
});
