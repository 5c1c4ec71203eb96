// The gateway's meter on its own, against the real usage table (a test core with the serving plugin
// made it): usage rows per minute, revision and caller, added up across flushes and minutes and kept
// through a flush that fails; the Prometheus series per deployment name, revision and outcome.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import type { Knex, MetricSample } from '@aiplat/plugin-sdk';
import { Meter, type Caller, type Sample } from '../src/meter.js';
import { T } from '../src/store.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MINUTE = Date.parse('2026-11-27T10:00:00.000Z');

describe('the gateway meter', () => {
  let core: TestCore;
  let db: Knex;

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['models', 'serving'].map((p) => path.join(repo, 'plugins', p)) });
    db = core.core.database.knex;
  }, 120_000);
  afterAll(async () => {
    await core?.stop();
  });
  afterEach(async () => {
    vi.useRealTimers();
    await db(T.usage).delete();
  });

  const key: Caller = { keyId: 'key-1', userId: null, name: 'ci key', team: 'team-key' };
  const sample = (over: Partial<Sample>): Sample => ({
    deploymentId: 'dep-1',
    team: 'team-deployment',
    revision: 1,
    caller: key,
    status: 200,
    error: false,
    latencyMs: 10,
    ttftMs: null,
    promptTokens: 3,
    completionTokens: 2,
    ...over,
  });
  const rows = async () =>
    ((await db(T.usage).orderBy(['minute', 'revision', 'user_id']).select()) as Record<string, unknown>[]).map((r) => ({
      minute: new Date(r.minute as string).toISOString(),
      revision: r.revision,
      team: r.team_id,
      key: r.key_id,
      user: r.user_id,
      requests: Number(r.requests),
      errors: Number(r.errors),
      prompt: Number(r.prompt_tokens),
      completion: Number(r.completion_tokens),
    }));

  it('adds a key’s calls into one row per minute and revision, across flushes and minutes; a user’s calls bill the deployment’s team', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(MINUTE + 1_000);
    const meter = new Meter();
    meter.record(sample({}));
    meter.record(sample({ status: 500, error: true, completionTokens: 0 }));
    meter.record(sample({ revision: 2 }));
    meter.record(sample({ caller: { keyId: null, userId: 'user-1', name: 'ada', team: 'team-of-ada' } }));
    await meter.flush(db);
    // The same minute again after the flush: added to the stored row.
    meter.record(sample({}));
    await meter.flush(db);
    // The next minute: a row of its own.
    vi.setSystemTime(MINUTE + 61_000);
    meter.record(sample({ promptTokens: 10 }));
    await meter.flush(db);

    const m0 = new Date(MINUTE).toISOString();
    const m1 = new Date(MINUTE + 60_000).toISOString();
    expect(await rows()).toEqual([
      { minute: m0, revision: 1, team: 'team-key', key: 'key-1', user: '', requests: 3, errors: 1, prompt: 9, completion: 4 },
      { minute: m0, revision: 1, team: 'team-deployment', key: '', user: 'user-1', requests: 1, errors: 0, prompt: 3, completion: 2 },
      { minute: m0, revision: 2, team: 'team-key', key: 'key-1', user: '', requests: 1, errors: 0, prompt: 3, completion: 2 },
      { minute: m1, revision: 1, team: 'team-key', key: 'key-1', user: '', requests: 1, errors: 0, prompt: 10, completion: 2 },
    ]);
  });

  it('keeps what a failed flush held and counts it with the next one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(MINUTE + 5_000);
    const meter = new Meter();
    meter.record(sample({}));
    meter.record(sample({}));
    await db.schema.renameTable(T.usage, `${T.usage}_away`);
    try {
      await expect(meter.flush(db)).rejects.toThrow();
    } finally {
      await db.schema.renameTable(`${T.usage}_away`, T.usage);
    }
    // Calls after the failure land on the kept row, not on one the failed flush took away.
    meter.record(sample({ completionTokens: 5 }));
    await meter.flush(db);
    expect(await rows()).toEqual([{ minute: new Date(MINUTE).toISOString(), revision: 1, team: 'team-key', key: 'key-1', user: '', requests: 3, errors: 0, prompt: 9, completion: 9 }]);
  });

  it('counts Prometheus series per deployment name, revision and outcome, and follows a new name', () => {
    const meter = new Meter();
    meter.record(sample({ latencyMs: 1_000 }));
    meter.record(sample({ status: 429 }));
    meter.record(sample({ status: 502, error: true }));
    meter.names.set('dep-1', 'tiny-chat');
    meter.record(sample({ latencyMs: 500 }));
    const p = meter.prometheus();
    const find = (list: MetricSample[], labels: Record<string, string>, suffix?: string) =>
      list.find((s) => s.suffix === suffix && Object.entries(labels).every(([k, v]) => s.labels?.[k] === v) && Object.keys(s.labels ?? {}).length === Object.keys(labels).length)?.value;
    expect(find(p.requests, { deployment: 'dep-1', revision: '1', outcome: 'ok' })).toBe(1);
    expect(find(p.requests, { deployment: 'dep-1', revision: '1', outcome: '4xx' })).toBe(1);
    expect(find(p.requests, { deployment: 'dep-1', revision: '1', outcome: 'error' })).toBe(1);
    expect(find(p.requests, { deployment: 'tiny-chat', revision: '1', outcome: 'ok' })).toBe(1);
    // An outcome that never happened has no series.
    expect(find(p.requests, { deployment: 'tiny-chat', revision: '1', outcome: 'error' })).toBeUndefined();
    expect(find(p.tokens, { deployment: 'dep-1', revision: '1', kind: 'prompt' })).toBe(9);
    expect(find(p.tokens, { deployment: 'tiny-chat', revision: '1', kind: 'completion' })).toBe(2);
    expect(find(p.duration, { deployment: 'dep-1', revision: '1' }, '_sum')).toBeCloseTo(1.02, 10);
    expect(find(p.duration, { deployment: 'dep-1', revision: '1' }, '_count')).toBe(3);
    expect(find(p.duration, { deployment: 'tiny-chat', revision: '1' }, '_count')).toBe(1);
  });
});
