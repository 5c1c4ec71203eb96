// What the serving plugin does with its replicas, whatever the runtime: against real replica
// processes of the test responder runtime (test/fixtures/responder-runtime, started and
// readiness-checked by the scheduler's local executor). A replica killed is kept out of rotation
// while the other serves, restarted, and the deployment is ready again; a revision whose replicas
// exit before they are ever ready fails with the reason and calls serving.deploymentFailed; stop
// stops every replica and start brings the live revision back; delete ends it.
// (The same on the CPU runtime with a real model: serving.test.ts covers deploy, change, rollback
// and canary there.)
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { API, chat, configOnlyModel, registerVersions, replicaPid, repo, servesOnly, waitDeployment } from './harness.js';

let core: TestCore;
let work: string;
let version: string;
let id: string;

describe('replicas of a deployment', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-replicas-'));
    const model = await configOnlyModel(path.join(work, 'm'));
    core = await startTestCore({
      plugins: [
        ...['models', 'serving'].map((p) => path.join(repo, 'plugins', p)),
        path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'responder-runtime'),
        path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'hook-probe'),
      ],
    });
    version = (await registerVersions(core, 'replica-model', work, [model])).versions[0]!;
    // A replica is unready for 2 s after each start: a restart is seen, not over between two polls.
    const res = await core.client.post(`${API}/deployments`, { name: 'chat', modelVersion: version, runtime: 'responder', replicas: 2, options: { tag: 'r1', readyAfterMs: 2000 } });
    expect(res.status, res.text).toBe(201);
    id = res.body.id;
    await waitDeployment(core, id, (d) => servesOnly(1)(d) && d.replicas.filter((r: any) => r.inRotation).length === 2, 60_000);
  }, 180_000);

  afterAll(async () => {
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it('a replica that dies is restarted and kept out of rotation meanwhile; the other replica serves', async () => {
    const workloadId = (await core.client.get(`${API}/deployments/${id}`)).body.revisions[0].workloadId as string;
    process.kill(replicaPid(core, workloadId, 0), 'SIGKILL');
    const degraded = await waitDeployment(core, id, (d) => d.replicas.some((r: any) => r.replica === 0 && !r.inRotation), 30_000);
    expect(degraded.state).toBe('degraded');
    // Meanwhile every request goes to replica 1.
    for (let i = 0; i < 5; i++) {
      const a = await chat(core, 'chat', 'hi', { max_tokens: 1 });
      expect(a.status, a.text).toBe(200);
      expect(a.headers.get('x-aiplat-replica')!).toBe('1');
    }
    const back = await waitDeployment(core, id, (d) => d.state === 'ready' && d.replicas.filter((r: any) => r.inRotation).length === 2, 60_000);
    expect(back.replicas.find((r: any) => r.replica === 0).restarts).toBe(1);
    expect(back.revisions[0].state).toBe('ready');
  });

  it('a revision whose replicas keep exiting fails with the reason and calls serving.deploymentFailed', async () => {
    const failed = await core.client.post(`${API}/deployments`, { name: 'broken', modelVersion: version, runtime: 'responder', options: { crash: true } });
    expect(failed.status, failed.text).toBe(201);
    const down = await waitDeployment(core, failed.body.id, (d) => d.state === 'failed', 90_000);
    expect(down.reason).toMatch(/revision 1 failed: its replicas exited 3 times before they were ready/);
    expect(down.revisions[0]).toMatchObject({ number: 1, state: 'failed' });
    expect(down.replicas).toEqual([]);
    expect((await chat(core, 'broken')).status).toBe(503);
    const seen = (await core.client.get('/api/plugins/serving-hook-probe/seen')).body.items as any[];
    expect(seen.find((e) => e.hook === 'deploymentFailed' && e.deployment === failed.body.id)).toMatchObject({ revision: 1, state: 'failed' });
    expect(seen.some((e) => e.hook === 'deploymentReady' && e.deployment === id && e.revision === 1)).toBe(true);
    expect((await core.client.delete(`${API}/deployments/${failed.body.id}`)).status).toBe(204);
  });

  it('stop stops every replica, start brings the live revision back, delete ends it', async () => {
    const stopped = await core.client.post(`${API}/deployments/${id}/stop`);
    expect(stopped.status, stopped.text).toBe(200);
    expect(stopped.body).toMatchObject({ state: 'stopped', replicas: [] });
    const refused = await chat(core, 'chat');
    expect(refused.status).toBe(503);
    expect(refused.body.error.message).toMatch(/stopped/);
    const started = await core.client.post(`${API}/deployments/${id}/start`);
    expect(started.status, started.text).toBe(200);
    await waitDeployment(core, id, servesOnly(1), 60_000);
    expect((await chat(core, 'chat')).status).toBe(200);
    const deleted = await core.client.delete(`${API}/deployments/${id}`);
    expect(deleted.status).toBe(204);
    expect((await core.client.get(`${API}/deployments/${id}`)).status).toBe(404);
    expect((await chat(core, 'chat')).status).toBe(404);
  });
});
