import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, preparedDataDir, startTestCore, type TestCore } from '@aiplat/testing';
import { spawnCore, REPO_ROOT } from './helpers/spawn-core.js';

const PLUGINS = ['core/test/fixtures/settings-plugins'];
const OLD_KEY = 'rotation-test-old-key-0123456789-abcdefgh';
const NEW_KEY = 'rotation-test-new-key-9876543210-zyxwvuts';
const API_KEY = 'sk-rotate-CANARY-0b8e4d2a61';
const TOKEN = 'restart-probe-CANARY-token';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('the master key: start-up checks and rotation', () => {
  let dataDir: string;
  let databaseUrl: string | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  let core: TestCore | undefined;

  const start = (secretKey: string | undefined) =>
    startTestCore({ plugins: PLUGINS, dataDir, databaseUrl, config: { secretKey } });
  const stop = async () => {
    await core?.stop({ keep: true });
    core = undefined;
  };
  /** `npm run secrets:rotate` on this test's data folder and database. */
  const rotate = (keys: { current?: string; next?: string }) =>
    new Promise<Run>((resolve) => {
      execFile(
        'npm',
        ['run', '--silent', 'secrets:rotate'],
        {
          cwd: REPO_ROOT,
          env: {
            ...process.env,
            AIPLAT_CONFIG_FILE: '',
            AIPLAT_DATA_DIR: dataDir,
            DATABASE_URL: databaseUrl ?? '',
            AIPLAT_SECRET_KEY: keys.current ?? '',
            AIPLAT_NEW_SECRET_KEY: keys.next ?? '',
          },
          timeout: 60_000,
        },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const seen = async () => (await core!.client.get('/api/plugins/secret-probe/seen')).body;

  beforeAll(async () => {
    dataDir = await preparedDataDir();
    if (process.env.AIPLAT_TEST_DATABASE === 'postgres') {
      const created = await createTestDatabase();
      databaseUrl = created.url;
      dropDatabase = created.drop;
    }
    core = await start(OLD_KEY);
    expect((await core.client.put('/api/v1/plugins/secret-probe/config', { apiKey: API_KEY, smtp: { password: 'second-secret-value' } })).status).toBe(200);
    expect((await core.client.put('/api/v1/plugins/restart-probe/config', { token: TOKEN })).status).toBe(200);
    await stop();
  });
  afterAll(async () => {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
    await dropDatabase?.();
  });

  it('refuses to start with a wrong key, naming both key ids', async () => {
    const failure = start('a-completely-different-master-key-0000000000');
    await expect(failure).rejects.toThrow(/^AIPLAT_SECRET_KEY does not match the key the stored secrets were encrypted with \(key id [0-9a-f]{8}, expected [0-9a-f]{8}\)\.$/);
  });

  it('refuses to start without the key while secrets are stored, saying how many need it', async () => {
    await expect(start(undefined)).rejects.toThrow(
      'AIPLAT_SECRET_KEY is not set, but 3 stored secrets need it (plugin settings of restart-probe, secret-probe). Set AIPLAT_SECRET_KEY to the key they were encrypted with',
    );
  });

  it('`npm start` prints the key error and exits', async () => {
    const spawned = spawnCore({
      AIPLAT_DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl ?? '',
      REDIS_URL: '',
      AIPLAT_PLUGIN_DIRS: PLUGINS[0],
      AIPLAT_SECRET_KEY: 'yet-another-wrong-master-key-111111111111',
      AIPLAT_ADMIN_PASSWORD: 'process-test-password-1',
    });
    const exited = await spawned.exited;
    expect(exited.code).toBe(4);
    expect(spawned.stderr()).toMatch(/^aiplat: cannot start: AIPLAT_SECRET_KEY does not match the key the stored secrets were encrypted with \(key id [0-9a-f]{8}, expected [0-9a-f]{8}\)\.\n$/);
  });

  it('refuses to rotate while the core runs on the data folder', async () => {
    core = await start(OLD_KEY);
    const refused = await rotate({ current: OLD_KEY, next: NEW_KEY });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('refusing to rotate while the core runs: data folder in use by pid');
    expect((await seen()).config.apiKey).toBe(API_KEY);
    await stop();
  });

  it('refuses to rotate with a wrong current key or a missing new key, changing nothing', async () => {
    const wrong = await rotate({ current: 'not-the-current-master-key-22222222222222', next: NEW_KEY });
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toMatch(/AIPLAT_SECRET_KEY does not match the key the stored secrets were encrypted with .* Nothing was changed\./);
    const missing = await rotate({ current: OLD_KEY });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('set AIPLAT_NEW_SECRET_KEY to the new key, at least 32 characters');
    const same = await rotate({ current: OLD_KEY, next: OLD_KEY });
    expect(same.code).toBe(4);
    expect(same.stderr).toContain('is the same key as AIPLAT_SECRET_KEY');
  });

  it('rotates every secret to the new key: the plugins still see them, the old key no longer starts the core', async () => {
    const rotated = await rotate({ current: OLD_KEY, next: NEW_KEY });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/^aiplat: re-encrypted 3 secrets \(plugin settings of restart-probe, secret-probe\) with the new key: key id [0-9a-f]{8} → [0-9a-f]{8}\.\n/);

    core = await start(NEW_KEY);
    expect((await seen()).config).toMatchObject({ apiKey: API_KEY, smtp: { password: 'second-secret-value' } });
    expect((await core.client.get('/api/plugins/restart-probe/seen')).body.config.token).toBe(TOKEN);
    const view = await core.client.get('/api/v1/plugins/secret-probe/config');
    expect(view.body.secrets).toEqual({ apiKey: { set: true }, 'smtp.password': { set: true } });
    expect(view.text).not.toContain(API_KEY);
    // New secrets are written with the new key too.
    expect((await core.client.put('/api/v1/plugins/secret-probe/config', { apiKey: `${API_KEY}-2` })).status).toBe(200);
    await stop();

    await expect(start(OLD_KEY)).rejects.toThrow(/does not match the key the stored secrets were encrypted with/);
    await expect(start(undefined)).rejects.toThrow(/AIPLAT_SECRET_KEY is not set, but 3 stored secrets need it/);
    core = await start(NEW_KEY);
    expect((await seen()).config.apiKey).toBe(`${API_KEY}-2`);
  });
});
