import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';
import { type LineageGraph, type LineageNode } from '../api/index.js';

const root = path.resolve(import.meta.dirname, '..');
const recorder = path.resolve(import.meta.dirname, 'fixtures/lineage-recorder');

const dataset: LineageNode = { kind: 'datasets.version', id: 'dv-1', label: 'chat-sft v1' };
const run: LineageNode = { kind: 'training.run', id: 'run-1', label: 'sft run 1' };
const model: LineageNode = { kind: 'models.version', id: 'mv-1', label: 'llama-sft v1' };
const variant: LineageNode = { kind: 'models.variant', id: 'var-1', label: 'llama-sft v1 int4' };
const deployment: LineageNode = { kind: 'serving.revision', id: 'rev-1', label: 'chat rev 1' };

const ids = (g: LineageGraph) => g.nodes.map((n) => `${n.kind}:${n.id}@${n.depth}`);

describe('plugins/lineage', () => {
  let core: TestCore;
  const graph = (query: string, client?: TestClient) => (client ?? core.client).get(`/api/plugins/lineage/graph?${query}`);
  /** Calls the lineage service from the recorder plugin's request; resolves with the result, rejects with the error message. */
  const call = async (method: string, ...args: unknown[]) => {
    const res = await core.client.post('/api/plugins/lineage-recorder/call', { method, args });
    if (res.status !== 200) throw new Error(`${res.status} ${res.body.error.message}`);
    return res.body.result;
  };
  const service = () => ({
    record: (edge: unknown, options?: unknown) => call('record', edge, options),
    recordMany: (edges: unknown, options?: unknown) => call('recordMany', edges, options),
    upstream: (node: unknown, options?: unknown) => call('upstream', node, options) as Promise<LineageGraph>,
    forget: (node: unknown) => call('forget', node) as Promise<number>,
  });

  beforeAll(async () => {
    core = await startTestCore({ plugins: [root, recorder] });
  });
  afterAll(() => core?.stop());

  it('records a chain through a dependent plugin, in its request transaction', async () => {
    const post = (body: unknown) => core.client.post('/api/plugins/lineage-recorder/things', body);
    expect((await post({ thing: dataset })).status).toBe(200);
    expect((await post({ thing: run, from: dataset, relation: 'trained-from' })).status).toBe(200);
    expect((await post({ thing: model, from: run, relation: 'produced-by' })).status).toBe(200);
    expect((await post({ thing: variant, from: model, relation: 'optimised-from' })).status).toBe(200);
    expect((await post({ thing: deployment, from: variant, relation: 'deployed-from' })).status).toBe(200);
    const rows = await core.core.database.knex('p_lineage_edges').orderBy('created_at').select('from_id', 'to_id', 'relation', 'created_by');
    expect(rows).toEqual([
      { from_id: 'dv-1', to_id: 'run-1', relation: 'trained-from', created_by: 'lineage-recorder' },
      { from_id: 'run-1', to_id: 'mv-1', relation: 'produced-by', created_by: 'lineage-recorder' },
      { from_id: 'mv-1', to_id: 'var-1', relation: 'optimised-from', created_by: 'lineage-recorder' },
      { from_id: 'var-1', to_id: 'rev-1', relation: 'deployed-from', created_by: 'lineage-recorder' },
    ]);
  });

  it('answers upstream from the deployment, to depth 2 and to the end', async () => {
    const near = await graph('kind=serving.revision&id=rev-1&direction=up&depth=2');
    expect(near.status).toBe(200);
    expect(ids(near.body)).toEqual(['serving.revision:rev-1@0', 'models.variant:var-1@-1', 'models.version:mv-1@-2']);
    expect(near.body.truncated).toBe(true);
    expect(near.body.edges.map((e: { relation: string }) => e.relation)).toEqual(['deployed-from', 'optimised-from']);
    expect(near.body.root).toEqual({ kind: 'serving.revision', id: 'rev-1', label: 'chat rev 1', team: null, route: null });
    expect(near.body.edges[1]).toEqual({
      from: { kind: 'models.version', id: 'mv-1', label: 'llama-sft v1', team: null, route: null },
      to: { kind: 'models.variant', id: 'var-1', label: 'llama-sft v1 int4', team: null, route: null },
      relation: 'optimised-from',
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
      createdBy: 'lineage-recorder',
    });

    const all = await graph('kind=serving.revision&id=rev-1&direction=up&depth=20');
    expect(ids(all.body)).toEqual([
      'serving.revision:rev-1@0',
      'models.variant:var-1@-1',
      'models.version:mv-1@-2',
      'training.run:run-1@-3',
      'datasets.version:dv-1@-4',
    ]);
    expect(all.body.truncated).toBe(false);
    expect(all.body.edges).toHaveLength(4);
    // The service answers the same, for plugins.
    const viaService = await service().upstream({ kind: 'serving.revision', id: 'rev-1' }, { depth: 20 });
    expect(ids(viaService)).toEqual(ids(all.body));
    // ...and a dependent plugin can ask inside its own request.
    const viaRecorder = await core.client.get('/api/plugins/lineage-recorder/upstream?kind=serving.revision&id=rev-1&depth=1');
    expect(ids(viaRecorder.body)).toEqual(['serving.revision:rev-1@0', 'models.variant:var-1@-1']);
  });

  it('answers downstream from the dataset, and both ways from the middle', async () => {
    const down = await graph('kind=datasets.version&id=dv-1&direction=down');
    expect(ids(down.body)).toEqual([
      'datasets.version:dv-1@0',
      'training.run:run-1@1',
      'models.version:mv-1@2',
      'models.variant:var-1@3',
      'serving.revision:rev-1@4',
    ]);
    expect(down.body.truncated).toBe(false);
    const both = await graph('kind=models.version&id=mv-1&depth=1');
    expect(ids(both.body)).toEqual(['models.version:mv-1@0', 'models.variant:var-1@1', 'training.run:run-1@-1']);
    expect(both.body.truncated).toBe(true);
  });

  it('records the same edge once', async () => {
    await service().record({ from: dataset, to: run, relation: 'trained-from', details: { again: true } }, { createdBy: 'test' });
    await service().recordMany([
      { from: dataset, to: run, relation: 'trained-from' },
      { from: dataset, to: run, relation: 'trained-from' },
    ]);
    const res = await core.client.post('/api/plugins/lineage/edges', { from: dataset, to: run, relation: 'trained-from' });
    expect(res.status).toBe(204);
    const rows = await core.core.database.knex('p_lineage_edges').where({ from_id: 'dv-1', to_id: 'run-1' });
    expect(rows).toHaveLength(1);
    expect(rows[0].created_by).toBe('lineage-recorder');
  });

  it('refuses an edge that would close a cycle', async () => {
    const res = await core.client.post('/api/plugins/lineage/edges', { from: deployment, to: dataset, relation: 'derived-from' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('conflict');
    expect(res.body.error.message).toBe(
      'Recording serving.revision "rev-1" → datasets.version "dv-1" would close a cycle: datasets.version "dv-1" already leads to serving.revision "rev-1", and lineage is a DAG',
    );
    await expect(service().record({ from: model, to: run, relation: 'x' })).rejects.toThrow(/would close a cycle/);
    expect((await core.client.post('/api/plugins/lineage/edges', { from: run, to: run, relation: 'x' })).status).toBe(409);
    // recordMany is all or none.
    await expect(
      service().recordMany([
        { from: { kind: 'a.b', id: 'new' }, to: dataset, relation: 'derived-from' },
        { from: variant, to: run, relation: 'derived-from' },
      ]),
    ).rejects.toThrow(/cycle/);
    expect(await core.core.database.knex('p_lineage_edges').where({ from_id: 'new' })).toHaveLength(0);
  });

  it('caps depth and nodes, saying the graph is truncated', async () => {
    // A fan: one base model with 30 fine-tunes.
    const base: LineageNode = { kind: 'models.version', id: 'fan-base' };
    await service().recordMany(Array.from({ length: 30 }, (_, i) => ({ from: base, to: { kind: 'models.version', id: `fan-${String(i).padStart(2, '0')}` }, relation: 'derived-from' })));
    const capped = await graph('kind=models.version&id=fan-base&direction=down&limit=10');
    expect(capped.body.nodes).toHaveLength(10);
    expect(capped.body.edges).toHaveLength(9);
    expect(capped.body.truncated).toBe(true);
    const whole = await graph('kind=models.version&id=fan-base&direction=down');
    expect(whole.body.nodes).toHaveLength(31);
    expect(whole.body.truncated).toBe(false);
    // A chain of 25: the depth limit of 20 leaves the end out.
    const chain = Array.from({ length: 26 }, (_, i) => ({ kind: 'test.step', id: `s${i}` }));
    await service().recordMany(chain.slice(1).map((to, i) => ({ from: chain[i]!, to, relation: 'derived-from' })));
    const deep = await graph('kind=test.step&id=s0&direction=down&depth=20');
    expect(deep.body.nodes).toHaveLength(21);
    expect(deep.body.truncated).toBe(true);
    expect((await graph('kind=test.step&id=s0&direction=down')).body.nodes).toHaveLength(6);
  });

  it("rolls the edge back with the caller's failed request", async () => {
    const res = await core.client.post('/api/plugins/lineage-recorder/things', { thing: { kind: 'models.version', id: 'mv-failed' }, from: run, relation: 'produced-by', fail: true });
    expect(res.status).toBe(409);
    expect(await core.core.database.knex('p_lineage_recorder_things').where({ id: 'mv-failed' })).toHaveLength(0);
    expect(await core.core.database.knex('p_lineage_edges').where({ to_id: 'mv-failed' })).toHaveLength(0);
    const down = await graph('kind=training.run&id=run-1&direction=down&depth=1');
    expect(ids(down.body)).toEqual(['training.run:run-1@0', 'models.version:mv-1@1']);
  });

  it('lets viewers read but not write, and needs a sign-in', async () => {
    const viewer = await core.createUser('vera', ['viewer']);
    expect((await graph('kind=datasets.version&id=dv-1', viewer.client)).status).toBe(200);
    expect((await viewer.client.post('/api/plugins/lineage/edges', { from: dataset, to: { kind: 'x.y', id: '1' }, relation: 'derived-from' })).status).toBe(403);
    expect((await viewer.client.request('DELETE', '/api/plugins/lineage/edges', { body: { from: dataset, to: run, relation: 'trained-from' } })).status).toBe(403);
    expect((await core.client.anonymous().get('/api/plugins/lineage/graph?kind=a.b&id=1')).status).toBe(401);
    const operator = await core.createUser('otto', ['operator']);
    const link = { from: { kind: 'x.y', id: 'o1' }, to: { kind: 'x.y', id: 'o2' }, relation: 'derived-from' };
    expect((await operator.client.post('/api/plugins/lineage/edges', link)).status).toBe(204);
    expect((await core.core.database.knex('p_lineage_edges').where({ from_id: 'o1' }).first()).created_by).toMatch(/^user:/);
    expect((await operator.client.request('DELETE', '/api/plugins/lineage/edges', { body: link })).status).toBe(204);
    expect((await operator.client.request('DELETE', '/api/plugins/lineage/edges', { body: link })).status).toBe(404);
  });

  it("shows a team's nodes only to its members", async () => {
    const red = (await core.client.post('/api/v1/teams', { name: 'red' })).body.id as string;
    const blue = (await core.client.post('/api/v1/teams', { name: 'blue' })).body.id as string;
    const none = (await core.client.post('/api/v1/roles', { name: 'Member', permissions: [] })).body.id as string;
    const rose = (await core.createUser('rose', [none], { teams: [{ team: 'red', roles: ['Operator'] }] })).client;
    // shared (no team) → red model → blue deployment → red variant behind it
    await service().recordMany([
      { from: { kind: 'datasets.version', id: 'shared', label: 'Shared data' }, to: { kind: 'models.version', id: 'red-m', team: red }, relation: 'trained-from' },
      { from: { kind: 'models.version', id: 'red-m' }, to: { kind: 'serving.revision', id: 'blue-r', team: blue }, relation: 'deployed-from' },
      { from: { kind: 'serving.revision', id: 'blue-r' }, to: { kind: 'models.variant', id: 'red-after-blue', team: red }, relation: 'derived-from' },
    ]);
    const seen = await graph('kind=datasets.version&id=shared&direction=down', rose);
    expect(seen.status).toBe(200);
    expect(ids(seen.body)).toEqual(['datasets.version:shared@0', 'models.version:red-m@1']);
    expect(seen.body.edges).toHaveLength(1);
    expect((await graph(`kind=serving.revision&id=blue-r`, rose)).status).toBe(404);
    expect((await rose.get('/api/plugins/lineage/nodes/serving.revision/blue-r')).status).toBe(404);
    expect((await rose.get('/api/plugins/lineage/nodes/models.version/red-m')).body).toMatchObject({ node: { team: red }, upstream: 1, downstream: 1 });
    // Writing a blue node needs lineage:write in blue.
    const res = await rose.post('/api/plugins/lineage/edges', { from: { kind: 'models.version', id: 'red-m' }, to: { kind: 'serving.revision', id: 'blue-r' }, relation: 'x-link' });
    expect(res.status).toBe(403);
    // Admins see all of it.
    expect(ids((await graph('kind=datasets.version&id=shared&direction=down')).body)).toHaveLength(4);
  });

  it('refuses bad input with a clear 4xx', async () => {
    const refused = async (query: string) => {
      const res = await graph(query);
      expect(res.status).toBe(400);
      return res.body.error.message as string;
    };
    expect(await refused('kind=a.b&id=1&direction=sideways')).toMatch(/^Invalid query: direction: must be one of/);
    expect(await refused('kind=a.b&id=1&depth=0')).toBe('Invalid query: depth: must be >= 1');
    expect(await refused('kind=a.b&id=1&depth=99')).toBe('Invalid query: depth: must be <= 20');
    expect(await refused('id=1')).toMatch(/kind/);
    expect(await refused('kind=Not%20A%20Kind&id=1')).toMatch(/kind/);
    expect((await graph('kind=nothing.here&id=1')).body).toEqual({ root: { kind: 'nothing.here', id: '1', team: null, route: null }, nodes: [{ kind: 'nothing.here', id: '1', team: null, route: null, depth: 0 }], edges: [], truncated: false });
    expect((await core.client.get('/api/plugins/lineage/nodes/nothing.here/1')).status).toBe(404);
    const bad = await core.client.post('/api/plugins/lineage/edges', { from: dataset, to: run });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/relation/);
    await expect(service().record({ from: { kind: '', id: 'x' }, to: run, relation: 'a' })).rejects.toThrow(/node kind/);
  });

  it('forgets a node', async () => {
    expect(await service().forget({ kind: 'models.version', id: 'fan-base' })).toBe(30);
    expect((await graph('kind=models.version&id=fan-base&direction=down')).body.nodes).toHaveLength(1);
  });
});
