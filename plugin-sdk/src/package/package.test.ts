// The package format (docs/adr/0010): real files, real tar and gzip, real ed25519 keys.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import {
  PackageError,
  extractPackage,
  generateKeyPair,
  keyIdOf,
  packFolder,
  parsePublicKey,
  publicKeyOf,
  readPackage,
  signPackageFile,
  verifyPackage,
  writeSignature,
} from './index.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-package-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function pluginFolder(name: string, extra: Record<string, string> = {}): string {
  const dir = path.join(work, name);
  mkdirSync(path.join(dir, 'dist', 'backend'), { recursive: true });
  writeFileSync(path.join(dir, 'aiplat-plugin.json'), JSON.stringify({ id: 'demo', version: '1.0.0', backend: { entry: 'dist/backend/index.js' } }));
  writeFileSync(path.join(dir, 'dist', 'backend', 'index.js'), 'import { definePlugin } from "@aiplat/plugin-sdk";\nexport default definePlugin({ register() {} });\n');
  writeFileSync(path.join(dir, 'README.md'), '# Demo\n');
  for (const [file, content] of Object.entries(extra)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  return dir;
}

/** A hand-made tgz: entries as given (for the hostile cases no packer would write). */
async function rawTgz(entries: { name: string; content?: string; type?: 'file' | 'symlink' | 'link' | 'directory'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => void chunks.push(c as Buffer));
  const done = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    if (e.type === 'symlink' || e.type === 'link') pack.entry({ name: e.name, type: e.type, linkname: e.linkname });
    else if (e.type === 'directory') pack.entry({ name: e.name, type: 'directory' });
    else pack.entry({ name: e.name }, e.content ?? '');
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

const manifestEntry = { name: 'aiplat-plugin.json', content: JSON.stringify({ id: 'demo', version: '1.0.0' }) };

describe('keys', () => {
  it('key ids come from the public key, and a key file with a wrong id is refused', () => {
    const key = generateKeyPair('acme');
    expect(key.keyId).toBe(keyIdOf(key.publicKey));
    expect(key.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(parsePublicKey(publicKeyOf(key))).toEqual(publicKeyOf(key));
    expect(() => parsePublicKey({ ...publicKeyOf(key), keyId: '0000000000000000' })).toThrow(/does not belong to its publicKey/);
    expect(() => parsePublicKey({ publicKey: 'abc' })).toThrow(/32-byte/);
    expect(() => generateKeyPair('bad name!')).toThrow(/publisher/);
  });
});

describe('sign, pack, read, verify', () => {
  it('a signed package verifies against its key, and is untrusted without it', async () => {
    const key = generateKeyPair('acme');
    const dir = pluginFolder('signed');
    const sig = await writeSignature(dir, { key });
    expect(sig.files.map((f) => f.path)).toEqual(['README.md', 'aiplat-plugin.json', 'dist/backend/index.js']);
    const out = path.join(work, 'signed.tgz');
    const packed = await packFolder(dir, out);
    const contents = await readPackage(out);
    expect(contents.sha256).toBe(packed.sha256);
    expect(contents.size).toBe(readFileSync(out).length);
    expect(contents.readme).toBe('# Demo\n');
    expect(contents.manifest.id).toBe('demo');
    expect(verifyPackage(contents, [publicKeyOf(key)])).toMatchObject({ status: 'signed', keyId: key.keyId, publisher: 'acme' });
    expect(verifyPackage(contents, [publicKeyOf(generateKeyPair('other'))])).toMatchObject({ status: 'untrusted', keyId: key.keyId });
    // Packing is deterministic: the same folder gives the same bytes.
    const again = await packFolder(dir, path.join(work, 'signed-again.tgz'));
    expect(again.sha256).toBe(packed.sha256);
  });

  it('one changed byte makes the package modified, naming the file', async () => {
    const key = generateKeyPair('acme');
    const dir = pluginFolder('tampered');
    await writeSignature(dir, { key });
    writeFileSync(path.join(dir, 'README.md'), '# Demo!\n');
    const out = path.join(work, 'tampered.tgz');
    await packFolder(dir, out);
    const verdict = verifyPackage(await readPackage(out), [publicKeyOf(key)]);
    expect(verdict.status).toBe('modified');
    expect(verdict.reason).toMatch(/README\.md does not match its checksum/);
  });

  it('a signature over other contents is modified, a missing or added file too', async () => {
    const key = generateKeyPair('acme');
    const dir = pluginFolder('forged');
    const sig = await writeSignature(dir, { key });
    const contents = await readPackage(await packAndRead(dir, 'forged.tgz'));
    const forged = { ...contents, signature: { ...sig, signature: Buffer.alloc(64).toString('base64') } };
    expect(verifyPackage(forged, [publicKeyOf(key)])).toMatchObject({ status: 'modified', reason: expect.stringMatching(/signature does not match/) });
    const fewer = { ...contents, files: contents.files.slice(1) };
    expect(verifyPackage(fewer, [publicKeyOf(key)]).reason).toMatch(/missing from the package/);
    const more = { ...contents, files: [...contents.files, { path: 'extra.js', sha256: '0'.repeat(64), size: 1 }] };
    expect(verifyPackage(more, [publicKeyOf(key)]).reason).toMatch(/extra\.js is in the package but not in its SIGNATURE/);
    const renamed = { ...contents, manifest: { ...contents.manifest, version: '2.0.0' } };
    expect(verifyPackage(renamed, [publicKeyOf(key)]).reason).toMatch(/SIGNATURE is for demo@1.0.0/);
  });

  it('unsigned packages say so; signing a tgz afterwards makes it signed', async () => {
    const dir = pluginFolder('unsigned');
    await writeSignature(dir);
    const out = path.join(work, 'unsigned.tgz');
    await packFolder(dir, out);
    expect(verifyPackage(await readPackage(out), [])).toMatchObject({ status: 'unsigned' });
    const key = generateKeyPair('acme');
    await signPackageFile(out, key);
    expect(verifyPackage(await readPackage(out), [publicKeyOf(key)])).toMatchObject({ status: 'signed' });
    expect(verifyPackage(await readPackage(await rawTgz([manifestEntry])), [])).toMatchObject({ status: 'unsigned', reason: 'the package has no SIGNATURE' });
  });
});

async function packAndRead(dir: string, name: string): Promise<string> {
  const out = path.join(work, name);
  await packFolder(dir, out);
  return out;
}

describe('hostile packages', () => {
  const refused = async (tgz: Buffer, code: string, message: RegExp) => {
    const dest = path.join(work, `dest-${Math.random().toString(36).slice(2)}`);
    const error = await extractPackage(tgz, dest).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PackageError);
    expect((error as PackageError).code).toBe(code);
    expect((error as PackageError).message).toMatch(message);
    // Nothing written: neither the folder nor its temporary sibling.
    expect(existsSync(dest)).toBe(false);
    expect(readdirSync(path.dirname(dest)).filter((n) => n.startsWith(path.basename(dest)))).toEqual([]);
  };

  it('refuses ../ paths and writes nothing outside', async () => {
    await refused(await rawTgz([manifestEntry, { name: '../escaped.txt', content: 'x' }]), 'package_unsafe', /has a "\.\."/);
    expect(existsSync(path.join(work, 'escaped.txt'))).toBe(false);
    await refused(await rawTgz([manifestEntry, { name: 'a/../../escaped2.txt', content: 'x' }]), 'package_unsafe', /"\.\."/);
    expect(existsSync(path.join(work, 'escaped2.txt'))).toBe(false);
  });

  it('refuses absolute paths, symlinks and hard links', async () => {
    await refused(await rawTgz([manifestEntry, { name: '/tmp/abs.txt', content: 'x' }]), 'package_unsafe', /absolute path/);
    await refused(await rawTgz([manifestEntry, { name: 'evil', type: 'symlink', linkname: '/etc/passwd' }]), 'package_unsafe', /is a symlink to \/etc\/passwd/);
    await refused(await rawTgz([manifestEntry, { name: 'hard', type: 'link', linkname: 'aiplat-plugin.json' }]), 'package_unsafe', /is a link/);
  });

  it('refuses node_modules and a bundled SDK', async () => {
    await refused(await rawTgz([manifestEntry, { name: 'node_modules/vue/index.js', content: 'x' }]), 'package_bundles_host_library', /own copy of vue/);
    await refused(await rawTgz([manifestEntry, { name: 'node_modules/left-pad/index.js', content: 'x' }]), 'package_bundles_host_library', /may not hold node_modules/);
    await refused(
      await rawTgz([manifestEntry, { name: 'dist/backend/index.js', content: 'const PLUGIN_MARK = Symbol.for("aiplat.plugin");' }]),
      'package_bundles_host_library',
      /own copy of @aiplat\/plugin-sdk/,
    );
  });

  it('refuses too many files, too many bytes, duplicates, no manifest, not a tgz', async () => {
    const many = await rawTgz([manifestEntry, ...Array.from({ length: 5 }, (_, i) => ({ name: `f${i}`, content: 'x' }))]);
    await expect(readPackage(many, { limits: { maxFiles: 3 } })).rejects.toMatchObject({ code: 'package_too_large' });
    await expect(readPackage(many, { limits: { maxBytes: 10 } })).rejects.toMatchObject({ code: 'package_too_large' });
    await refused(await rawTgz([manifestEntry, manifestEntry]), 'package_unsafe', /appears twice/);
    await refused(await rawTgz([{ name: 'README.md', content: 'x' }]), 'package_invalid', /no aiplat-plugin\.json/);
    await refused(Buffer.from('not a package'), 'package_invalid', /not a gzip-compressed tar/);
  });

  it('a folder with a link cannot be packed', async () => {
    const dir = pluginFolder('linked');
    symlinkSync('/etc/hostname', path.join(dir, 'host'));
    await expect(writeSignature(dir)).rejects.toMatchObject({ code: 'package_unsafe', message: expect.stringMatching(/host is a link/) });
  });
});
