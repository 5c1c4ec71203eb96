/**
 * GPUs of a remote Docker host, found through the host itself: a short container of an image that
 * has `nvidia-smi` (the node's `gpuProbeImage`, e.g. `nvidia/cuda:12.4.1-base-ubuntu22.04`), given
 * every card (`--gpus all`) and the host's PID namespace (so the processes it lists carry the host's
 * PIDs, as `docker top` does), runs `nvidia-smi -q -x`; its XML is read by the SDK's parser.
 */
import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import { parseNvidiaSmiXml, type NvidiaSmiReport } from '@aiplat/plugin-sdk/devices';
import { engineError, engineMessage, statusOf, withTimeout, type Engine } from './engine.js';
import { Demuxer } from './output.js';

export const PROBE_LABEL = 'aiplat.probe';
/** Within the core's own limit on connect() (15 s), after the engine's answer (5 s at most). */
const PROBE_TIMEOUT_MS = 9000;

export interface ProbeOptions {
  /** Ask the engine for every NVIDIA card (default true; the tests probe a fake nvidia-smi without). */
  requestGpus?: boolean;
  timeoutMs?: number;
}

/** Runs the probe container once and parses what it printed; the container is removed whatever happens. */
export async function probeGpus(engine: Engine, image: string, options: ProbeOptions = {}): Promise<NvidiaSmiReport> {
  const timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  const name = `aiplat-probe-${randomBytes(6).toString('hex')}`;
  const where = engine.nodeId ? `on node ${engine.nodeId} (${engine.where})` : `on ${engine.where}`;
  let container: Docker.Container;
  try {
    container = await engine.docker.createContainer({
      name,
      Image: image,
      Entrypoint: [''],
      Cmd: ['nvidia-smi', '-q', '-x'],
      Labels: { [PROBE_LABEL]: 'true' },
      HostConfig: {
        PidMode: 'host',
        NetworkMode: 'none',
        LogConfig: { Type: 'json-file', Config: {} },
        ...(options.requestGpus === false ? {} : { DeviceRequests: [{ Driver: 'nvidia', Count: -1, Capabilities: [['gpu']] }] }),
      },
    });
  } catch (error) {
    if (statusOf(error) === 404) throw new Error(`the GPU probe image ${image} is not on the Docker host ${where}`, { cause: error });
    throw new Error(`the GPU probe ${where} could not be created: ${engineError(engine, error).message}`, { cause: error });
  }
  try {
    const run = async (): Promise<NvidiaSmiReport> => {
      await container.start();
      const { StatusCode: code } = (await container.wait()) as { StatusCode: number };
      const stdout = await logText(container, { stdout: true, stderr: false });
      if (code !== 0) {
        const said = (await logText(container, { stdout: true, stderr: true })).split('\n').find((l) => l.trim() !== '')?.trim();
        throw new Error(`nvidia-smi -q -x in the GPU probe ${where} exited with code ${code}${said ? `: ${said}` : ''}`);
      }
      try {
        return parseNvidiaSmiXml(stdout);
      } catch (error) {
        throw new Error(`the GPU probe ${where} printed no usable nvidia-smi report: ${(error as Error).message}`, { cause: error });
      }
    };
    return await withTimeout(run(), timeoutMs, `the GPU probe ${where}`).catch((error: unknown) => {
      if (statusOf(error) !== undefined) throw new Error(`the GPU probe ${where} failed: ${engineMessage(error)}`, { cause: error });
      throw error;
    });
  } finally {
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

async function logText(container: Docker.Container, which: { stdout: boolean; stderr: boolean }): Promise<string> {
  const data = (await container.logs({ follow: false, ...which })) as unknown as Buffer;
  const chunks: Buffer[] = [];
  new Demuxer((payload) => chunks.push(Buffer.from(payload))).push(Buffer.isBuffer(data) ? data : Buffer.from(String(data)));
  return Buffer.concat(chunks).toString('utf8');
}
