/**
 * `aiplat-plugin build` and `pack` on the repository's own plugins and examples, run as a person
 * would (a real process), each on a copy outside the repository so the checkout is left as it is.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPackage, readPackage, verifyPackage } from '@aiplat/plugin-sdk/package';
import { startTestCore, TestClient, type TestCore } from '@aiplat/testing';
import { copyPlugin, REPO, runCli, scratch, startDevCore } from './helpers.js';

/** Every first-party plugin and example: plugins/* and examples/* holding aiplat-plugin.json. */
function firstPartyPlugins(): string[] {
  const found: string[] = [];
  for (const parent of ['plugins', 'examples']) {
    for (const name of readdirSync(path.join(REPO, parent)).sort()) {
      const dir = path.join(REPO, parent, name);
      if (existsSync(path.join(dir, 'aiplat-plugin.json'))) found.push(dir);
    }
  }
  return found;
}

describe('aiplat-plugin pack of examples/hello', () => {
  let work: ReturnType<typeof scratch>;
  let tgz: string;
  let stdout: string;
  let stderr: string;

  beforeAll(async () => {
    work = scratch();
    const hello = copyPlugin(path.join(REPO, 'examples', 'hello'), work.dir);
    const res = await runCli(['pack', hello, '--out', path.join(work.dir, 'out') + path.sep], { cwd: work.dir });
    ({ stdout, stderr } = res);
    expect(res.code, res.stderr).toBe(0);
    tgz = path.join(work.dir, 'out', 'hello-1.0.0.tgz');
  });
  afterAll(() => work?.remove());

  it('holds exactly the manifest, the backend bundle, the UI remote, the docs and SIGNATURE', async () => {
    expect(stdout.trim()).toBe('out/hello-1.0.0.tgz');
    const pkg = await readPackage(tgz);
    const files = pkg.files.map((f) => f.path);
    expect(files.filter((f) => !f.startsWith('web/dist/assets/'))).toEqual([
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'aiplat-plugin.json',
      'dist/backend/index.js',
      'dist/backend/index.js.map',
      'web/dist/mf-manifest.json',
      'web/dist/mf-stats.json',
      'web/dist/remoteEntry.js',
    ]);
    expect(files.filter((f) => f.startsWith('web/dist/assets/')).length).toBeGreaterThan(3);
    expect(files.every((f) => !/(^|\/)(src|test|api|node_modules)\//.test(f) && !f.endsWith('.ts') && !f.endsWith('.vue'))).toBe(true);
    // The manifest points at the bundle; everything else is kept as written.
    const original = JSON.parse(readFileSync(path.join(REPO, 'examples', 'hello', 'aiplat-plugin.json'), 'utf8'));
    expect(pkg.manifest).toEqual({ ...original, backend: { entry: 'dist/backend/index.js' } });
    expect(verifyPackage(pkg, [])).toMatchObject({ status: 'unsigned' });
    expect(stderr).not.toContain('warning');
    expect(stderr).toMatch(/hello 1\.0\.0: \d+ files \(SIGNATURE included\)/);
    expect(stderr).toContain(`sha256 ${pkg.sha256}`);
    expect(stderr).toContain('unsigned');
  });

  it('bundles the plugin and its api module but imports @aiplat/plugin-sdk from the host', async () => {
    const dest = path.join(work.dir, 'extracted');
    await extractPackage(tgz, dest);
    const bundle = readFileSync(path.join(dest, 'dist', 'backend', 'index.js'), 'utf8');
    expect(bundle).toContain('import { coreServices, definePlugin, json } from "@aiplat/plugin-sdk";');
    // hello's own modules are in; no copy of the SDK's definePlugin (its marker) or of anything under node_modules.
    expect(bundle).toContain('defineWaterfallHook("hello.greeting")');
    expect(bundle).toContain('p_hello_counters');
    expect(bundle).not.toContain('aiplat.plugin');
    expect(bundle).not.toMatch(/function definePlugin\b/);
    expect(bundle).toMatch(/\/\/# sourceMappingURL=index\.js\.map\s*$/);
    const map = JSON.parse(readFileSync(path.join(dest, 'dist', 'backend', 'index.js.map'), 'utf8')) as { sources: string[] };
    expect(map.sources.every((s) => !s.includes('node_modules') && !s.includes('plugin-sdk'))).toBe(true);
  });

  it('packs the same bytes twice (deterministic)', async () => {
    const again = await runCli(['pack', path.join(work.dir, 'hello'), '--no-build', '--out', path.join(work.dir, 'again.tgz')], { cwd: work.dir });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(path.join(work.dir, 'again.tgz')).equals(readFileSync(tgz))).toBe(true);
  });
});

describe('aiplat-plugin pack refuses', () => {
  let work: ReturnType<typeof scratch>;
  beforeAll(() => {
    work = scratch();
  });
  afterAll(() => work?.remove());

  it('a plugin folder whose packaged files include a link', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'with-link');
    mkdirSync(path.join(dir, 'runtime'));
    writeFileSync(path.join(dir, 'runtime', 'requirements.txt'), 'numpy\n');
    symlinkSync('/etc/passwd', path.join(dir, 'runtime', 'passwd'));
    const res = await runCli(['pack', dir, '--out', path.join(work.dir, 'link.tgz')], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('aiplat-plugin: runtime/passwd is a link: a package holds only files and folders');
    expect(existsSync(path.join(work.dir, 'link.tgz'))).toBe(false);
  });

  it('a plugin folder carrying a node_modules copy of vue', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'with-vue');
    mkdirSync(path.join(dir, 'runtime', 'node_modules', 'vue'), { recursive: true });
    writeFileSync(path.join(dir, 'runtime', 'node_modules', 'vue', 'package.json'), '{"name":"vue","version":"3.5.0"}');
    const res = await runCli(['pack', dir, '--out', path.join(work.dir, 'vue.tgz')], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('aiplat-plugin: runtime/node_modules/vue: a package may not carry its own copy of vue, which the host provides');
    expect(existsSync(path.join(work.dir, 'vue.tgz'))).toBe(false);
  });

  it('(not refused) a plugin without README, CHANGELOG and LICENSE: a warning says so', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'no-docs');
    for (const file of ['README.md', 'CHANGELOG.md', 'LICENSE']) rmSync(path.join(dir, file), { force: true });
    const res = await runCli(['pack', dir, '--out', path.join(work.dir, 'no-docs.tgz')], { cwd: work.dir });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain('warning: hello-shout has no README.md, CHANGELOG.md, LICENSE');
  });

  it('a backend that would bundle its own copy of the SDK', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'sdk-copy');
    writeFileSync(path.join(dir, 'src', 'index.ts'), `import { definePlugin } from '${path.join(REPO, 'plugin-sdk', 'src', 'index.ts')}';\nexport default definePlugin({ register() {} });\n`);
    const res = await runCli(['pack', dir, '--out', path.join(work.dir, 'sdk.tgz')], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('would carry its own copy of @aiplat/plugin-sdk');
  });

  it('a backend that imports the core', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'core-import');
    writeFileSync(path.join(dir, 'src', 'index.ts'), `import { startCore } from '@aiplat/core';\nexport default startCore;\n`);
    const res = await runCli(['build', dir], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("@aiplat/core cannot be imported by a plugin's backend");
  });

  it('a manifest the core would refuse, naming the field', async () => {
    const dir = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir, 'bad-manifest');
    const manifest = JSON.parse(readFileSync(path.join(dir, 'aiplat-plugin.json'), 'utf8'));
    writeFileSync(path.join(dir, 'aiplat-plugin.json'), JSON.stringify({ ...manifest, version: 'one', colour: 'red' }));
    const res = await runCli(['pack', dir], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('is not a valid plugin manifest');
    expect(res.stderr).toContain('unknown field "colour"');
    expect(res.stderr).toContain('version: must be a semver version such as 1.2.3');
  });

  it('a folder that is no plugin, and a bad command line (exit 2)', async () => {
    const none = await runCli(['pack', work.dir], { cwd: work.dir });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('has no aiplat-plugin.json');
    const usage = await runCli(['pack', '--colour'], { cwd: work.dir });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("unknown option '--colour'");
  });
});

describe('every first-party plugin and example, built and packed with aiplat-plugin', () => {
  const plugins = firstPartyPlugins();
  let work: ReturnType<typeof scratch>;
  const packed = new Map<string, { tgz: string; stderr: string }>();
  let core: TestCore | undefined;
  let installed: string;
  const ids: string[] = [];

  beforeAll(async () => {
    work = scratch();
    for (const source of plugins) {
      const dir = copyPlugin(source, path.join(work.dir, 'src'));
      const res = await runCli(['pack', dir, '--out', path.join(work.dir, 'out') + path.sep], { cwd: work.dir });
      expect(res.code, `${path.relative(REPO, source)}: ${res.stderr}`).toBe(0);
      packed.set(path.relative(REPO, source), { tgz: path.resolve(work.dir, res.stdout.trim()), stderr: res.stderr });
    }
    // As the installer will: <data>/plugins/<id>/ beside node_modules/@aiplat/plugin-sdk, the one
    // link the host provides (ADR 0010).
    installed = path.join(work.dir, 'installed');
    mkdirSync(path.join(installed, 'node_modules', '@aiplat'), { recursive: true });
    symlinkSync(path.join(REPO, 'plugin-sdk'), path.join(installed, 'node_modules', '@aiplat', 'plugin-sdk'), 'dir');
    for (const { tgz } of packed.values()) {
      const pkg = await readPackage(tgz);
      await extractPackage(tgz, path.join(installed, String(pkg.manifest.id)));
      ids.push(String(pkg.manifest.id));
    }
  }, 600_000);
  afterAll(async () => {
    await core?.stop();
    work?.remove();
  });

  it('finds them all', () => {
    expect(plugins.length).toBeGreaterThanOrEqual(3);
    expect([...packed.keys()]).toEqual(plugins.map((p) => path.relative(REPO, p)));
  });

  it('packs each into a valid package with the SDK kept external', async () => {
    for (const [name, { tgz }] of packed) {
      const pkg = await readPackage(tgz);
      const manifest = JSON.parse(readFileSync(path.join(REPO, name, 'aiplat-plugin.json'), 'utf8'));
      expect(pkg.manifest.id).toBe(manifest.id);
      expect(path.basename(tgz)).toBe(`${manifest.id}-${manifest.version}.tgz`);
      expect(verifyPackage(pkg, []).status).toBe('unsigned');
      if (manifest.backend) expect(pkg.files.map((f) => f.path)).toContain('dist/backend/index.js');
      if (manifest.web) expect(pkg.files.map((f) => f.path)).toContain(manifest.web.remoteEntry);
    }
  });

  it("bundles executor-docker's dockerode and leaves out only ssh2's optional native addons", () => {
    const docker = packed.get('plugins/executor-docker');
    if (!docker) return;
    const natives = [...docker.stderr.matchAll(/native addon (\S+) \(required by (\S+)\)/g)].map((m) => `${m[2]} → ${m[1]}`);
    expect(natives.sort()).toEqual(['cpu-features/lib/index.js → ../build/Release/cpufeatures.node', 'ssh2/lib/protocol/crypto.js → ./crypto/build/Release/sshcrypto.node']);
  });

  it('loads every package, extracted, into a test core that provides only the SDK', async () => {
    core = await startTestCore({ plugins: ids.map((id) => path.join(installed, id)) });
    for (const id of [...ids].sort((a, b) => Number(b === 'training') - Number(a === 'training'))) {
      const status = core.core.kernel.status(id);
      expect({ id, state: status?.state, reason: (status as { reason?: string } | undefined)?.reason }, JSON.stringify(status)).toMatchObject({ id, state: 'enabled' });
    }
    if (ids.includes('hello') && ids.includes('hello-shout')) {
      // hello-shout's bundled copy of hello's api module taps the hook hello declared.
      expect((await core.client.get('/api/plugins/hello/greeting?name=Ada')).body).toEqual({ greeting: 'HELLO, ADA' });
      expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Ada' })).body).toEqual({ greeting: 'HELLO, ADA', count: 1 });
    }
  });

  it('carries the training worker in runtime/, and the installed training plugin trains with it', async () => {
    const training = packed.get('plugins/training');
    if (!training || !core) return;
    const files = (await readPackage(training.tgz)).files.map((f) => f.path);
    for (const f of ['runtime/worker/train.py', 'runtime/worker/setup.sh', 'runtime/worker/requirements.txt', 'runtime/worker/aiplat_train/trainer.py', 'runtime/worker/aiplat_train/launch.py', 'runtime/worker/aiplat_train/ds.py']) {
      expect(files).toContain(f);
    }
    // The worker's venv (setup.sh) stays outside the package: the repository's, as a site's would be.
    const { execFileSync } = await import('node:child_process');
    const python = execFileSync('sh', [path.join(REPO, 'plugins/training/runtime/worker/setup.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
    process.env.AIPLAT_TRAIN_VENV = path.dirname(path.dirname(python));
    const { createHash } = await import('node:crypto');
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'packed-corpus', taskType: 'other' })).body;
    const commit = (await core.client.post(`/api/plugins/datasets/datasets/${dataset.id}/commits`, {})).body.id as string;
    const text = Array.from({ length: 300 }, (_, i) => `line ${i % 7} of a small corpus`).join('\n');
    const put = await core.client.request('PUT', `/api/plugins/datasets/commits/${commit}/files/content?path=corpus.txt&sha256=${createHash('sha256').update(text).digest('hex')}`, {
      raw: Buffer.from(text),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status, put.text).toBe(200);
    const version = (await core.client.post(`/api/plugins/datasets/commits/${commit}/finish`, {})).body.id as string;
    const model = (await core.client.post('/api/plugins/models/models', { name: 'packed-tiny' })).body.id as string;
    const res = await core.client.post('/api/plugins/training/runs', {
      name: 'from-the-package',
      template: { type: 'llama', config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 } },
      datasetVersion: version,
      datasetFormat: 'text',
      hyper: { maxSteps: 4, batchSize: 4, sequenceLength: 32, evalSplit: 0, checkpointInterval: 0 },
      output: { model },
    });
    expect(res.status, res.text).toBe(201);
    const workload = (await core.client.get(`/api/v1/workloads/${res.body.workloadId}`)).body;
    expect(workload.spec.workingDir).toBe(path.join(installed, 'training', 'runtime', 'worker'));
    await expect
      .poll(async () => (await core!.client.get(`/api/plugins/training/runs/${res.body.id}`)).body.state, { timeout: 120_000, interval: 500 })
      .toBe('succeeded');
    delete process.env.AIPLAT_TRAIN_VENV;
  }, 180_000);

  it('loads them in a core process of its own too (Node imports the bundles natively, no test runner in between)', async () => {
    const dev = await startDevCore({ pluginDirs: ids.map((id) => path.join(installed, id)), dataDir: path.join(work.dir, 'core-data') });
    try {
      const login = await new TestClient(dev.url).post<{ accessToken: string }>('/api/v1/auth/login', { username: 'admin', password: dev.password });
      expect(login.status).toBe(200);
      const client = new TestClient(dev.url, login.body.accessToken);
      for (const id of ids) expect({ id, ...(await client.get(`/api/v1/plugins/${id}`)).body }).toMatchObject({ id, state: 'enabled' });
      if (ids.includes('hello-shout')) expect((await client.get('/api/plugins/hello/greeting?name=Bo')).body).toEqual({ greeting: 'HELLO, BO' });
    } finally {
      await dev.stop();
    }
  });
});
