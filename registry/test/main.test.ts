/**
 * `npm run registry` as a real process: configuration errors at start, the publisher commands,
 * and a running registry that picks up publisher changes without a restart and stops on SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '@aiplat/plugin-sdk/package';
import { hashToken } from '../src/publishers.js';
import { buildPackage, publish, removeTempDirs, tempDir } from './helpers.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'registry/src/main.ts');

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_') && k !== 'LOG_LEVEL'));
  return { ...env, ...extra };
}

function run(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: cleanEnv(env), encoding: 'utf8', timeout: 60_000 });
}

const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await removeTempDirs();
});

describe('npm run registry', () => {
  it('refuses to start with an invalid configuration, listing every problem', () => {
    const r = run([], { REGISTRY_PORT: '99999', REGISTRY_MAX_UPLOAD: 'lots', LOG_LEVEL: 'chatty', REGISTRY_PUBLIC_URL: 'ftp://x' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/configuration is not valid/);
    expect(r.stderr).toMatch(/REGISTRY_PORT must be a port number from 0 to 65535, not "99999"/);
    expect(r.stderr).toMatch(/REGISTRY_MAX_UPLOAD must be a size such as 512MiB/);
    expect(r.stderr).toMatch(/LOG_LEVEL must be one of/);
    expect(r.stderr).toMatch(/REGISTRY_PUBLIC_URL must be the http\(s\) URL/);
  });

  it('refuses to start with an invalid publishers file, naming the entry and field', async () => {
    const dir = tempDir('badpub');
    const file = path.join(dir, 'publishers.json');
    await writeFile(file, JSON.stringify([{ name: 'acme', tokenSha256: 'secret-in-clear', keys: [] }]));
    const r = run([], { REGISTRY_DATA_DIR: dir, REGISTRY_PUBLISHERS: file, REGISTRY_PORT: '0' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[0\]\.tokenSha256 must be the hex SHA-256 of the publisher's token/);
  });

  it('adds publishers and keys, keeping only hashes and public keys', async () => {
    const dir = tempDir('cli');
    const env = { REGISTRY_DATA_DIR: dir };
    const key = generateKeyPair('acme');
    const keyFile = path.join(dir, 'acme.key.json');
    await writeFile(keyFile, JSON.stringify(key));

    const added = run(['add-publisher', 'acme', '--key', keyFile], env);
    expect(added.status, added.stderr).toBe(0);
    const token = added.stdout.trim();
    expect(token).toMatch(/^aiplat_pub_[A-Za-z0-9_-]{43}$/);
    expect(added.stderr).toMatch(/Added publisher "acme"/);
    const text = await readFile(path.join(dir, 'publishers.json'), 'utf8');
    expect(text).not.toContain(token);
    expect(text).not.toContain('PRIVATE KEY');
    expect(JSON.parse(text)).toEqual([{ name: 'acme', tokenSha256: hashToken(token), keys: [{ keyId: key.keyId, publisher: 'acme', algorithm: 'ed25519', publicKey: key.publicKey }] }]);

    const again = run(['add-publisher', 'acme'], env);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/publisher "acme" already exists/);
    const unknown = run(['frobnicate'], env);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it('starts, publishes with a token from the file, takes a rotated token without a restart, and stops on SIGTERM', async () => {
    const dir = tempDir('proc');
    const env = { REGISTRY_DATA_DIR: dir };
    const key = generateKeyPair('acme');
    const keyFile = path.join(dir, 'acme.key.json');
    await writeFile(keyFile, JSON.stringify(key));
    const token = run(['add-publisher', 'acme', '--key', keyFile], env).stdout.trim();

    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], { cwd: ROOT, env: cleanEnv({ ...env, REGISTRY_PORT: '0', REGISTRY_HOST: '127.0.0.1' }) });
    children.push(child);
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the registry did not start:\n${output}`)), 30_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk;
        const m = /"url":"(http:\/\/[^"]+)".*"msg":"registry listening"/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
      child.on('exit', (code) => reject(new Error(`the registry exited with ${code}:\n${output}`)));
    });

    // Started from a checkout, it serves this checkout's @aiplat packages on /npm/ with no separate step.
    const sdk = await fetch(`${url}/npm/@aiplat%2fplugin-sdk`);
    expect(sdk.status).toBe(200);
    const version = JSON.parse(await readFile(path.join(ROOT, 'plugin-sdk', 'package.json'), 'utf8')).version as string;
    expect(((await sdk.json()) as { versions: Record<string, unknown> }).versions).toHaveProperty(version);

    const first = await publish(url, token, await buildPackage({ id: 'proc-demo', version: '1.0.0' }, key));
    expect(first.status).toBe(201);
    expect((await first.json()) as unknown).toMatchObject({ signed: true, keyId: key.keyId });

    const rotated = run(['rotate-token', 'acme'], env);
    expect(rotated.status, rotated.stderr).toBe(0);
    const newToken = rotated.stdout.trim();
    const old = await publish(url, token, await buildPackage({ id: 'proc-demo', version: '1.0.1' }, key));
    expect(old.status).toBe(401);
    const fresh = await publish(url, newToken, await buildPackage({ id: 'proc-demo', version: '1.0.1' }, key));
    expect(fresh.status).toBe(201);

    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toMatch(/"msg":"published"/);
  });
});
