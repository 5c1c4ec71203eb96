// The scheduler's plugin surface end to end, through a fixture plugin (core/test/fixtures/workload-hooks):
// the `workloads.beforeSubmit` waterfall amends specs, `workloads.stateChanged` hears every
// committed transition in order, `coreServices.workloads` submits with the plugin as owner, and a
// disabled plugin's taps stop at once. Real core, real database, real processes; the GPUs are
// SIMULATED (a fake nvidia-smi replays a real 8× V100S capture; there is no GPU here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { logText, nodeCommand, submit } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const SHOW_ENV = nodeCommand("console.log('FROM_PLUGIN=' + process.env.FROM_PLUGIN)");
const PLUGIN = '/api/plugins/workload-hooks';

describe('the scheduler’s hooks and service for plugins', () => {
  let core: TestCore;
  let adminId: string;
  let fromPlugin: string;
  let fromApi: string;

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['core/test/fixtures/workload-hooks'], config: { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } });
    adminId = (await core.client.get('/api/v1/me')).body.user.id;
  });
  afterAll(() => core?.stop());

  it('submits through coreServices.workloads with the plugin as owner, amended by beforeSubmit', async () => {
    const res = await core.client.post(`${PLUGIN}/submit`, { name: 'via-plugin', command: SHOW_ENV });
    expect(res.status).toBe(200);
    fromPlugin = res.body.id;
    expect(res.body).toMatchObject({ owner: 'workload-hooks', userId: adminId, team: 'default' });
    expect(res.body.spec.env).toEqual({ FROM_PLUGIN: 'yes' });
    expect(res.body.spec.labels).toEqual({ 'hooked-by': 'workload-hooks', 'submitted-via': 'workload-hooks' });

    const done = await waitForState(core.client, fromPlugin, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    expect(await logText(core.client, fromPlugin)).toBe('FROM_PLUGIN=yes\n');
  });

  it('amends API submissions too: the env reaches the process and the label is stored', async () => {
    fromApi = (await submit(core.client, { name: 'via-api', command: SHOW_ENV, labels: { mine: '1' } })).id;
    const done = await waitForState(core.client, fromApi, ['succeeded', 'failed']);
    expect(done.owner).toBe('core');
    expect(done.spec.labels).toEqual({ mine: '1', 'hooked-by': 'workload-hooks', 'submitted-via': 'core' });
    expect(await logText(core.client, fromApi)).toBe('FROM_PLUGIN=yes\n');
    const labelled = await core.client.get('/api/v1/workloads?label=hooked-by=workload-hooks');
    expect(labelled.body.items.map((w: { id: string }) => w.id)).toEqual([fromApi, fromPlugin]);
  });

  it('tells stateChanged every committed transition, in order', async () => {
    for (const id of [fromPlugin, fromApi]) {
      // The last tap runs after the state is visible over the API: wait for it.
      await waitFor(async () => (await core.client.get(`${PLUGIN}/transitions/${id}`)).body.items.length === 4, 30_000, 'four transitions');
      const seen = (await core.client.get(`${PLUGIN}/transitions/${id}`)).body.items;
      expect(seen.map((s: { from: string | null; to: string }) => [s.from, s.to])).toEqual([
        [null, 'pending'],
        ['pending', 'scheduled'],
        ['scheduled', 'running'],
        ['running', 'succeeded'],
      ]);
      expect(seen[0].reason).toBe('submitted');
      expect(seen.every((s: { owner: string }) => s.owner === (id === fromPlugin ? 'workload-hooks' : 'core'))).toBe(true);
    }
  });

  it('stops applying the taps of a disabled plugin', async () => {
    expect((await core.client.post('/api/v1/plugins/workload-hooks/disable')).status).toBe(200);
    const plain = (await submit(core.client, { name: 'unhooked', command: SHOW_ENV })).id;
    const done = await waitForState(core.client, plain, ['succeeded', 'failed']);
    expect(done.spec.env).toEqual({});
    expect(done.spec.labels).toBeUndefined();
    expect(await logText(core.client, plain)).toBe('FROM_PLUGIN=undefined\n');
    expect((await core.client.post(`${PLUGIN}/submit`, { name: 'nope', command: SHOW_ENV })).status).toBe(404);

    // Enabled again: it heard nothing of the workload that ran while it was off, and taps again.
    expect((await core.client.post('/api/v1/plugins/workload-hooks/enable')).status).toBe(200);
    expect((await core.client.get(`${PLUGIN}/transitions/${plain}`)).body.items).toEqual([]);
    expect((await core.client.get(`${PLUGIN}/transitions/${fromPlugin}`)).body.items).toHaveLength(4);
    const again = await submit(core.client, { name: 'rehooked', command: ['true'] });
    expect(again.spec.env).toEqual({ FROM_PLUGIN: 'yes' });
    await waitForState(core.client, again.id, ['succeeded']);
  });
});
