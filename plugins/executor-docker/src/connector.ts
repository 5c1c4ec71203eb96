/**
 * The `docker` node connector: a remote Docker engine becomes a node of its own
 * (`POST /api/v1/nodes` `{ kind: "docker", name, settings: { url, gpuProbeImage? }, secrets? }`).
 * `connect()` reaches the engine (a few seconds at most), reports its facts and its cards, and keeps
 * one client per node id in `DockerHosts`, where the executor finds it for the node's replicas.
 */
import type { ConnectedNode, DeviceSample, JsonSchema, Logger, NodeConnection, NodeConnector } from '@aiplat/plugin-sdk';
import { samplesOf } from '@aiplat/plugin-sdk/devices';
import { DOCKER_URL_PATTERN, REMOTE_LABEL, SECRET_FIELDS, dockerClient, dockerTarget, engineMessage, withTimeout, type DockerHosts, type DockerTarget, type RemoteHost } from './engine.js';
import { probeGpus } from './gpu-probe.js';
import { IMAGE_REFERENCE_PATTERN } from './images.js';

/** What `GET /info` answers, as far as it is read here. */
interface EngineInfo {
  ID?: string;
  Name?: string;
  ServerVersion?: string;
  OperatingSystem?: string;
  OSType?: string;
  Architecture?: string;
  NCPU?: number;
  MemTotal?: number;
  Runtimes?: Record<string, unknown>;
}

/** How long `connect()` waits for the engine's `info`. */
export const CONNECT_TIMEOUT_MS = 5000;

export const settingsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: {
      type: 'string',
      maxLength: 300,
      pattern: DOCKER_URL_PATTERN,
      title: 'The Docker engine: unix:///var/run/docker.sock, tcp://host:2375, http://host:2375 or https://host:2376 (TLS; tcp:// uses TLS too when TLS secrets are given)',
    },
    gpuProbeImage: {
      type: 'string',
      maxLength: 255,
      pattern: IMAGE_REFERENCE_PATTERN,
      title: 'An image on that host with nvidia-smi (e.g. nvidia/cuda:12.4.1-base-ubuntu22.04): it finds and samples the cards. Without it the node has no GPUs',
    },
  },
};

export interface DockerConnectorOptions {
  logger?: () => Logger | undefined;
  connectTimeoutMs?: number;
}

export class DockerConnector implements NodeConnector {
  readonly kind = 'docker';
  readonly settingsSchema = settingsSchema;
  readonly secretFields = [...SECRET_FIELDS];

  constructor(
    private readonly hosts: DockerHosts,
    private readonly options: DockerConnectorOptions = {},
  ) {}

  async connect(connection: NodeConnection): Promise<ConnectedNode> {
    const { host, info, target } = await this.reach(connection);
    const nvidia = host.nvidia;
    const labels: Record<string, string> = {
      [REMOTE_LABEL]: host.url,
      'docker.hostname': String(info.Name ?? 'unknown'),
      'docker.version': String(info.ServerVersion ?? 'unknown'),
      'docker.os': String(info.OperatingSystem ?? info.OSType ?? 'unknown'),
      'docker.arch': String(info.Architecture ?? 'unknown'),
      'docker.nvidia-runtime': String(nvidia),
    };
    let devices: ConnectedNode['devices'] = [];
    if (nvidia && host.gpuProbeImage && (await this.hasImage(host, host.gpuProbeImage))) {
      // A probe that fails makes the node not ready: a broken driver must not look like "no GPUs".
      const report = await probeGpus(host.engine, host.gpuProbeImage);
      devices = report.devices;
      if (report.driverVersion) labels['nvidia.driver'] = report.driverVersion;
      if (report.cudaVersion) labels['nvidia.cuda'] = report.cudaVersion;
    } else if (nvidia) {
      const why = host.gpuProbeImage ? `the GPU probe image ${host.gpuProbeImage} is not on the host` : 'no gpuProbeImage is set';
      this.options.logger?.()?.warn({ node: connection.nodeId, url: host.url }, `Docker host has the NVIDIA runtime, but ${why}: its GPUs are not discovered`);
    }
    // Kept only once it answered: a host that does not answer keeps its earlier client (its followers go on).
    this.hosts.set(host);
    return {
      name: String(info.Name ?? connection.nodeId),
      address: target.address,
      labels,
      executors: ['docker'],
      devices,
      ...(typeof info.NCPU === 'number' ? { cpu: info.NCPU } : {}),
      ...(typeof info.MemTotal === 'number' ? { memoryMiB: Math.floor(info.MemTotal / 1024 / 1024) } : {}),
    };
  }

  async sample(connection: NodeConnection): Promise<DeviceSample[]> {
    let host = this.hosts.get(connection.nodeId);
    if (!host || host.fingerprint !== dockerTarget(connection.settings, connection.secrets ?? {}).fingerprint) host = (await this.reach(connection)).host;
    if (!host.nvidia || !host.gpuProbeImage) return [];
    return samplesOf(await probeGpus(host.engine, host.gpuProbeImage));
  }

  disconnect(nodeId: string): void {
    // Followers of its running containers keep the client they have until their containers end.
    this.hosts.delete(nodeId);
  }

  /** A client for the connection (the kept one while its URL and secrets are the same) and the engine's `info`. */
  private async reach(connection: NodeConnection): Promise<{ host: RemoteHost; info: EngineInfo; target: DockerTarget }> {
    const target = dockerTarget(connection.settings, connection.secrets ?? {});
    const kept = this.hosts.get(connection.nodeId);
    const docker = kept?.fingerprint === target.fingerprint ? kept.engine.docker : dockerClient(target);
    const timeoutMs = this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const abort = new AbortController();
    let info: EngineInfo;
    try {
      const request = (docker as unknown as { info(options: { abortSignal: AbortSignal }): Promise<EngineInfo> }).info({ abortSignal: abort.signal });
      info = await withTimeout(request, timeoutMs, `Docker host ${target.url}`);
    } catch (error) {
      abort.abort();
      const message = engineMessage(error);
      if (/did not answer within/.test(message)) throw new Error(`Docker host ${target.url} does not answer: no answer within ${timeoutMs / 1000} s`, { cause: error });
      throw new Error(`Docker host ${target.url} does not answer: ${tlsHint(message, target.tls)}`, { cause: error });
    }
    if (!info || typeof info !== 'object' || typeof info.ID !== 'string') {
      throw new Error(`Docker host ${target.url} answered, but not as a Docker engine does (GET /info gave no engine facts)`);
    }
    const runtimes = info.Runtimes ?? {};
    const gpuProbeImage = typeof connection.settings.gpuProbeImage === 'string' ? connection.settings.gpuProbeImage : undefined;
    const host: RemoteHost = {
      nodeId: connection.nodeId,
      url: target.url,
      fingerprint: target.fingerprint,
      engine: { docker, where: target.url, nodeId: connection.nodeId },
      nvidia: Object.prototype.hasOwnProperty.call(runtimes, 'nvidia'),
      ...(gpuProbeImage ? { gpuProbeImage } : {}),
    };
    return { host, info, target };
  }

  private async hasImage(host: RemoteHost, image: string): Promise<boolean> {
    try {
      await withTimeout(host.engine.docker.getImage(image).inspect(), CONNECT_TIMEOUT_MS, `Docker host ${host.url}`);
      return true;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return false;
      throw new Error(`Docker host ${host.url} does not answer: ${engineMessage(error)}`, { cause: error });
    }
  }
}

/** TLS failures say what to check. */
function tlsHint(message: string, tls: boolean): string {
  if (!tls && /socket hang up|ECONNRESET|Client sent an HTTP request to an HTTPS server/i.test(message)) {
    return `${message} (does it want TLS? write https:// and give tlsCa, tlsCert and tlsKey)`;
  }
  if (tls && /certificate|self[- ]signed|SSL|TLS|EPROTO/i.test(message)) return `${message} (check tlsCa, tlsCert and tlsKey)`;
  return message;
}
