/**
 * `aiplat-plugin publish` against a stand-in registry that records what it receives and answers
 * as ADR 0010 says (201, 409 version_exists, 403, 401).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPackage } from '@aiplat/plugin-sdk/package';
import { copyPlugin, REPO, runCli, scratch } from './helpers.js';

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

describe('aiplat-plugin publish', () => {
  let work: ReturnType<typeof scratch>;
  let server: Server;
  let registry: string;
  let tgz: string;
  const received: Received[] = [];
  const published = new Set<string>();

  beforeAll(async () => {
    work = scratch();
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const reply = (status: number, value: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(value));
        };
        if (req.headers.authorization === 'Bearer wrong') return reply(401, { error: { code: 'unauthenticated', message: 'Unknown publisher token' } });
        if (req.headers.authorization === 'Bearer other') return reply(403, { error: { code: 'forbidden', message: 'hello-shout belongs to the publisher "acme"' } });
        const key = createHash('sha256').update(body).digest('hex');
        if (published.has(key)) return reply(409, { error: { code: 'version_exists', message: 'hello-shout 1.0.0 is already published' } });
        published.add(key);
        reply(201, { id: 'hello-shout', version: '1.0.0', sha256: key, size: body.length });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const plugin = copyPlugin(path.join(REPO, 'examples', 'hello-shout'), work.dir);
    const pack = await runCli(['pack', plugin, '--out', path.join(work.dir, 'hello-shout.tgz')], { cwd: work.dir });
    expect(pack.code, pack.stderr).toBe(0);
    tgz = path.join(work.dir, 'hello-shout.tgz');
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    work?.remove();
  });

  it('POSTs the package to /api/v1/packages with the token and prints the answer', async () => {
    const res = await runCli(['publish', tgz, '--registry', `${registry}/`, '--token', 'secret-token'], { cwd: work.dir });
    expect(res.code, res.stderr).toBe(0);
    const request = received.at(-1)!;
    expect(request).toMatchObject({ method: 'POST', url: '/api/v1/packages' });
    expect(request.headers).toMatchObject({ authorization: 'Bearer secret-token', 'content-type': 'application/gzip' });
    expect(request.body.equals(readFileSync(tgz))).toBe(true);
    expect(JSON.parse(res.stdout)).toEqual({ id: 'hello-shout', version: '1.0.0', sha256: (await readPackage(tgz)).sha256, size: request.body.length });
    expect(res.stderr).toContain('warning: hello-shout 1.0.0 is unsigned');
    expect(res.stderr).toContain('published hello-shout 1.0.0');
  });

  it('409: says the version is taken and to bump it', async () => {
    const res = await runCli(['publish', tgz, '--registry', registry], { cwd: work.dir, env: { AIPLAT_REGISTRY_TOKEN: 'secret-token' } });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('aiplat-plugin: version 1.0.0 of hello-shout is already published; bump the version');
    expect(received.at(-1)!.headers.authorization).toBe('Bearer secret-token');
  });

  it("403 and 401: the registry's reason", async () => {
    const other = await runCli(['publish', tgz, '--registry', registry, '--token', 'other'], { cwd: work.dir });
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('the registry refused to publish hello-shout (403): hello-shout belongs to the publisher "acme"');
    const wrong = await runCli(['publish', tgz, '--registry', registry, '--token', 'wrong'], { cwd: work.dir });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('the registry did not accept the token (401): Unknown publisher token');
  });

  it('a plugin folder is packed first', async () => {
    published.clear();
    const res = await runCli(['publish', path.join(work.dir, 'hello-shout'), '--no-build', '--registry', registry, '--token', 'secret-token'], { cwd: work.dir });
    expect(res.code, res.stderr).toBe(0);
    expect(received.at(-1)!.body.equals(readFileSync(tgz))).toBe(true);
  });

  it('needs a token and a registry (exit 2), and says when the registry cannot be reached', async () => {
    const noToken = await runCli(['publish', tgz, '--registry', registry], { cwd: work.dir });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('no publisher token: pass --token <token> or set AIPLAT_REGISTRY_TOKEN');
    const noRegistry = await runCli(['publish', tgz, '--token', 'x'], { cwd: work.dir });
    expect(noRegistry.code).toBe(2);
    expect(noRegistry.stderr).toContain('no registry: pass --registry <url>');
    // A port nothing listens on: one a server had a moment ago.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const down = await runCli(['publish', tgz, '--registry', `http://127.0.0.1:${port}`, '--token', 'x'], { cwd: work.dir });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach the registry at http://127.0.0.1:${port}: ECONNREFUSED`);
  });
});
