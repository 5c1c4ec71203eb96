// Shared by the docker executor's tests: a real Docker engine (scripts/provision-docker.sh sets one
// up here: Debian's docker.io, dockerd started by hand, and local/busybox:1 imported from
// busybox-static, since no registry is reachable), real containers, a real core. The GPUs are
// SIMULATED: a fake nvidia-smi replays a real capture, there is no GPU and no NVIDIA runtime here.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import Docker from 'dockerode';
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
