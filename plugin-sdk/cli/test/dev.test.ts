/**
 * `aiplat-plugin dev`: a core with the plugin, restarted when its src/ changes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, copyPlugin, REPO, scratch } from './helpers.js';

const manifest = {
  id: 'dev-probe',
  version: '0.1.0',
  displayName: { en: 'Dev probe', 'zh-CN': 'Dev probe' },
  engines: { aiplat: '^1.0.0' },
  backend: { entry: 'src/index.ts' },
};

const source = (answer: string) => `import { definePlugin } from '@aiplat/plugin-sdk';
export default definePlugin({
  register(env) {
    env.route({ method: 'GET', path: '/ping', public: { reason: 'a probe of the dev command' }, handler: () => ({ answer: '${answer}' }) });
  },
});
`;

describe('aiplat-plugin dev', () => {
  let work: ReturnType<typeof scratch>;
  let plugin: string;
  let child: ChildProcess;
  let stdout = '';
  let stderr = '';
  let exited: Promise<number | null>;

  /** Wait until the dev command has announced `count` cores; the URL of the last. */
  async function running(count: number): Promise<string> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const urls = [...stdout.matchAll(/is running in a core at (http:\/\/\S+)/g)].map((m) => m[1]!);
      if (urls.length >= count) return urls[count - 1]!;
      if (Date.now() > deadline) throw new Error(`no core after 120 s:\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait until stderr matches: the dev command writes to stdout and stderr, two pipes that arrive here in either order. */
  async function inStderr(pattern: RegExp): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!pattern.test(stderr)) {
      if (Date.now() > deadline) throw new Error(`stderr does not match ${String(pattern)} after 10 s:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(() => {
    work = scratch();
    plugin = path.join(work.dir, 'dev-probe');
    mkdirSync(path.join(plugin, 'src'), { recursive: true });
    writeFileSync(path.join(plugin, 'aiplat-plugin.json'), JSON.stringify(manifest, null, 2));
    writeFileSync(path.join(plugin, 'src', 'index.ts'), source('one'));
    child = spawn(process.execPath, [BIN, 'dev', plugin, '--port', '0'], { cwd: work.dir, env: cleanEnv({ LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  });
  afterAll(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    work?.remove();
  });

  it('starts a core with the plugin and says how to sign in', async () => {
    const url = await running(1);
    const health = await fetch(`${url}/api/v1/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', pluginApi: '1.0.0' });
    expect(await (await fetch(`${url}/api/plugins/dev-probe/ping`)).json()).toEqual({ answer: 'one' });
    await inStderr(/sign in as admin, password "aiplat-dev-admin"/);
    expect(existsSync(path.join(plugin, '.aiplat-dev'))).toBe(true);
  });

  it('restarts the core when a file under src/ changes', async () => {
    await running(1);
    writeFileSync(path.join(plugin, 'src', 'index.ts'), source('two'));
    const url = await running(2);
    await inStderr(/a change: restarting the core/);
    expect((await fetch(`${url}/api/v1/health`)).status).toBe(200);
    expect(await (await fetch(`${url}/api/plugins/dev-probe/ping`)).json()).toEqual({ answer: 'two' });
  });

  it('says when the plugin fails to load, and keeps watching', async () => {
    await running(2);
    writeFileSync(path.join(plugin, 'src', 'index.ts'), `${source('three')}\nthrow new Error('broken on purpose');\n`);
    const url = await running(3);
    await inStderr(/warning: dev-probe is not enabled \(failed\): .*broken on purpose/);
    expect((await fetch(`${url}/api/v1/health`)).status).toBe(200);
  });

  it('stops the core and exits on SIGTERM', async () => {
    const url = await running(3);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await expect(fetch(`${url}/api/v1/health`)).rejects.toThrow();
  });
});

describe('aiplat-plugin dev with a UI', () => {
  let work: ReturnType<typeof scratch>;
  let plugin: string;
  let child: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;

  async function until(check: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 120_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`${what}: not after 120 s\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const assetsHolding = (text: string) => {
    const dir = path.join(plugin, 'web', 'dist', 'assets');
    return existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.js') && readFileSync(path.join(dir, f), 'utf8').includes(text));
  };

  beforeAll(() => {
    work = scratch();
    plugin = copyPlugin(path.join(REPO, 'examples', 'hello'), work.dir);
    child = spawn(process.execPath, [BIN, 'dev', plugin, '--port', '0'], { cwd: work.dir, env: cleanEnv({ LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  });
  afterAll(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    work?.remove();
  });

  it('builds the UI remote and rebuilds it when web/ changes', async () => {
    await until(() => /is running in a core at/.test(output) && existsSync(path.join(plugin, 'web', 'dist', 'remoteEntry.js')), 'the core and the UI build');
    expect(assetsHolding('Greet someone')).toBe(true);
    const locale = path.join(plugin, 'web', 'src', 'locales', 'en.ts');
    writeFileSync(locale, readFileSync(locale, 'utf8').replace("'Greet someone'", "'Say hello to someone'"));
    await until(() => assetsHolding('Say hello to someone'), 'the UI rebuild');
    // A change under web/ rebuilds the UI, it does not restart the core.
    expect(output).not.toContain('restarting the core');
  });
});
