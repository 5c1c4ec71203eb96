/**
 * The npm endpoint for the @aiplat scope: registry/scripts/pack-sdk.mjs packs the workspaces into
 * a data folder, the registry serves their packuments and tarballs, and a project outside this
 * repository installs @aiplat/plugin-sdk and @aiplat/testing through it with a real `npm install`
 * (other packages come from the public npm registry; about 20 s with a warm npm cache).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningRegistry } from '../src/server.js';
import { getJson, removeTempDirs, startTestRegistry, tempDir, untarGz } from './helpers.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const workspace = (dir: string) => JSON.parse(readFileSync(path.join(ROOT, dir, 'package.json'), 'utf8')) as Record<string, any>;

let registry: RunningRegistry;
let dataDir: string;

beforeAll(async () => {
  dataDir = tempDir('npm');
  execFileSync(process.execPath, [path.join(ROOT, 'registry/scripts/pack-sdk.mjs'), '--data-dir', dataDir], { cwd: ROOT, stdio: 'pipe' });
  registry = await startTestRegistry(dataDir, []);
});

afterAll(async () => {
  await registry?.close();
  await removeTempDirs();
});

describe('the @aiplat npm scope', () => {
  it('serves a packument for each packed workspace, by either form of the name', async () => {
    for (const [dir, encoded] of [
      ['plugin-sdk', '@aiplat%2fplugin-sdk'],
      ['plugin-sdk/testing', '@aiplat/testing'],
      ['core', '@aiplat%2Fcore'],
    ] as const) {
      const pkg = workspace(dir);
      const res = await getJson(`${registry.url}/npm/${encoded}`);
      expect(res.status, encoded).toBe(200);
      expect(res.body).toMatchObject({ name: pkg.name, 'dist-tags': { latest: pkg.version } });
      const v = res.body.versions[pkg.version];
      expect(v).toMatchObject({ name: pkg.name, version: pkg.version, dependencies: pkg.dependencies });
      expect(v.peerDependencies).toEqual(pkg.peerDependencies);
      expect(v.peerDependenciesMeta).toEqual(pkg.peerDependenciesMeta);
      expect(v.dist.tarball).toMatch(new RegExp(`^${registry.url}/npm/-/aiplat-[a-z-]+-${pkg.version.replace(/\./g, '\\.')}\\.tgz$`));

      // The tarball: byte-identical to what the integrity and shasum say, holding this package.json.
      const tarball = Buffer.from(await (await fetch(v.dist.tarball)).arrayBuffer());
      expect(`sha512-${createHash('sha512').update(tarball).digest('base64')}`).toBe(v.dist.integrity);
      expect(createHash('sha1').update(tarball).digest('hex')).toBe(v.dist.shasum);
      const files = await untarGz(tarball);
      expect(JSON.parse(files.get('package/package.json')!.toString('utf8'))).toMatchObject({ name: pkg.name, version: pkg.version });
    }
  });

  it('keeps dependencies between the workspaces as plain versions', async () => {
    const testing = (await getJson(`${registry.url}/npm/@aiplat%2ftesting`)).body;
    const v = testing.versions[workspace('plugin-sdk/testing').version];
    expect(v.dependencies['@aiplat/core']).toBe(workspace('core').version);
    expect(v.dependencies['@aiplat/plugin-sdk']).toBe(workspace('plugin-sdk').version);
  });

  it('answers 404, saying why, for other scopes, unknown packages and unknown tarballs', async () => {
    const otherScope = await getJson(`${registry.url}/npm/@vue%2freactivity`);
    expect(otherScope.status).toBe(404);
    expect(otherScope.body.error.message).toMatch(/serves only the @aiplat scope.*@aiplat:registry=/);
    const unknown = await getJson(`${registry.url}/npm/@aiplat%2fnothing`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toMatch(/Package @aiplat\/nothing is not on this registry/);
    expect((await fetch(`${registry.url}/npm/-/..%2fpackages.json`)).status).toBe(404);
    expect((await fetch(`${registry.url}/npm/-/packages.json`)).status).toBe(404);
    expect((await fetch(`${registry.url}/npm/@aiplat%2fcore`, { method: 'PUT', body: '{}' })).status).toBe(400);
  });

  it('installs @aiplat/plugin-sdk and @aiplat/testing into a project outside the repository with npm', async () => {
    const npmRegistry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim().replace(/\/?$/, '/');
    const reachable = await fetch(`${npmRegistry}-/ping`, { signal: AbortSignal.timeout(15_000) }).then(
      (r) => r.status < 500,
      () => false,
    );
    expect(reachable, `the npm registry ${npmRegistry} (for the packages outside @aiplat) cannot be reached from this machine`).toBe(true);

    const project = tempDir('outside');
    await writeFile(path.join(project, '.npmrc'), `@aiplat:registry=${registry.url}/npm/\naudit=false\nfund=false\nupdate-notifier=false\n`);
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'outside-plugin', version: '0.0.0', private: true, type: 'module' }));
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      // Settings of an npm that started this test (npm run …) stay out: the project is on its own.
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
      const child = spawn('npm', ['install', '@aiplat/plugin-sdk', '@aiplat/testing', '--prefer-offline'], { cwd: project, env });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (out += c));
      child.on('close', (c) => resolve({ code: c, output: out }));
    });
    expect(code, output).toBe(0);
    for (const [name, dir] of [
      ['plugin-sdk', 'plugin-sdk'],
      ['testing', 'plugin-sdk/testing'],
      ['core', 'core'],
    ] as const) {
      const installed = JSON.parse(await readFile(path.join(project, 'node_modules/@aiplat', name, 'package.json'), 'utf8'));
      expect(installed.version).toBe(workspace(dir).version);
    }
    const lock = JSON.parse(await readFile(path.join(project, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/@aiplat/testing'].integrity).toBe((await getJson(`${registry.url}/npm/@aiplat%2ftesting`)).body.versions[workspace('plugin-sdk/testing').version].dist.integrity);
    // The SDK's own dependencies came from the public registry.
    expect(JSON.parse(await readFile(path.join(project, 'node_modules/knex/package.json'), 'utf8')).name).toBe('knex');
  }, 180_000);
});
