/**
 * moto in server mode (`moto[server]` from PyPI): a STAND-IN for S3 that tests run themselves.
 * scripts/provision-moto.sh installs it (a venv in node_modules/.cache, about a minute the first
 * time, instant after); `startMoto` starts one server on a free port and waits until it answers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..', '..');

export interface Moto {
  endpoint: string;
  stop(): Promise<void>;
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startMoto(): Promise<Moto> {
  const provision = spawnSync('sh', [path.join(REPO_ROOT, 'scripts', 'provision-moto.sh')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 280_000 });
  if (provision.status !== 0) throw new Error(`scripts/provision-moto.sh failed (status ${provision.status}):\n${provision.stderr}${provision.error ? `\n${provision.error.message}` : ''}`);
  const motoServer = provision.stdout.trim().split('\n').pop()!;
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let log = '';
  const child: ChildProcess = spawn(motoServer, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  child.stderr!.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}):\n${log}`);
    const up = await fetch(`${endpoint}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() - started > 30_000) throw new Error(`moto_server did not answer at ${endpoint} within 30 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
