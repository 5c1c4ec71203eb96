/**
 * Docker engines the plugin drives: the core's own (the `socketPath` setting) and remote hosts that
 * administrators add as nodes (`POST /api/v1/nodes` with `kind: "docker"`), one client per node id.
 * The connector fills `DockerHosts`; the executor and the image routes read it.
 */
import { createHash } from 'node:crypto';
import Docker from 'dockerode';

/** One engine: a client and how to name it in a sentence. */
export interface Engine {
  docker: Docker;
  /** For messages: the socket path, or the URL of a remote host. */
  where: string;
  /** Set for a remote host added as a node: its node id. */
  nodeId?: string;
}

/** A remote host, as its last successful `connect()` left it. */
export interface RemoteHost {
  nodeId: string;
  /** The URL as given (`tcp://10.0.0.5:2376`). */
  url: string;
  /** Of the URL and the secrets: a new client is made when they change. */
  fingerprint: string;
  engine: Engine;
  /** The engine lists the `nvidia` runtime (the NVIDIA Container Toolkit). */
  nvidia: boolean;
  gpuProbeImage?: string;
}

/**
 * The label a connected host's node carries (its URL). A replica placed on a node with it runs on
 * that host's engine, never on the core's, even while the host is not connected (it then fails).
 */
export const REMOTE_LABEL = 'docker.host';

/** The remote hosts connected in this process, by node id. */
export class DockerHosts {
  private readonly hosts = new Map<string, RemoteHost>();

  get(nodeId: string): RemoteHost | undefined {
    return this.hosts.get(nodeId);
  }

  set(host: RemoteHost): void {
    this.hosts.set(host.nodeId, host);
  }

  delete(nodeId: string): void {
    this.hosts.delete(nodeId);
  }

  all(): RemoteHost[] {
    return [...this.hosts.values()];
  }

  /** The host once it is connected, or undefined after `ms` (or when `signal` aborts). */
  async waitFor(nodeId: string, ms: number, signal?: AbortSignal): Promise<RemoteHost | undefined> {
    const until = Date.now() + ms;
    for (;;) {
      const host = this.hosts.get(nodeId);
      if (host || signal?.aborted || Date.now() >= until) return host;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(1, until - Date.now()))));
    }
  }
}

/**
 * `url` of a docker node: `unix:///path/to/docker.sock`, or `tcp://`, `http://`, `https://` with a
 * host (name, IPv4 or [IPv6]) and a port. No user, path or query.
 */
export const DOCKER_URL_PATTERN =
  '^(unix:///[A-Za-z0-9._/@+-]+|(tcp|http|https)://([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]{2,45}\\]):[0-9]{1,5}/?)$';
const DOCKER_URL = new RegExp(DOCKER_URL_PATTERN);

export const SECRET_FIELDS = ['tlsCa', 'tlsCert', 'tlsKey'] as const;

export interface DockerTarget {
  url: string;
  /** Where its containers' ports are reached and replicas find each other: the URL's host; 127.0.0.1 for a socket. */
  address: string;
  options: Docker.DockerOptions;
  tls: boolean;
  fingerprint: string;
}

/** Reads a node's settings and secrets into client options; throws a sentence naming what is wrong. */
export function dockerTarget(settings: Record<string, unknown>, secrets: Record<string, string>): DockerTarget {
  const url = settings.url;
  if (typeof url !== 'string' || !DOCKER_URL.test(url)) {
    throw new Error(
      `"url" must be unix:///path/to/docker.sock, tcp://host:port, http://host:port or https://host:port, not ${JSON.stringify(url)}`,
    );
  }
  for (const [name, value] of Object.entries(secrets)) {
    if (!(SECRET_FIELDS as readonly string[]).includes(name)) throw new Error(`unknown secret "${name}": a docker node takes ${SECRET_FIELDS.join(', ')}`);
    if (typeof value !== 'string' || !value.includes('-----BEGIN ')) throw new Error(`secret "${name}" must be PEM text (-----BEGIN ...)`);
  }
  const { tlsCa: ca, tlsCert: cert, tlsKey: key } = secrets;
  if (Boolean(cert) !== Boolean(key)) throw new Error('tlsCert and tlsKey go together: give both (the client certificate and its key) or neither');
  const fingerprint = createHash('sha256').update(JSON.stringify([url, ca ?? '', cert ?? '', key ?? ''])).digest('hex');
  // Every option named, so that DOCKER_HOST, DOCKER_CERT_PATH... of the core's environment never leak in.
  const none = { socketPath: undefined, host: undefined, port: undefined, protocol: undefined, ca: undefined, cert: undefined, key: undefined, timeout: undefined };
  if (url.startsWith('unix://')) {
    if (ca || cert) throw new Error('a unix:// socket takes no TLS secrets');
    return { url, address: '127.0.0.1', options: { ...none, socketPath: url.slice('unix://'.length) }, tls: false, fingerprint };
  }
  const parsed = new URL(url.replace(/^tcp:/, 'http:'));
  const scheme = url.slice(0, url.indexOf(':'));
  if (scheme === 'http' && (ca || cert)) throw new Error('http:// does not use TLS: write https:// (or tcp://) to use the TLS secrets');
  const tls = scheme === 'https' || (scheme === 'tcp' && Boolean(ca || cert));
  const port = Number(parsed.port);
  if (!(port >= 1 && port <= 65535)) throw new Error(`the port of ${url} must be between 1 and 65535`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    url,
    address: host,
    options: { ...none, host, port, protocol: tls ? 'https' : 'http', ...(ca ? { ca } : {}), ...(cert ? { cert, key } : {}) },
    tls,
    fingerprint,
  };
}

export function dockerClient(target: DockerTarget): Docker {
  return new Docker(target.options);
}

/** `promise`, or a rejection saying what took too long. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${Math.round(ms / 100) / 10} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The engine's own message for an HTTP error (dockerode wraps it in its own words). */
export function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | undefined)?.json;
  if (typeof json?.message === 'string') return json.message;
  if (Buffer.isBuffer(json)) return json.toString('utf8').trim() || String(error);
  return (error as Error | undefined)?.message ?? String(error);
}

/** An error from the engine, or from not reaching it (then naming the socket or the host). */
export function engineError(engine: Pick<Engine, 'where' | 'nodeId'>, error: unknown): Error {
  if (statusOf(error) !== undefined) {
    const who = engine.nodeId ? `the Docker host ${engine.where} of node ${engine.nodeId}` : 'the Docker engine';
    return new Error(`${who} answered ${statusOf(error)}: ${engineMessage(error)}`, { cause: error });
  }
  const why = (error as Error)?.message ?? String(error);
  if (engine.nodeId) return new Error(`the Docker host ${engine.where} of node ${engine.nodeId} does not answer (${why})`, { cause: error });
  return new Error(
    `the Docker engine does not answer on ${engine.where} (${why}): start dockerd (scripts/provision-docker.sh), or set socketPath in the executor-docker settings`,
    { cause: error },
  );
}
