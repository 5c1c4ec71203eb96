/**
 * `aiplat-plugin create`: a scaffold outside the repository that passes its own tests, builds and
 * packs on first run. To stay fast and offline, its dependencies are linked from this repository
 * instead of installed (scripts/scaffold-smoke.sh does the real `npm install`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPackage, readPackage, verifyPackage } from '@aiplat/plugin-sdk/package';
import { startTestCore } from '@aiplat/testing';
import { REPO, linkDependencies, run, runCli } from './helpers.js';

describe('aiplat-plugin create', () => {
  let tmp: string;
  let demo: string;
  const env = () => ({ NO_COLOR: '1', PATH: `${path.join(REPO, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}` });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'aiplat-create-'));
    const res = await runCli(['create', 'demo'], { cwd: tmp });
    expect(res.code, res.stderr).toBe(0);
    demo = path.join(tmp, 'demo');
    expect(res.stdout.trim()).toBe(demo);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('writes the plugin: manifest, backend, UI, test, docs and config', () => {
    const files = [
      '.gitignore',
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'aiplat-plugin.json',
      'package.json',
      'src/index.ts',
      'test/demo.test.ts',
      'tsconfig.json',
      'vitest.config.ts',
      'web/src/ItemsPage.vue',
      'web/src/index.ts',
      'web/vite.config.ts',
    ];
    for (const file of files) expect(existsSync(path.join(demo, file)), file).toBe(true);
    expect(existsSync(path.join(demo, '.npmrc'))).toBe(false);
    const manifest = JSON.parse(readFileSync(path.join(demo, 'aiplat-plugin.json'), 'utf8'));
    expect(manifest).toMatchObject({ id: 'demo', version: '0.1.0', engines: { aiplat: '^1.0.0' }, permissions: [{ id: 'demo:read' }], backend: { entry: 'src/index.ts' } });
    expect(manifest.web.contributions.map((c: { kind: string }) => c.kind)).toEqual(['page', 'nav']);
    const pkg = JSON.parse(readFileSync(path.join(demo, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ type: 'module', dependencies: { '@aiplat/plugin-sdk': '^0.1.0' }, devDependencies: { '@aiplat/cli': '^0.1.0', '@aiplat/testing': '^0.1.0' } });
    expect(pkg.scripts).toMatchObject({ build: 'aiplat-plugin build', test: 'vitest run', dev: 'aiplat-plugin dev', pack: 'aiplat-plugin pack', publish: 'aiplat-plugin publish .' });
    const sdkPeers = JSON.parse(readFileSync(path.join(REPO, 'plugin-sdk', 'package.json'), 'utf8')).peerDependencies as Record<string, string>;
    for (const peer of ['vite', '@vitejs/plugin-vue', '@module-federation/vite', 'unplugin-vue-components', 'vue', 'element-plus']) expect(pkg.devDependencies[peer]).toBe(sdkPeers[peer]);
    expect(readFileSync(path.join(demo, 'src', 'index.ts'), 'utf8')).toContain("'p_demo_items'");
    expect(readFileSync(path.join(demo, 'LICENSE'), 'utf8')).toContain('Apache License');
  });

  it('passes its own tests and type check, builds and packs (dependencies linked from this repository)', async () => {
    const linked = linkDependencies(demo);
    expect(linked).toContain('vitest');
    const test = await run('npm', ['test'], { cwd: demo, env: env() });
    expect(test.code, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/Tests\s+3 passed/);

    const typecheck = await run('npm', ['run', 'typecheck'], { cwd: demo, env: env() });
    expect(typecheck.code, typecheck.stdout + typecheck.stderr).toBe(0);

    const build = await run('npm', ['run', 'build'], { cwd: demo, env: env() });
    expect(build.code, build.stdout + build.stderr).toBe(0);
    expect(existsSync(path.join(demo, 'dist', 'backend', 'index.js'))).toBe(true);
    expect(existsSync(path.join(demo, 'web', 'dist', 'remoteEntry.js'))).toBe(true);

    const pack = await run('npm', ['run', 'pack', '--', '--no-build'], { cwd: demo, env: env() });
    expect(pack.code, pack.stdout + pack.stderr).toBe(0);
    expect(pack.stderr).not.toContain('warning');
    const tgz = path.join(demo, 'demo-0.1.0.tgz');
    const contents = await readPackage(tgz);
    const files = contents.files.map((f) => f.path);
    expect(files.filter((f) => !f.startsWith('web/dist/'))).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'aiplat-plugin.json', 'dist/backend/index.js', 'dist/backend/index.js.map']);
    expect(files).toContain('web/dist/remoteEntry.js');
    expect(verifyPackage(contents, []).status).toBe('unsigned');

    // The package, extracted beside the SDK link the host provides, runs in a core.
    const installed = path.join(tmp, 'installed');
    mkdirSync(path.join(installed, 'node_modules', '@aiplat'), { recursive: true });
    symlinkSync(path.join(REPO, 'plugin-sdk'), path.join(installed, 'node_modules', '@aiplat', 'plugin-sdk'), 'dir');
    await extractPackage(tgz, path.join(installed, 'demo'));
    const core = await startTestCore({ plugins: [path.join(installed, 'demo')] });
    try {
      expect((await core.client.get('/api/plugins/demo/items')).body).toEqual({ items: [] });
    } finally {
      await core.stop();
    }
  });

  it('--registry: .npmrc takes the @aiplat scope from <registry>/npm/ and npm run publish goes there', async () => {
    const res = await runCli(['create', 'my-tool', '--dir', path.join(tmp, 'elsewhere'), '--registry', 'https://plugins.example.com/'], { cwd: tmp });
    expect(res.code, res.stderr).toBe(0);
    expect(readFileSync(path.join(tmp, 'elsewhere', '.npmrc'), 'utf8')).toBe('@aiplat:registry=https://plugins.example.com/npm/\n');
    const pkg = JSON.parse(readFileSync(path.join(tmp, 'elsewhere', 'package.json'), 'utf8'));
    expect(pkg.scripts.publish).toBe('aiplat-plugin publish . --registry https://plugins.example.com');
    expect(JSON.parse(readFileSync(path.join(tmp, 'elsewhere', 'aiplat-plugin.json'), 'utf8')).displayName.en).toBe('My tool');
    expect(readFileSync(path.join(tmp, 'elsewhere', 'src', 'index.ts'), 'utf8')).toContain("'p_my_tool_items'");
  });

  it('refuses a name that is no plugin id (exit 2) and a folder that is not empty', async () => {
    const bad = await runCli(['create', 'Demo_1'], { cwd: tmp });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"Demo_1" is not a plugin id');
    const again = await runCli(['create', 'demo'], { cwd: tmp });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists and is not empty');
  });
});
