/**
 * The registry over real HTTP on a temporary data folder: publish, search, read, download, the
 * refusals (overwrite, tokens, ownership, modified packages, bad uploads), the static mirror and
 * a copied folder, restarts and recovery from an unfinished publish.
 */
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPackage, type IndexEntry, type RegistryIndex } from '@aiplat/plugin-sdk/package';
import type { RunningRegistry } from '../src/server.js';
import {
  buildPackage,
  getJson,
  makePublisher,
  modifiedPackage,
  publish,
  removeTempDirs,
  sha256,
  startTestRegistry,
  tarGz,
  tempDir,
  untarGz,
} from './helpers.js';

const acme = makePublisher('acme');
const other = makePublisher('other');
/** A key nobody registered: its packages verify as `untrusted`. */
const stranger = makePublisher('stranger');

let dataDir: string;
let registry: RunningRegistry;
let url: string;
const published = new Map<string, Buffer>();

/** A response's JSON body, for assertions. */
const json = (res: Response): Promise<any> => res.json();

async function publishOk(spec: Parameters<typeof buildPackage>[0], key: Parameters<typeof buildPackage>[1], token = acme.token): Promise<any> {
  const tgz = await buildPackage(spec, key);
  const res = await publish(url, token, tgz);
  const body = await json(res);
  expect(res.status, JSON.stringify(body)).toBe(201);
  published.set(`${spec.id}@${spec.version}`, tgz);
  return body;
}

beforeAll(async () => {
  dataDir = tempDir('data');
  registry = await startTestRegistry(dataDir, [acme.record, other.record]);
  url = registry.url;
});

afterAll(async () => {
  await registry?.close();
  await removeTempDirs();
});

describe('publish and read back', () => {
  it('publishes a signed package: 201, recorded as signed with its key id', async () => {
    const body = await publishOk({ id: 'hello', version: '1.0.0', en: 'Hello world', zh: '你好世界', description: 'Greets people', categories: ['demo', 'chat'] }, acme.key);
    expect(body).toMatchObject({ id: 'hello', version: '1.0.0', signed: true, keyId: acme.key.keyId, publisher: 'acme', latest: '1.0.0', verification: { status: 'signed' } });
    expect(body.sha256).toBe(sha256(published.get('hello@1.0.0')!));
    expect(body.size).toBe(published.get('hello@1.0.0')!.length);
    expect(body.links.download).toBe('/api/v1/plugins/hello/versions/1.0.0/download');
  });

  it('accepts unsigned and untrusted packages but records them as not signed', async () => {
    const unsigned = await publishOk({ id: 'hello', version: '1.1.0', en: 'Hello world', zh: '你好世界', categories: ['demo', 'chat'], aiplat: '^1.1.0' }, null);
    expect(unsigned).toMatchObject({ version: '1.1.0', signed: false, keyId: null, verification: { status: 'unsigned' } });
    const untrusted = await publishOk({ id: 'hello', version: '0.9.0', en: 'Hello (old)', categories: ['old'] }, stranger.key);
    expect(untrusted).toMatchObject({ version: '0.9.0', signed: false, keyId: stranger.key.keyId, verification: { status: 'untrusted' } });
    // 0.9.0 is older than latest: the entry's names stay those of the latest version.
    expect(untrusted.latest).toBe('1.1.0');
  });

  it('lists and searches: text, category, plugin API compatibility, paging', async () => {
    await publishOk({ id: 'gpu-monitor', version: '2.0.0', en: 'GPU monitor', zh: 'GPU 监控', categories: ['monitoring'], aiplat: '^2.0.0' }, acme.key, other.token);
    await publishOk({ id: 'chat-ui', version: '0.1.0', en: 'Chat UI', zh: '聊天界面', categories: ['chat'] }, other.key, other.token);

    const all = await getJson(`${url}/api/v1/plugins`);
    expect(all.status).toBe(200);
    expect(all.body.items.map((i: any) => i.id)).toEqual(['chat-ui', 'gpu-monitor', 'hello']);
    expect(all.body.total).toBe(3);

    const hello = all.body.items.find((i: any) => i.id === 'hello');
    expect(hello).toMatchObject({ latest: '1.1.0', compatibleVersion: '1.1.0', publisher: 'acme', versionCount: 3, categories: ['demo', 'chat'] });

    const chat = await getJson(`${url}/api/v1/plugins?q=chat`);
    // chat-ui: id prefix; hello: category "chat".
    expect(chat.body.items.map((i: any) => i.id)).toEqual(['chat-ui', 'hello']);
    expect((await getJson(`${url}/api/v1/plugins?q=${encodeURIComponent('监控')}`)).body.items.map((i: any) => i.id)).toEqual(['gpu-monitor']);
    expect((await getJson(`${url}/api/v1/plugins?category=monitoring`)).body.items.map((i: any) => i.id)).toEqual(['gpu-monitor']);

    const v100 = await getJson(`${url}/api/v1/plugins?aiplat=1.0.0`);
    expect(v100.body.items.map((i: any) => [i.id, i.compatibleVersion])).toEqual([
      ['chat-ui', '0.1.0'],
      ['hello', '1.0.0'],
    ]);
    const v2 = await getJson(`${url}/api/v1/plugins?aiplat=2.3.0`);
    expect(v2.body.items.map((i: any) => i.id)).toEqual(['gpu-monitor']);

    const page1 = await getJson(`${url}/api/v1/plugins?limit=2`);
    expect(page1.body.items).toHaveLength(2);
    const page2 = await getJson(`${url}/api/v1/plugins?limit=2&cursor=${page1.body.nextCursor}`);
    expect(page2.body.items.map((i: any) => i.id)).toEqual(['hello']);
    expect(page2.body.nextCursor).toBeNull();
  });

  it('answers search mistakes with 400s that name the parameter', async () => {
    const cases: [string, RegExp][] = [
      ['limit=0', /limit must be a whole number from 1 to 100/],
      ['limit=ten', /limit must be a whole number/],
      ['aiplat=latest', /aiplat must be a plugin API version such as 1\.0\.0/],
      ['cursor=abc', /cursor is not one this registry gave out/],
      ['query=chat', /Unknown search parameter "query"/],
      ['q=a&q=b', /"q" once/],
    ];
    for (const [query, message] of cases) {
      const res = await getJson(`${url}/api/v1/plugins?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.message).toMatch(message);
    }
  });

  it('serves the entry with versions newest first, and one version with its manifest', async () => {
    const entry = await getJson(`${url}/api/v1/plugins/hello`);
    expect(entry.status).toBe(200);
    expect(entry.body).toMatchObject({ id: 'hello', latest: '1.1.0', publisher: 'acme', displayName: { en: 'Hello world', 'zh-CN': '你好世界' } });
    expect(entry.body.versions.map((v: any) => v.version)).toEqual(['1.1.0', '1.0.0', '0.9.0']);
    expect(entry.body.versions[1]).toMatchObject({
      engines: { aiplat: '^1.0.0' },
      dependencies: {},
      optionalDependencies: {},
      publisher: 'acme',
      signed: true,
      keyId: acme.key.keyId,
      permissions: [{ id: 'hello:use', title: { en: 'Use it', 'zh-CN': '使用' } }],
    });
    expect(Date.parse(entry.body.versions[1].publishedAt)).toBeGreaterThan(Date.now() - 60_000);

    const version = await getJson(`${url}/api/v1/plugins/hello/versions/1.0.0`);
    expect(version.status).toBe(200);
    expect(version.body).toMatchObject({ id: 'hello', version: '1.0.0', signed: true, hasReadme: true, hasChangelog: true });
    expect(version.body.manifest).toMatchObject({ id: 'hello', version: '1.0.0', backend: { entry: 'dist/backend/index.js' } });
    expect((await getJson(`${url}/api/v1/plugins/hello/versions/latest`)).body.version).toBe('1.1.0');
  });

  it('serves the readme and changelog as markdown', async () => {
    const readme = await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/readme`);
    expect(readme.status).toBe(200);
    expect(readme.headers.get('content-type')).toBe('text/markdown; charset=utf-8');
    expect(await readme.text()).toBe('# hello\n\nVersion 1.0.0.\n');
    const changelog = await fetch(`${url}/api/v1/plugins/hello/versions/1.1.0/changelog`);
    expect(await changelog.text()).toBe('## 1.1.0\n\n- Released.\n');
  });

  it('answers 404 for a package without a readme', async () => {
    await publishOk({ id: 'bare', version: '1.0.0', readme: null, changelog: null }, acme.key);
    const res = await getJson(`${url}/api/v1/plugins/bare/versions/1.0.0/readme`);
    expect(res.status).toBe(404);
    expect(res.body.error.message).toBe('bare 1.0.0 has no README.md.');
    expect((await getJson(`${url}/api/v1/plugins/bare/versions/1.0.0`)).body).toMatchObject({ hasReadme: false, hasChangelog: false });
  });

  it('downloads the package byte for byte, with length, type and ETag', async () => {
    const res = await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/download`);
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const original = published.get('hello@1.0.0')!;
    expect(bytes.equals(original)).toBe(true);
    expect(res.headers.get('content-type')).toBe('application/gzip');
    expect(res.headers.get('content-length')).toBe(String(original.length));
    expect(res.headers.get('etag')).toBe(`"${sha256(original)}"`);
    expect(res.headers.get('content-disposition')).toMatch(/attachment; filename="hello-1\.0\.0\.tgz"/);
    const again = await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/download`, {
      // Without a Cache-Control of its own, fetch adds "no-cache" to a conditional request, which asks for the full answer.
      headers: { 'if-none-match': `"${sha256(original)}"`, 'cache-control': 'max-age=0' },
    });
    expect(again.status).toBe(304);
    const head = await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/download`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(original.length));
  });

  it('answers 404 naming an unknown id or version, and 400 for a malformed one', async () => {
    const noPlugin = await getJson(`${url}/api/v1/plugins/nope`);
    expect(noPlugin.status).toBe(404);
    expect(noPlugin.body.error.message).toBe('No plugin "nope" is published on this registry.');
    const noVersion = await getJson(`${url}/api/v1/plugins/hello/versions/9.9.9/download`);
    expect(noVersion.status).toBe(404);
    expect(noVersion.body.error.message).toMatch(/Plugin "hello" has no version 9\.9\.9 \(its versions, newest first: 1\.1\.0, 1\.0\.0, 0\.9\.0\)/);
    const badId = await getJson(`${url}/api/v1/plugins/Hello_World`);
    expect(badId.status).toBe(400);
    expect(badId.body.error.message).toMatch(/is not a plugin id/);
    const badVersion = await getJson(`${url}/api/v1/plugins/hello/versions/1.0`);
    expect(badVersion.status).toBe(400);
    expect(badVersion.body.error.message).toMatch(/"1\.0" is not a version/);
    const nothing = await getJson(`${url}/api/v2/whatever`);
    expect(nothing.status).toBe(404);
  });

  it('answers health', async () => {
    const res = await getJson(`${url}/api/v1/health`);
    expect(res.body).toEqual({ status: 'ok', plugins: 4, versions: 6 });
  });
});

describe('refusals', () => {
  it('never overwrites a version: 409 version_exists', async () => {
    const res = await publish(url, acme.token, await buildPackage({ id: 'hello', version: '1.0.0', en: 'Changed' }, acme.key));
    expect(res.status).toBe(409);
    const body = await json(res);
    expect(body.error).toMatchObject({ code: 'version_exists', details: { id: 'hello', version: '1.0.0' } });
    expect(body.error.message).toMatch(/hello 1\.0\.0 is already published, and versions are never overwritten/);
    // The stored package is still the original.
    const bytes = Buffer.from(await (await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/download`)).arrayBuffer());
    expect(bytes.equals(published.get('hello@1.0.0')!)).toBe(true);
  });

  it('refuses a missing or wrong token: 401', async () => {
    const tgz = await buildPackage({ id: 'tokens', version: '1.0.0' }, acme.key);
    const none = await publish(url, undefined, tgz);
    expect(none.status).toBe(401);
    expect((await json(none)).error.message).toMatch(/Authorization: Bearer <token>/);
    const wrong = await publish(url, 'not-a-token', tgz);
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).error).toMatchObject({ code: 'unauthenticated', message: expect.stringMatching(/matches no publisher/) });
    expect((await getJson(`${url}/api/v1/plugins/tokens`)).status).toBe(404);
  });

  it('refuses another publisher on an id it does not own: 403 not_owner', async () => {
    const res = await publish(url, other.token, await buildPackage({ id: 'hello', version: '5.0.0' }, other.key));
    expect(res.status).toBe(403);
    const body = await json(res);
    expect(body.error).toMatchObject({ code: 'not_owner', details: { id: 'hello', owner: 'acme' } });
    expect(body.error.message).toMatch(/Plugin "hello" belongs to publisher "acme"/);
  });

  it('refuses a package changed after signing: 400 with the reason', async () => {
    const res = await publish(url, acme.token, await modifiedPackage({ id: 'tampered', version: '1.0.0' }, acme.key));
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error.code).toBe('package_modified');
    expect(body.error.message).toMatch(/README\.md does not match its checksum in SIGNATURE/);
    expect((await getJson(`${url}/api/v1/plugins/tampered`)).status).toBe(404);
  });

  it('refuses a package without SIGNATURE, with an invalid manifest, or that is not a package', async () => {
    const noSig = await publish(url, acme.token, await buildPackage({ id: 'nosig', version: '1.0.0' }, 'none'));
    expect(noSig.status).toBe(400);
    expect((await json(noSig)).error).toMatchObject({ code: 'signature_missing', message: expect.stringMatching(/no SIGNATURE file/) });

    const badManifest = await publish(url, acme.token, await buildPackage({ id: 'badman', version: '1.0.0', manifest: { colour: 'red', engines: { aiplat: 'not a range' } } }, acme.key));
    expect(badManifest.status).toBe(400);
    const bm = (await json(badManifest)).error;
    expect(bm.code).toBe('manifest_invalid');
    expect(bm.message).toMatch(/unknown field "colour"/);

    const badRange = await publish(url, acme.token, await buildPackage({ id: 'badrange', version: '1.0.0', aiplat: 'one point oh' }, acme.key));
    expect((await json(badRange)).error.message).toMatch(/engines\.aiplat: "one point oh" is not a semver range/);

    const badEntry = await publish(url, acme.token, await buildPackage({ id: 'badentry', version: '1.0.0', manifest: { backend: { entry: 'dist/missing.js' } } }, acme.key));
    expect((await json(badEntry)).error.message).toMatch(/backend\.entry: "dist\/missing\.js" is not a file in the package/);

    const notGzip = await publish(url, acme.token, Buffer.from('hello, this is not a package'));
    expect(notGzip.status).toBe(400);
    expect((await json(notGzip)).error).toMatchObject({ code: 'package_invalid', message: expect.stringMatching(/not a gzip-compressed tar package/) });

    const link = await publish(url, acme.token, await tarGz(new Map([['../escape.txt', Buffer.from('x')]])));
    expect(link.status).toBe(400);
    expect((await json(link)).error.message).toMatch(/"\.\.\/escape\.txt"/);

    const empty = await publish(url, acme.token, Buffer.alloc(0));
    expect(empty.status).toBe(400);
    expect((await json(empty)).error.message).toMatch(/body is empty/);

    const wrongType = await publish(url, acme.token, Buffer.from('{}'), 'application/json');
    expect(wrongType.status).toBe(415);
    expect((await json(wrongType)).error.message).toMatch(/Content-Type: application\/gzip/);
  });

  it('refuses a package over the size limit: 413', async () => {
    const small = await startTestRegistry(tempDir('small'), [acme.record], { maxUploadBytes: 1024 });
    try {
      const tgz = await buildPackage({ id: 'big', version: '1.0.0', files: { 'data/blob.txt': 'x'.repeat(64 * 1024) + Math.random() } }, acme.key);
      expect(tgz.length).toBeGreaterThan(1024);
      const res = await publish(small.url, acme.token, tgz);
      expect(res.status).toBe(413);
      expect((await json(res)).error.message).toMatch(/accepts at most 1024 bytes/);
      // Without a Content-Length, the limit stops the stream.
      const chunked = await fetch(`${small.url}/api/v1/packages`, {
        method: 'POST',
        headers: { 'content-type': 'application/gzip', authorization: `Bearer ${acme.token}` },
        body: new Blob([tgz]).stream(),
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(413);
      expect(await readdir(path.join(small.store.dataDir, '.tmp'))).toEqual([]);
    } finally {
      await small.close();
    }
  });

  it('publishes one at a time: concurrent publishes all land, a duplicate gets exactly one 201', async () => {
    const versions = Array.from({ length: 8 }, (_, i) => `3.0.${i}`);
    const packages = await Promise.all(versions.map((version) => buildPackage({ id: 'busy', version }, acme.key)));
    const statuses = await Promise.all(packages.map((tgz) => publish(url, acme.token, tgz).then((r) => r.status)));
    expect(statuses).toEqual(versions.map(() => 201));
    const dup = await buildPackage({ id: 'busy', version: '4.0.0' }, acme.key);
    const dupStatuses = await Promise.all([1, 2, 3, 4].map(() => publish(url, acme.token, dup).then((r) => r.status)));
    expect(dupStatuses.sort()).toEqual([201, 409, 409, 409]);
    const entry = (await getJson(`${url}/api/v1/plugins/busy`)).body as IndexEntry;
    expect(entry.versions.map((v) => v.version)).toEqual(['4.0.0', ...[...versions].reverse()]);
    const onDisk = JSON.parse(await readFile(path.join(dataDir, 'plugins/busy/index.json'), 'utf8')) as IndexEntry;
    expect(onDisk).toEqual(entry);
  });
});

describe('the static mirror', () => {
  it('serves index.json and the files of every version under /static/', async () => {
    const index = await getJson(`${url}/static/index.json`);
    expect(index.status).toBe(200);
    expect(index.body.format).toBe('aiplat-registry/1');
    expect(index.body.plugins.map((p: any) => p.id)).toEqual(['bare', 'busy', 'chat-ui', 'gpu-monitor', 'hello']);
    expect((await getJson(`${url}/static/plugins/hello/index.json`)).body).toEqual((await getJson(`${url}/api/v1/plugins/hello`)).body);
    const tgz = await fetch(`${url}/static/plugins/hello/1.0.0/package.tgz`);
    expect(Buffer.from(await tgz.arrayBuffer()).equals(published.get('hello@1.0.0')!)).toBe(true);
    expect(tgz.headers.get('etag')).toBe(`"${sha256(published.get('hello@1.0.0')!)}"`);
    expect((await getJson(`${url}/static/plugins/hello/1.0.0/aiplat-plugin.json`)).body.version).toBe('1.0.0');
    expect(await (await fetch(`${url}/static/plugins/hello/1.0.0/README.md`)).text()).toMatch(/^# hello/);
  });

  it('serves nothing outside the mirror layout (publishers file, temporary files, traversal)', async () => {
    await writeFile(path.join(dataDir, 'publishers.json'), '[]');
    for (const p of [
      '/static/publishers.json',
      '/static/.tmp',
      '/static/plugins/hello/1.0.0/../../../publishers.json',
      '/static/plugins/hello/%2e%2e/%2e%2e/publishers.json',
      '/static/plugins/hello%2f..%2f..%2fpublishers.json',
      '/static/plugins/..%2f..%2fetc%2fpasswd',
      '/static/plugins/hello/1.0.0/SIGNATURE',
      '/static/plugins/hello/9.9.9/package.tgz',
      '/static/',
    ]) {
      const res = await fetch(`${url}${p}`);
      expect([400, 404], p).toContain(res.status);
      expect(await res.text(), p).not.toContain('[]');
    }
    expect((await fetch(`${url}/static/index.json`, { method: 'PUT', body: '{}' })).status).toBe(405);
  });

  it('is complete when copied: every file present and matching, and a registry on the copy answers the same', async () => {
    const copy = path.join(tempDir('mirror'), 'registry');
    await cp(dataDir, copy, { recursive: true });
    const index = JSON.parse(await readFile(path.join(copy, 'index.json'), 'utf8')) as RegistryIndex;
    expect(index.format).toBe('aiplat-registry/1');
    expect(new Set((await readdir(path.join(copy, 'plugins'))).sort())).toEqual(new Set(index.plugins.map((p) => p.id)));
    for (const entry of index.plugins) {
      expect(JSON.parse(await readFile(path.join(copy, 'plugins', entry.id, 'index.json'), 'utf8'))).toEqual(entry);
      expect(entry.latest).toBe(entry.versions.find((v) => !v.version.includes('-'))?.version);
      for (const v of entry.versions) {
        const dir = path.join(copy, 'plugins', entry.id, v.version);
        const tgz = await readFile(path.join(dir, 'package.tgz'));
        expect(sha256(tgz)).toBe(v.sha256);
        expect(tgz.length).toBe(v.size);
        const pkg = await readPackage(tgz);
        expect(JSON.parse(await readFile(path.join(dir, 'aiplat-plugin.json'), 'utf8'))).toEqual(pkg.manifest);
        if (pkg.readme !== undefined) expect(await readFile(path.join(dir, 'README.md'), 'utf8')).toBe(pkg.readme);
        if (pkg.changelog !== undefined) expect(await readFile(path.join(dir, 'CHANGELOG.md'), 'utf8')).toBe(pkg.changelog);
      }
    }
    const mirror = await startTestRegistry(copy, []);
    try {
      for (const q of ['', '?q=chat', '?aiplat=1.0.0', '?category=monitoring', '?limit=2']) {
        expect((await getJson(`${mirror.url}/api/v1/plugins${q}`)).body, q).toEqual((await getJson(`${url}/api/v1/plugins${q}`)).body);
      }
      const a = Buffer.from(await (await fetch(`${mirror.url}/api/v1/plugins/hello/versions/1.0.0/download`)).arrayBuffer());
      expect(a.equals(published.get('hello@1.0.0')!)).toBe(true);
    } finally {
      await mirror.close();
    }
  });
});

describe('restarts', () => {
  it('keeps everything across a restart, and still refuses overwrites', async () => {
    const before = (await getJson(`${url}/api/v1/plugins?limit=100`)).body;
    const index = await readFile(path.join(dataDir, 'index.json'), 'utf8');
    await registry.close();
    registry = await startTestRegistry(dataDir, [acme.record, other.record]);
    url = registry.url;
    expect((await getJson(`${url}/api/v1/plugins?limit=100`)).body).toEqual(before);
    // Nothing to repair: index.json is left as it was.
    expect(await readFile(path.join(dataDir, 'index.json'), 'utf8')).toBe(index);
    const again = await publish(url, acme.token, await buildPackage({ id: 'hello', version: '1.1.0' }, acme.key));
    expect(again.status).toBe(409);
    const bytes = Buffer.from(await (await fetch(`${url}/api/v1/plugins/hello/versions/1.0.0/download`)).arrayBuffer());
    expect(bytes.equals(published.get('hello@1.0.0')!)).toBe(true);
  });

  it('removes what an unfinished publish left and rebuilds a stale index.json at start', async () => {
    await registry.close();
    // A version folder renamed into place whose plugin index was never written, a plugin folder
    // with no index at all, and a root index that lost a plugin.
    const orphan = path.join(dataDir, 'plugins/hello/7.0.0');
    await mkdir(orphan, { recursive: true });
    await writeFile(path.join(orphan, 'package.tgz'), 'partial');
    await mkdir(path.join(dataDir, 'plugins/half-done/1.0.0'), { recursive: true });
    const index = JSON.parse(await readFile(path.join(dataDir, 'index.json'), 'utf8')) as RegistryIndex;
    await writeFile(path.join(dataDir, 'index.json'), JSON.stringify({ ...index, plugins: index.plugins.filter((p) => p.id !== 'busy') }));

    registry = await startTestRegistry(dataDir, [acme.record, other.record]);
    url = registry.url;
    expect(await readdir(path.join(dataDir, 'plugins/hello'))).not.toContain('7.0.0');
    expect(await readdir(path.join(dataDir, 'plugins'))).not.toContain('half-done');
    const rebuilt = JSON.parse(await readFile(path.join(dataDir, 'index.json'), 'utf8')) as RegistryIndex;
    expect(rebuilt.plugins.map((p) => p.id)).toEqual(index.plugins.map((p) => p.id));
    // 7.0.0 was never committed, so it can be published now.
    await publishOk({ id: 'hello', version: '7.0.0', en: 'Hello world', zh: '你好世界', categories: ['demo', 'chat'] }, acme.key);
    const entry = (await getJson(`${url}/api/v1/plugins/hello`)).body as IndexEntry;
    expect(entry.latest).toBe('7.0.0');
    const files = await untarGz(Buffer.from(await (await fetch(`${url}/static/plugins/hello/7.0.0/package.tgz`)).arrayBuffer()));
    expect([...files.keys()]).toContain('SIGNATURE');
  });
});
