// Shared by the docker executor's tests: a real Docker engine (scripts/provision-docker.sh sets one
// up here: Debian's docker.io, dockerd started by hand, and local/busybox:1 imported from
// busybox-static, since no registry is reachable), real containers, a real core. The GPUs are
// SIMULATED: a fake nvidia-smi replays a real capture, there is no GPU and no NVIDIA runtime here.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import Docker from 'dockerode';
import type { ReplicaReporter } from '@aiplat/plugin-sdk';
import { waitFor } from '@aiplat/testing';
import type { TestClient } from '@aiplat/testing';

export const IMAGE = 'local/busybox:1';
export const SOCKET = '/var/run/docker.sock';
export const docker = new Docker({ socketPath: SOCKET });

const PROVISION = path.resolve(import.meta.dirname, '../../../scripts/provision-docker.sh');

/**
 * Make sure the engine answers and has the image: runs the provisioning script (quick when all is
 * there). Never skips: without an engine the tests fail, saying how to get one.
 */
export async function ensureEngine(): Promise<void> {
  try {
    execFileSync('sh', [PROVISION], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (error) {
    const e = error as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(
      `these tests need a Docker engine on ${SOCKET} with the image ${IMAGE}: run scripts/provision-docker.sh as root (it failed here: ${String(e.stderr ?? '').trim() || e.message})`,
      { cause: error },
    );
  }
  await docker.getImage(IMAGE).inspect();
}

/** Containers of a workload the docker executor made (running or not): `docker ps -a --filter label=...`. */
export async function containersOf(workloadId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: ['aiplat.managed=true', `aiplat.workload=${workloadId}`] } });
}

export async function managedContainerNames(): Promise<string[]> {
  return (await docker.listContainers({ all: true, filters: { label: ['aiplat.managed=true'] } })).map((c) => c.Names[0] ?? c.Id).sort();
}

export { waitFor, waitForState } from '@aiplat/testing';

/** The stored output of a workload as one text (all pages). */
export async function logText(client: TestClient, id: string): Promise<string> {
  let text = '';
  let after: string | null = null;
  for (;;) {
    const query = new URLSearchParams({ limit: '1000' });
    if (after) query.set('after', after);
    const res = await client.get(`/api/v1/workloads/${id}/logs?${query}`);
    if (res.status !== 200) throw new Error(`logs of ${id}: ${res.status} ${res.text}`);
    text += (res.body.items as { text: string }[]).map((c) => c.text).join('');
    if (!res.body.nextCursor) return text;
    after = res.body.nextCursor;
  }
}

/**
 * A second Docker node over TCP: a server on 127.0.0.1 (never another interface) that pipes each
 * connection to the engine's Unix socket, so `tcp://127.0.0.1:<port>` reaches the same engine the
 * way a remote host's would be reached. `connections` and `requestBytes` count what came through
 * it (connections are kept alive, so the bytes tell each request).
 */
export interface DockerProxy {
  url: string;
  port: number;
  readonly connections: number;
  readonly requestBytes: number;
  close(): Promise<void>;
}

export async function dockerProxy(): Promise<DockerProxy> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let requestBytes = 0;
  const server = net.createServer((client) => {
    connections++;
    const engine = net.connect(SOCKET);
    sockets.add(client).add(engine);
    const drop = () => {
      client.destroy();
      engine.destroy();
      sockets.delete(client);
      sockets.delete(engine);
    };
    client.on('error', drop).on('close', drop);
    engine.on('error', drop).on('close', drop);
    client.on('data', (chunk: Buffer) => (requestBytes += chunk.length));
    client.pipe(engine).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `tcp://127.0.0.1:${port}`,
    port,
    get connections() {
      return connections;
    },
    get requestBytes() {
      return requestBytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A server on 127.0.0.1 that accepts connections and never answers (a host that hangs). */
export async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Containers of the docker executor (or its GPU probe) whose workload id starts with `prefix`: none may stay behind. */
export async function leftovers(prefix: string): Promise<string[]> {
  const managed = await docker.listContainers({ all: true, filters: { label: ['aiplat.managed=true'] } });
  const probes = await docker.listContainers({ all: true, filters: { label: ['aiplat.probe=true'] } });
  return [...managed.filter((c) => c.Labels['aiplat.workload']?.startsWith(prefix)), ...probes].map((c) => c.Names[0] ?? c.Id);
}

/** What a reporter heard, in order. */
export class Recorder implements ReplicaReporter {
  readonly calls: string[] = [];
  text = '';
  offset = 0;
  end: { exitCode: number | null } | { lost: string } | undefined;
  /** The image `started` reported. */
  image: string | undefined;
  started(info: { image?: string } = {}): void {
    this.calls.push('started');
    this.image = info.image;
  }
  output(text: string, endOffset: number): void {
    this.calls.push('output');
    this.text += text;
    this.offset = endOffset;
  }
  exited(info: { exitCode: number | null }): void {
    this.calls.push('exited');
    this.end = { exitCode: info.exitCode };
  }
  lost(reason: string): void {
    this.calls.push('lost');
    this.end = { lost: reason };
  }
  async ended(): Promise<NonNullable<Recorder['end']>> {
    await waitFor(() => this.end !== undefined, 30_000, 'the replica to end');
    return this.end!;
  }
}
