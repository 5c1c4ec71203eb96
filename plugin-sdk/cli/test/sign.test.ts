/**
 * keygen → pack --key → verify, and sign/verify of packages changed after packing.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPackage, packFolder, readPackage } from '@aiplat/plugin-sdk/package';
import { copyPlugin, REPO, runCli, scratch } from './helpers.js';

describe('keygen, pack --key, sign and verify', () => {
  let work: ReturnType<typeof scratch>;
  let keyFile: string;
  let publicFile: string;
  let publicKey: { keyId: string; publisher: string; algorithm: string; publicKey: string };
  let signed: string;
  let unsigned: string;

  beforeAll(async () => {
    work = scratch();
    keyFile = path.join(work.dir, 'acme-key.json');
    publicFile = path.join(work.dir, 'trusted.json');
    const keygen = await runCli(['keygen', '--publisher', 'acme', '--out', keyFile], { cwd: work.dir });
    expect(keygen.code, keygen.stderr).toBe(0);
    publicKey = JSON.parse(keygen.stdout);
    writeFileSync(publicFile, JSON.stringify([publicKey]));
    const plugin = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir);
    const pack = await runCli(['pack', plugin, '--key', keyFile, '--out', path.join(work.dir, 'signed.tgz')], { cwd: work.dir });
    expect(pack.code, pack.stderr).toBe(0);
    expect(pack.stderr).toContain(`signed by acme (key ${publicKey.keyId})`);
    signed = path.join(work.dir, 'signed.tgz');
    const plain = await runCli(['pack', plugin, '--no-build', '--out', path.join(work.dir, 'unsigned.tgz')], { cwd: work.dir });
    expect(plain.code, plain.stderr).toBe(0);
    unsigned = path.join(work.dir, 'unsigned.tgz');
  });
  afterAll(() => work?.remove());

  it('keygen writes a private key pair file and prints only the public half', () => {
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const pair = JSON.parse(readFileSync(keyFile, 'utf8'));
    expect(pair).toMatchObject({ publisher: 'acme', algorithm: 'ed25519', keyId: publicKey.keyId, publicKey: publicKey.publicKey });
    expect(pair.privateKey).toContain('BEGIN PRIVATE KEY');
    expect(Object.keys(publicKey).sort()).toEqual(['algorithm', 'keyId', 'publicKey', 'publisher']);
    expect(publicKey.keyId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('keygen never replaces a key file without --force', async () => {
    const before = readFileSync(keyFile, 'utf8');
    const again = await runCli(['keygen', '--publisher', 'acme', '--out', keyFile], { cwd: work.dir });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists: pass --force to replace it');
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
    const other = path.join(work.dir, 'other-key.json');
    writeFileSync(other, 'old', { mode: 0o644 });
    const forced = await runCli(['keygen', '--publisher', 'acme', '--out', other, '--force'], { cwd: work.dir });
    expect(forced.code, forced.stderr).toBe(0);
    expect(statSync(other).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(other, 'utf8')).keyId).not.toBe(publicKey.keyId);
  });

  it('keygen refuses a bad publisher and a missing one (exit 2)', async () => {
    const bad = await runCli(['keygen', '--publisher', 'a b', '--out', path.join(work.dir, 'x.json')], { cwd: work.dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('publisher "a b" must be');
    const missing = await runCli(['keygen'], { cwd: work.dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '-p, --publisher <name>' not specified");
  });

  it('verify: signed with a trusted key (exit 0)', async () => {
    const res = await runCli(['verify', signed, '--trusted', publicFile], { cwd: work.dir });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout.trim()).toBe(`signed: signed by acme (key ${publicKey.keyId})`);
    // A key pair file and { keys: [...] } are accepted as trusted keys too.
    expect((await runCli(['verify', signed, '--trusted', keyFile], { cwd: work.dir })).code).toBe(0);
    writeFileSync(path.join(work.dir, 'keys.json'), JSON.stringify({ keys: [publicKey] }));
    expect((await runCli(['verify', signed, '--trusted', path.join(work.dir, 'keys.json')], { cwd: work.dir })).code).toBe(0);
  });

  it('verify: untrusted without the key, unsigned without a signature (exit 1 unless --allow-unsigned)', async () => {
    const untrusted = await runCli(['verify', signed], { cwd: work.dir });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stdout).toMatch(/^untrusted: signed by acme with key [0-9a-f]{16}, which is not among the trusted keys/);
    const plain = await runCli(['verify', unsigned, '--trusted', publicFile], { cwd: work.dir });
    expect(plain.code).toBe(1);
    expect(plain.stdout.trim()).toBe('unsigned: the package is not signed (its checksums match)');
    expect((await runCli(['verify', unsigned, '--allow-unsigned'], { cwd: work.dir })).code).toBe(0);
    expect((await runCli(['verify', signed, '--allow-unsigned'], { cwd: work.dir })).code).toBe(0);
  });

  it('verify: one byte changed in a packaged file is "modified", even with --allow-unsigned', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-cli-modified-'));
    try {
      await extractPackage(signed, path.join(dir, 'pkg'));
      const bundle = path.join(dir, 'pkg', 'dist', 'backend', 'index.js');
      const bytes = readFileSync(bundle);
      bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x01;
      writeFileSync(bundle, bytes);
      // Repacked with the original SIGNATURE.
      const tampered = path.join(dir, 'tampered.tgz');
      await packFolder(path.join(dir, 'pkg'), tampered);
      const res = await runCli(['verify', tampered, '--trusted', publicFile, '--allow-unsigned'], { cwd: work.dir });
      expect(res.code).toBe(1);
      expect(res.stdout.trim()).toBe('modified: dist/backend/index.js does not match its checksum in SIGNATURE (the file was changed)');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('verify: a file that is not a package (one byte of the .tgz changed) is invalid', async () => {
    const bytes = readFileSync(signed);
    bytes[Math.floor(bytes.length / 2)] = bytes[Math.floor(bytes.length / 2)]! ^ 0xff;
    const broken = path.join(work.dir, 'broken.tgz');
    writeFileSync(broken, bytes);
    const res = await runCli(['verify', broken, '--trusted', publicFile], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('aiplat-plugin: invalid: ');
  });

  it('sign: signs an unsigned package, to --out or in place', async () => {
    const out = path.join(work.dir, 'resigned.tgz');
    const res = await runCli(['sign', unsigned, '--key', keyFile, '--out', out], { cwd: work.dir });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain(`hello-shout 1.0.0 signed by acme (key ${publicKey.keyId})`);
    expect((await runCli(['verify', out, '--trusted', publicFile], { cwd: work.dir })).code).toBe(0);
    // The unsigned original is untouched; the same files, now signed.
    expect((await readPackage(unsigned)).signature?.signature).toBeUndefined();
    expect((await readPackage(out)).files).toEqual((await readPackage(unsigned)).files);
    const copy = path.join(work.dir, 'inplace.tgz');
    writeFileSync(copy, readFileSync(unsigned));
    expect((await runCli(['sign', copy, '--key', keyFile], { cwd: work.dir })).code).toBe(0);
    expect((await runCli(['verify', copy, '--trusted', publicFile], { cwd: work.dir })).stdout).toMatch(/^signed: /);
  });

  it('sign and pack refuse a public key file, naming it', async () => {
    const res = await runCli(['sign', unsigned, '--key', publicFile], { cwd: work.dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(publicFile);
    const single = path.join(work.dir, 'public.json');
    writeFileSync(single, JSON.stringify(publicKey));
    const pack = await runCli(['pack', path.join(work.dir, 'hello-shout'), '--no-build', '--key', single, '--out', path.join(work.dir, 'never.tgz')], { cwd: work.dir });
    expect(pack.code).toBe(1);
    expect(pack.stderr).toContain(`${single} holds no private key`);
    expect(existsSync(path.join(work.dir, 'never.tgz'))).toBe(false);
  });
});
