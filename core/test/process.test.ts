import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestClient } from '@aiplat/testing';
import { spawnCore, type SpawnedCore } from './helpers/spawn-core.js';

const PASSWORD = 'process-test-password-1';

async function signIn(url: string, password = PASSWORD): Promise<TestClient> {
  const res = await new TestClient(url).post('/api/v1/auth/login', { username: 'admin', password });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${res.text}`);
  return new TestClient(url, res.body.accessToken);
}

describe('the core as a process', () => {
  const dirs: string[] = [];
  const cores: SpawnedCore[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-proc-'));
    dirs.push(dir);
    return dir;
  };
  const start = (env: Record<string, string | undefined>) => {
    // The embedded database is what these tests are about: a real server is never named here.
    const core = spawnCore({ AIPLAT_PLUGIN_DIRS: 'examples', DATABASE_URL: '', REDIS_URL: '', ...env });
    cores.push(core);
    return core;
  };
  afterEach(async () => {
    for (const core of cores.splice(0)) {
      if (core.child.exitCode === null && core.child.signalCode === null) {
        core.child.kill('SIGKILL');
        await core.exited;
      }
    }
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('prints a generated admin password once, on the first start only', async () => {
    const dir = dataDir();
    const first = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: undefined });
    const url = await first.url;
    const password = /password: (\S+)/.exec(first.stderr())?.[1];
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);
    await signIn(url, password);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(first.stdout()).toContain('"msg":"stopped"');

    const second = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: undefined });
    await signIn(await second.url, password);
    expect(second.stderr()).not.toContain('password:');
  });

  it('refuses a second process on the same data folder at once, naming the first one\'s pid', async () => {
    const dir = dataDir();
    const first = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: PASSWORD });
    await first.url;
    const started = Date.now();
    const second = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: PASSWORD });
    const exit = await second.exited;
    expect(exit.code).toBe(3);
    expect(second.stderr()).toContain(`data folder in use by pid ${first.child.pid}`);
    expect(Date.now() - started).toBeLessThan(10_000);
    // the first keeps serving
    const health = await new TestClient(await first.url).get('/api/v1/health');
    expect(health.status).toBe(200);
  });

  it('reports every bad setting at once and exits with code 2', async () => {
    const bad = start({ AIPLAT_DATA_DIR: dataDir(), PORT: 'eighty', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x', AIPLAT_ADMIN_PASSWORD: 'short' });
    const exit = await bad.exited;
    expect(exit.code).toBe(2);
    const err = bad.stderr();
    expect(err).toContain('PORT is "eighty": expected a TCP port number between 0 and 65535');
    expect(err).toContain('LOG_LEVEL is "loud": expected one of fatal, error, warn, info, debug, trace, silent');
    expect(err).toContain('AIPLAT_ADMIN_PASSWORD is (hidden): expected at least 12 characters');
    expect(err).toContain('DATABASE_URL is "mysql://x": expected a PostgreSQL URL');
  });

  it('drains a request in flight on SIGTERM, then exits 0', async () => {
    const core = start({ AIPLAT_DATA_DIR: dataDir(), AIPLAT_ADMIN_PASSWORD: PASSWORD });
    const client = await signIn(await core.url);
    // a slow upload: the body arrives after SIGTERM
    const url = new URL('/api/plugins/hello/greetings', await core.url);
    const body = new ReadableStream({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode('{"name":'));
        await new Promise((r) => setTimeout(r, 500));
        controller.enqueue(new TextEncoder().encode('"Drain"}'));
        controller.close();
      },
    });
    const pending = fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${client.token}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    await new Promise((r) => setTimeout(r, 150));
    core.child.kill('SIGTERM');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ greeting: 'HELLO, DRAIN', count: 1 });
    expect((await core.exited).code).toBe(0);
    const log = core.stdout();
    const stops = [...log.matchAll(/"plugin":"([a-z-]+)","msg":"plugin stopped"/g)].map((m) => m[1]);
    expect(stops).toEqual(['hello-shout', 'hello']);
  });

  it('opens the data folder cleanly after a kill -9 during writes, keeping every acknowledged write', async () => {
    const dir = dataDir();
    const first = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: PASSWORD });
    const client = await signIn(await first.url);
    let acknowledged = 0;
    let stop = false;
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          const res = await client.post('/api/plugins/hello/greetings', { name: 'Crash' });
          if (res.status === 200) acknowledged = Math.max(acknowledged, res.body.count as number);
        } catch {
          return;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1500));
    first.child.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    await first.exited;
    expect(acknowledged).toBeGreaterThan(5);

    const second = start({ AIPLAT_DATA_DIR: dir, AIPLAT_ADMIN_PASSWORD: PASSWORD });
    const again = await signIn(await second.url);
    expect((await again.get('/api/v1/health')).body.status).toBe('ok');
    const next = await again.post('/api/plugins/hello/greetings', { name: 'Crash' });
    expect(next.status).toBe(200);
    // every acknowledged write survived; at most the writes in flight at the kill may also have landed
    expect(next.body.count).toBeGreaterThanOrEqual(acknowledged + 1);
    expect(next.body.count).toBeLessThanOrEqual(acknowledged + 1 + 4);
  });
});
