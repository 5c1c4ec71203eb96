/**
 * The `docker` executor: each replica runs as one container on a Docker engine: the core's own
 * (`local: true`: the core's own node and its simulated nodes take `executor: "docker"`), or, for a
 * node added with `POST /api/v1/nodes` `{ kind: "docker" }`, that host's engine (the connector keeps
 * one client per node id in `DockerHosts`). The handle names the node, so attach, stop, cleanup and
 * processIds find the same engine again; handles without one are the local engine's.
 *
 * The container's name is the fence: `aiplat-<workload>-r<replica>-e<epoch>`. The engine creates a
 * name once, so a replica delivered again (a core restart between starting it and recording that it
 * had) finds its container (409 on create) and follows it instead of starting a second one.
 *
 * Output is read from the engine's log of the container (`logs?follow`), stdout and stderr merged
 * in the order the engine logged them; offsets count those bytes from the container's start, so a
 * restarted core re-attaches exactly where its stored output ends (it reads the same log).
 *
 * Reporting mirrors the local executor: a `start()` that resolves reports `started` once, then
 * `output` zero or more times, then exactly one of `exited` and `lost`. `start()` rejects only when
 * nothing was created (a bad launch, a missing image, a fenced epoch in this process); once a
 * container exists every outcome comes through the reporter, and a container that could not be
 * started (a host port taken, no NVIDIA runtime) is removed before `lost` is reported.
 */
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import type { Executor, Logger, ReplicaLaunch, ReplicaReporter, WorkloadMount, WorkloadSpec } from '@aiplat/plugin-sdk';
import { DockerHosts, REMOTE_LABEL, engineError, engineMessage, statusOf, withTimeout, type Engine, type RemoteHost } from './engine.js';
import { isImageReference } from './images.js';
import { Demuxer, LineAssembler } from './output.js';

export const IMAGE_HELP = 'no registry is reachable: import it with docker load / docker import, see plugins/executor-docker/README.md';
const WORKLOAD_ID = /^[A-Za-z0-9_-]+$/;
const CONTAINER_NAME = /^aiplat-[A-Za-z0-9_-]+-r\d+-e\d+$/;
const CONTAINER_ID = /^[0-9a-f]{64}$/;
/** How long `stop()` waits for the engine before it resolves with the stop under way. */
const STOP_UNDER_WAY_MS = 250;
/** After the container exited, how long its log stream may take to end before it is read once more instead. */
const LOG_END_AFTER_EXIT_MS = 3000;
/** The smallest memory limit the engine accepts (6 MiB). */
const MIN_MEMORY_MIB = 6;
/** How long validate() waits for a remote host's answer about an image. */
const REMOTE_CHECK_MS = 5000;
/** Node ids in handles: anything printable without a slash, as the ledger takes them. */
const NODE_ID = /^[^\s/]{1,200}$/;

export const LABELS = {
  managed: 'aiplat.managed',
  workload: 'aiplat.workload',
  replica: 'aiplat.replica',
  epoch: 'aiplat.epoch',
  node: 'aiplat.node',
} as const;

export interface DockerExecutorOptions {
  /** The engine's Unix socket. */
  socketPath: string;
  /** The core's data folder: mounts must come from `<dataDir>/storage`. */
  dataDir: string;
  logger?: Logger;
  /** Overrides the core's grace period on stop. */
  stopGraceSeconds?: number;
  /** Run docker-init as PID 1 (default true). */
  init?: boolean;
  /** How long a follower keeps trying an engine that does not answer before it reports the replica lost; default 60 s. */
  engineRetryMs?: number;
  /**
   * After a restart, how long `attach` waits for a remote host's node to be connected again (the
   * core connects its docker nodes at start and every discovery round) before its replica is
   * reported lost; default 180 s.
   */
  remoteConnectWaitMs?: number;
}

/** The JSON the scheduler stores to `attach`, `stop` and `cleanup` later. */
export interface DockerReplicaHandle {
  [key: string]: unknown;
  containerId: string;
  name: string;
  /** The node it was placed on (absent in handles older than remote hosts: the local engine). */
  nodeId?: string;
  /** It runs on the remote host of `nodeId`, not on the core's engine. */
  remote?: true;
}

interface Opened {
  /** The core's own engine (`socketPath`). */
  local: Engine;
  options: DockerExecutorOptions;
  storageRoot: string;
}

type Outcome = { exitCode: number; oomLimitBytes?: number } | { lost: string };

export function containerName(launch: Pick<ReplicaLaunch, 'workloadId' | 'replica' | 'epoch'>): string {
  if (!WORKLOAD_ID.test(launch.workloadId)) throw new Error(`workload id "${launch.workloadId}" may only hold letters, digits, "_" and "-"`);
  for (const [name, value] of [['replica', launch.replica], ['epoch', launch.epoch]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number ≥ 0, not ${String(value)}`);
  }
  return `aiplat-${launch.workloadId}-r${launch.replica}-e${launch.epoch}`;
}

export class DockerExecutor implements Executor {
  readonly name = 'docker';
  readonly local = true;
  private state: Opened | undefined;
  /** Containers being followed, by name. */
  private readonly followers = new Map<string, Follower>();
  /** Names a `start()` of this executor is creating: a second start of the same epoch is refused at once. */
  private readonly starting = new Set<string>();

  /** `hosts`: the remote hosts the connector keeps (shared with it; they outlive `close()`). */
  constructor(readonly hosts: DockerHosts = new DockerHosts()) {}

  /** Connects to the engine (the plugin's `start`). Methods called before, or after `close()`, throw. */
  open(options: DockerExecutorOptions): void {
    this.close();
    this.state = {
      local: { docker: new Docker({ socketPath: options.socketPath }), where: options.socketPath },
      options,
      storageRoot: path.resolve(options.dataDir, 'storage'),
    };
  }

  /** New settings for what comes next; the followers go on with the client they have. */
  reconfigure(options: DockerExecutorOptions): void {
    if (!this.state) return this.open(options);
    this.state = {
      local: options.socketPath === this.state.options.socketPath ? this.state.local : { docker: new Docker({ socketPath: options.socketPath }), where: options.socketPath },
      options,
      storageRoot: path.resolve(options.dataDir, 'storage'),
    };
  }

  /** The core's own engine (image routes of the local and simulated nodes). */
  localEngine(): Engine {
    return this.opened().local;
  }

  /** Stops following containers without stopping them: the next core re-attaches. */
  close(): void {
    for (const follower of this.followers.values()) follower.stop();
    this.followers.clear();
    this.state = undefined;
  }

  async validate(spec: WorkloadSpec): Promise<string[]> {
    const s = this.state;
    if (!s) return ['the docker executor is not running (the executor-docker plugin has not started)'];
    const problems: string[] = [];
    if (typeof spec.image !== 'string' || spec.image.trim() === '') {
      problems.push('a docker workload needs an "image" (e.g. "local/busybox:1")');
    } else if (!isImageReference(spec.image)) {
      problems.push(`"${spec.image}" is not an image reference (name[:tag][@digest])`);
    } else {
      const problem = await this.imageProblem(s, spec.image);
      if (problem) problems.push(problem);
    }
    (spec.mounts ?? []).forEach((mount, i) => {
      const problem = mountProblem(mount, s.storageRoot);
      if (problem) problems.push(`mount ${i + 1}: ${problem}`);
    });
    if (spec.workingDir !== undefined && !path.posix.isAbsolute(spec.workingDir)) {
      problems.push(`workingDir "${spec.workingDir}" must be an absolute path inside the container`);
    }
    const memory = spec.resources?.memoryMiB;
    if (memory !== undefined && memory < MIN_MEMORY_MIB) problems.push(`resources.memoryMiB must be at least ${MIN_MEMORY_MIB} for a container (the engine's smallest limit)`);
    const cpu = spec.resources?.cpu;
    if (cpu !== undefined && !(cpu > 0)) problems.push('resources.cpu must be more than 0 for a container');
    return problems;
  }

  async start(launch: ReplicaLaunch, reporter: ReplicaReporter): Promise<{ handle: DockerReplicaHandle }> {
    const s = this.opened();
    const name = containerName(launch);
    const what = `replica ${launch.replica} of workload ${launch.workloadId} (epoch ${launch.epoch})`;
    const command = launch.spec.command;
    if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string')) {
      throw new Error(`cannot start ${what}: its command must be a non-empty list of strings`);
    }
    if (typeof launch.spec.image !== 'string' || launch.spec.image === '') throw new Error(`cannot start ${what}: it names no image`);
    if (this.starting.has(name) || this.followers.has(name)) throw new Error(`${what} is already running (container ${name})`);
    const engine = this.engineOfLaunch(s, launch, what);
    const mounts = launch.spec.mounts ?? [];
    if (engine.nodeId && mounts.length > 0) {
      // The storage area is a folder of the core's machine: another host has no such folder.
      throw new Error(
        `cannot start ${what}: node ${engine.nodeId} is a remote Docker host (${engine.where}), and mounts from the storage area exist only on the core's machine; run it without mounts, or on a node of the core's machine`,
      );
    }

    this.starting.add(name);
    try {
      // Checked again: a folder may have been swapped for a link since the submission.
      const binds = mounts.map((mount, i) => {
        const problem = mountProblem(mount, s.storageRoot);
        if (problem) throw new Error(`cannot start ${what}: mount ${i + 1}: ${problem}`);
        return `${realSource(mount.source)}:${mount.target}${mount.readOnly ? ':ro' : ''}`;
      });
      const handle = (containerId: string): DockerReplicaHandle => ({ containerId, name, nodeId: launch.nodeId, ...(engine.nodeId ? { remote: true as const } : {}) });
      let container: Docker.Container;
      try {
        container = await engine.docker.createContainer(this.createOptions(s, engine, launch, name, binds));
      } catch (error) {
        // The name exists: this epoch was started before. Follow it, never start a second one.
        if (statusOf(error) === 409) return await this.resume(s, engine, name, what, launch, reporter, handle);
        if (statusOf(error) === 404) throw new Error(`cannot start ${what}: image ${launch.spec.image} is not on ${engineName(engine)} (${IMAGE_HELP})`, { cause: error });
        // The engine may have made it before the answer was lost: nothing of this epoch may stay behind.
        await engine.docker
          .getContainer(name)
          .remove({ force: true, v: true })
          .catch(() => undefined);
        throw new Error(`cannot start ${what}: ${engineError(engine, error).message}`, { cause: error });
      }
      const h = handle(container.id);
      // From here on the container exists: every outcome goes through the reporter.
      // The image it really runs (a tag may be moved to another image later): recorded on the replica.
      const image = await container.inspect().then(
        (info) => info.Image,
        () => undefined,
      );
      const failure = await startContainer(s, engine, container);
      if (failure) {
        safely(s, () => reporter.lost(`${what} did not start: ${failure}`));
        return { handle: h };
      }
      safely(s, () => reporter.started(image ? { image } : {}));
      this.follow(s, engine, h, reporter, 0);
      return { handle: h };
    } finally {
      this.starting.delete(name);
    }
  }

  async attach(handle: Record<string, unknown>, reporter: ReplicaReporter, options: { outputOffset: number }): Promise<void> {
    const s = this.opened();
    const h = parseHandle(handle);
    if (!Number.isSafeInteger(options.outputOffset) || options.outputOffset < 0) {
      throw new Error(`outputOffset must be a byte offset (a whole number ≥ 0), not ${String(options.outputOffset)}`);
    }
    if (this.followers.has(h.name) || this.starting.has(h.name)) throw new Error(`container ${h.name} is already being followed`);
    // Held while it looks at the container: a second attach meanwhile would start a second follower.
    this.starting.add(h.name);
    try {
      await this.attachTo(s, h, reporter, options.outputOffset);
    } finally {
      this.starting.delete(h.name);
    }
  }

  private async attachTo(s: Opened, h: DockerReplicaHandle, reporter: ReplicaReporter, outputOffset: number): Promise<void> {
    const engine = this.engineOfHandle(s, h);
    if (!engine) {
      // A remote host not connected (yet) after a restart: the follower waits for its node to be
      // connected, then follows; the container runs on meanwhile. Lost only if it never is.
      s.options.logger?.warn({ container: h.name, node: h.nodeId }, 're-attaching: the Docker host of the node is not connected yet; waiting for it');
      this.follow(s, () => this.hosts.get(h.nodeId!)?.engine, h, reporter, outputOffset);
      return;
    }
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await engine.docker.getContainer(h.containerId).inspect();
    } catch (error) {
      if (statusOf(error) === 404) {
        safely(s, () => reporter.lost(`its container ${h.name} is gone (removed outside aiplat, or the engine's data was lost)`));
        return;
      }
      // The engine does not answer now: the follower keeps trying (and reports lost if it never does).
      s.options.logger?.warn({ container: h.name, err: (error as Error).message }, 're-attaching: the Docker engine does not answer yet; following anyway');
    }
    if (info) {
      assertOurs(info, h);
      if (info.State.Status === 'created') {
        safely(s, () => reporter.lost(`its container ${h.name} was created but never started`));
        return;
      }
      // The core may have stopped before recording that it started: `started` is idempotent there.
      safely(s, () => reporter.started(info.Image ? { image: info.Image } : {}));
    }
    this.follow(s, engine, h, reporter, outputOffset);
  }

  async stop(handle: Record<string, unknown>, options: { graceSeconds: number }): Promise<void> {
    const s = this.opened();
    const h = parseHandle(handle);
    const graceSeconds = s.options.stopGraceSeconds ?? options.graceSeconds;
    if (!Number.isFinite(graceSeconds) || graceSeconds < 0) throw new Error(`graceSeconds must be a number ≥ 0, not ${String(graceSeconds)}`);
    const engine = this.requireEngine(s, h, 'stop');
    const container = engine.docker.getContainer(h.containerId);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      if (statusOf(error) === 404) return;
      throw engineError(engine, error);
    }
    assertOurs(info, h);
    if (!info.State.Running) return;
    // The engine does it: the image's stop signal (SIGTERM), `t` seconds, then SIGKILL. It goes on
    // without us, so resolve once it is under way instead of holding the caller for the grace period.
    let failure: Error | undefined;
    const request = container.stop({ t: Math.ceil(graceSeconds) }).then(
      () => undefined,
      (error: unknown) => {
        const status = statusOf(error);
        if (status === 304 || status === 404) return;
        failure = engineError(engine, error);
        s.options.logger?.warn({ container: h.name, err: failure.message }, 'stopping a container failed');
      },
    );
    await Promise.race([request, delay(STOP_UNDER_WAY_MS)]);
    if (failure) throw failure;
  }

  async cleanup(handle: Record<string, unknown>): Promise<void> {
    const s = this.opened();
    const h = parseHandle(handle);
    const engine = this.requireEngine(s, h, 'clean up');
    const container = engine.docker.getContainer(h.containerId);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      if (statusOf(error) === 404) return;
      throw engineError(engine, error);
    }
    assertOurs(info, h);
    if (info.State.Running) throw new Error(`cannot clean up container ${h.name}: it is still running (stop it first)`);
    this.followers.get(h.name)?.stop();
    this.followers.delete(h.name);
    // The container and its anonymous volumes; never an image, a named volume or a mounted folder.
    await container.remove({ v: true }).catch((error: unknown) => {
      const status = statusOf(error);
      if (status !== 404 && status !== 409) throw engineError(engine, error);
    });
  }

  /**
   * Host PIDs of the replica's container (as the host's `ps` sees them: `docker top`), so the GPU
   * sampler does not count their memory as held outside aiplat. [] when it does not run.
   */
  async processIds(handle: Record<string, unknown>): Promise<number[]> {
    const s = this.opened();
    const h = parseHandle(handle);
    const engine = this.engineOfHandle(s, h);
    if (!engine) return [];
    const container = engine.docker.getContainer(h.containerId);
    let top: { Titles?: string[]; Processes?: string[][] };
    try {
      top = (await container.top({ ps_args: '-o pid' })) as typeof top;
    } catch (error) {
      if (notRunning(error)) return [];
      try {
        // A host whose ps takes no `-o` (busybox): the default columns, which hold PID too.
        top = (await container.top()) as typeof top;
      } catch (again) {
        if (notRunning(again)) return [];
        throw engineError(engine, again);
      }
    }
    const column = (top.Titles ?? []).findIndex((t) => t.trim().toUpperCase() === 'PID');
    if (column < 0) return [];
    return (top.Processes ?? []).map((row) => Number(row[column])).filter((pid) => Number.isSafeInteger(pid) && pid > 0);
  }

  /** The engine a launch runs on: its node's remote host when it has one, else the core's. */
  private engineOfLaunch(s: Opened, launch: ReplicaLaunch, what: string): Engine {
    const host = this.hosts.get(launch.nodeId);
    if (host) return host.engine;
    const url = launch.nodeLabels?.[REMOTE_LABEL];
    if (url) {
      throw new Error(
        `cannot start ${what}: node ${launch.nodeId} is the Docker host ${url}, which is not connected (yet): the core connects it when the node is added and at every discovery round (GET /api/v1/nodes says why it is not ready)`,
      );
    }
    return s.local;
  }

  /** The engine of a handle; undefined for a remote host that is not connected (and no follower holds it). */
  private engineOfHandle(s: Opened, h: DockerReplicaHandle): Engine | undefined {
    if (!h.remote || !h.nodeId) return s.local;
    return this.hosts.get(h.nodeId)?.engine ?? this.followers.get(h.name)?.engine;
  }

  private requireEngine(s: Opened, h: DockerReplicaHandle, action: string): Engine {
    const engine = this.engineOfHandle(s, h);
    if (!engine) throw new Error(`cannot ${action} container ${h.name}: the Docker host of node ${h.nodeId} is not connected (it runs on that host, if it still runs)`);
    return engine;
  }

  /** Whether an image is on an engine a replica may run on: the core's, or any connected host. */
  private async imageProblem(s: Opened, image: string): Promise<string | undefined> {
    const hosts: RemoteHost[] = this.hosts.all();
    const check = (engine: Engine, ms?: number): Promise<'found' | 'missing' | Error> => {
      const inspect = engine.docker.getImage(image).inspect();
      return (ms ? withTimeout(inspect, ms, `the Docker host ${engine.where}`) : inspect).then(
        () => 'found' as const,
        (error: unknown) => (statusOf(error) === 404 ? ('missing' as const) : engineError(engine, error)),
      );
    };
    const [local, ...remote] = await Promise.all([check(s.local), ...hosts.map((h) => check(h.engine, REMOTE_CHECK_MS))]);
    if (local === 'found' || remote.includes('found')) return undefined;
    if (hosts.length === 0) return local instanceof Error ? local.message : `image ${image} is not on the Docker engine (${IMAGE_HELP})`;
    const where = ["the core's machine", ...hosts.map((h) => `node ${h.nodeId}`)];
    const silent = [local, ...remote].flatMap((r) => (r instanceof Error ? [r.message] : []));
    return `image ${image} is on none of the Docker engines (${where.join(', ')}) (${IMAGE_HELP}; or POST /api/plugins/executor-docker/nodes/<node>/images/import)${silent.length ? `; ${silent.join('; ')}` : ''}`;
  }

  /** The container of this epoch exists already: follow it from where the stored output ends. */
  private async resume(
    s: Opened,
    engine: Engine,
    name: string,
    what: string,
    launch: ReplicaLaunch,
    reporter: ReplicaReporter,
    handleOf: (containerId: string) => DockerReplicaHandle,
  ): Promise<{ handle: DockerReplicaHandle }> {
    const container = engine.docker.getContainer(name);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      throw new Error(`cannot start ${what}: its container ${name} exists but cannot be inspected: ${engineError(engine, error).message}`, { cause: error });
    }
    const labels = info.Config.Labels ?? {};
    if (
      labels[LABELS.managed] !== 'true' ||
      labels[LABELS.workload] !== launch.workloadId ||
      labels[LABELS.replica] !== String(launch.replica) ||
      labels[LABELS.epoch] !== String(launch.epoch)
    ) {
      throw new Error(`cannot start ${what}: a container named ${name} exists that aiplat did not make for it (remove it)`);
    }
    const handle = handleOf(info.Id);
    if (info.State.Status === 'created') {
      // Created, never started (the start was cut off): this is that start.
      s.options.logger?.info({ container: name }, `${what}: its container was created but not started; starting it now`);
      const failure = await startContainer(s, engine, engine.docker.getContainer(info.Id));
      if (failure) {
        safely(s, () => reporter.lost(`${what} did not start: ${failure}`));
        return { handle };
      }
    } else {
      s.options.logger?.info({ container: name }, `${what} was started before: following its container instead of starting it again`);
    }
    safely(s, () => reporter.started(info.Image ? { image: info.Image } : {}));
    this.follow(s, engine, handle, reporter, launch.outputOffset ?? 0);
    return { handle };
  }

  private createOptions(s: Opened, engine: Engine, launch: ReplicaLaunch, name: string, binds: string[]): Docker.ContainerCreateOptions {
    const spec = launch.spec;
    const gpus = !launch.simulated && launch.devices.length > 0;
    const env: Record<string, string> = { ...launch.env };
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const port of spec.ports ?? []) {
      const hostPort = launch.ports[port.name];
      if (!hostPort) continue;
      // Without a containerPort the process listens on the host port's number inside the container too.
      const containerPort = port.containerPort ?? hostPort;
      const key = `${containerPort}/tcp`;
      exposed[key] = {};
      // On the core's machine only it (readiness checks, a gateway) reaches the port; a remote host's
      // port is reached over the network, at the node's address.
      (bindings[key] ??= []).push({ HostIp: engine.nodeId ? '0.0.0.0' : '127.0.0.1', HostPort: String(hostPort) });
      // Inside the container PORT_<NAME> (and PORT) say where to listen.
      env[`PORT_${port.name.toUpperCase().replace(/-/g, '_')}`] = String(containerPort);
      if (spec.ports?.[0] === port) env.PORT = String(containerPort);
    }
    if (gpus) {
      // The container sees only its cards, numbered from 0.
      env.CUDA_VISIBLE_DEVICES = launch.devices.map((_, i) => i).join(',');
      env.NVIDIA_VISIBLE_DEVICES = launch.devices.map((d) => d.uuid).join(',');
    } else {
      // No cards, even where the NVIDIA runtime is the default and the image asks for all of them.
      env.NVIDIA_VISIBLE_DEVICES = 'void';
    }
    const memory = spec.resources?.memoryMiB;
    const cpu = spec.resources?.cpu;
    // A gang's ranks find each other at MASTER_ADDR:MASTER_PORT, the node's address, and the
    // collective libraries open more ports and share memory between them: they use the host's
    // network and IPC, as the local executor's processes do. Other containers get their own.
    const gang = spec.kind !== 'service' && (spec.replicas ?? 1) > 1;
    return {
      name,
      Image: spec.image,
      // The command is the whole argv (the image's ENTRYPOINT is not used), never run by a shell.
      Entrypoint: [''],
      Cmd: spec.command,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: spec.workingDir ?? '',
      Labels: {
        [LABELS.managed]: 'true',
        [LABELS.workload]: launch.workloadId,
        [LABELS.replica]: String(launch.replica),
        [LABELS.epoch]: String(launch.epoch),
        [LABELS.node]: launch.nodeId,
      },
      ExposedPorts: exposed,
      HostConfig: {
        Binds: binds,
        PortBindings: bindings,
        ...(gang ? { NetworkMode: 'host', IpcMode: 'host' } : {}),
        ...(memory ? { Memory: Math.round(memory * 1024 * 1024), MemorySwap: Math.round(memory * 1024 * 1024) } : {}),
        ...(cpu ? { NanoCpus: Math.round(cpu * 1e9) } : {}),
        Init: s.options.init ?? true,
        RestartPolicy: { Name: 'no' },
        // Output is read back from the engine's log: keep it where the logs endpoint finds all of it.
        LogConfig: { Type: 'json-file', Config: {} },
        ...(gpus ? { DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: launch.devices.map((d) => d.uuid), Capabilities: [['gpu']] }] } : {}),
      },
    };
  }

  private follow(s: Opened, engine: Engine | (() => Engine | undefined), handle: DockerReplicaHandle, reporter: ReplicaReporter, offset: number): void {
    const follower = new Follower(s, engine, handle, reporter, offset, () => {
      if (this.followers.get(handle.name) === follower) this.followers.delete(handle.name);
    });
    this.followers.set(handle.name, follower);
    follower.start();
  }

  private opened(): Opened {
    if (!this.state) throw new Error('the docker executor is not running (the executor-docker plugin is stopped or has not started)');
    return this.state;
  }
}

/**
 * Follows one container: its log (from `offset`) and its exit. Reports the rest of the output,
 * then exactly one `exited` or `lost`; reports nothing once stopped.
 */
class Follower {
  private stopped = false;
  private readonly abort = new AbortController();
  private stream: Readable | undefined;
  private readonly lines: LineAssembler;
  /** The engine it follows on (undefined while it waits for a remote host to be connected). */
  engine: Engine | undefined;

  constructor(
    private readonly s: Opened,
    private readonly engineOf: Engine | (() => Engine | undefined),
    private readonly handle: DockerReplicaHandle,
    private readonly reporter: ReplicaReporter,
    offset: number,
    private readonly onDone: () => void,
  ) {
    this.lines = new LineAssembler(offset, (text, endOffset) => {
      if (!this.stopped) safely(this.s, () => this.reporter.output(text, endOffset));
    });
  }

  start(): void {
    void this.run().catch((error: unknown) => {
      if (!this.stopped) this.finish({ lost: `following its container ${this.handle.name} failed: ${(error as Error).message}` });
    });
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.stream?.destroy();
    this.stream = undefined;
  }

  private async run(): Promise<void> {
    this.engine = typeof this.engineOf === 'function' ? this.engineOf() : this.engineOf;
    if (!this.engine && typeof this.engineOf === 'function') {
      const waitMs = this.s.options.remoteConnectWaitMs ?? 180_000;
      const until = Date.now() + waitMs;
      while (!this.stopped && !(this.engine = this.engineOf()) && Date.now() < until) await delay(Math.min(500, Math.max(1, until - Date.now())));
      if (this.stopped) return;
      if (!this.engine) {
        return this.finish({
          lost: `the Docker host of node ${this.handle.nodeId} was not connected within ${Math.round(waitMs / 1000)} s after the core started (GET /api/v1/nodes says why); its container ${this.handle.name} may still run there`,
        });
      }
    }
    const engine = this.engine!;
    const container = engine.docker.getContainer(this.handle.containerId);
    let outcome: Outcome | undefined;
    const exit = this.waitForExit(engine, container).then((o) => (outcome = o));
    while (!this.stopped) {
      const read = await this.readLog(container, true, exit);
      if (this.stopped) return;
      if (read === 'gone') return this.finish(outcome ?? { lost: `its container ${this.handle.name} is gone (removed outside aiplat?)` });
      if (read instanceof Error) {
        // The engine is in trouble: the exit watch decides (it gives up after a while).
        if (outcome) return this.finish(outcome);
        await Promise.race([exit, delay(1000)]);
        continue;
      }
      // The log ended: normally because the container stopped.
      const done = outcome ?? (await Promise.race([exit, delay(2000).then(() => undefined)]));
      if (this.stopped) return;
      if (done) {
        // Cut short after the exit: read what is left.
        if (read === 'cut') await this.readLog(container, false);
        return this.finish(done);
      }
      // Still running: the stream was dropped; read on from where we are.
      await delay(200);
    }
  }

  /** The container's exit code (and whether the kernel's OOM killer ended it), or why it was lost. */
  private async waitForExit(engine: Engine, container: Docker.Container): Promise<Outcome | undefined> {
    let troubleSince: number | undefined;
    while (!this.stopped) {
      try {
        const result = (await container.wait({ abortSignal: this.abort.signal })) as { StatusCode: number };
        try {
          const info = await container.inspect({ abortSignal: this.abort.signal });
          if (info.State.OOMKilled) return { exitCode: result.StatusCode, oomLimitBytes: info.HostConfig.Memory ?? 0 };
        } catch (error) {
          if (statusOf(error) === 404) return { lost: `its container ${this.handle.name} was removed (outside aiplat?) when it ended with code ${result.StatusCode}` };
        }
        return { exitCode: result.StatusCode };
      } catch (error) {
        if (this.stopped) return undefined;
        if (statusOf(error) === 404) return { lost: `its container ${this.handle.name} is gone (removed outside aiplat?)` };
        troubleSince ??= Date.now();
        const retryMs = this.s.options.engineRetryMs ?? 60_000;
        if (Date.now() - troubleSince >= retryMs) {
          return {
            lost: `the Docker ${engine.nodeId ? `host of node ${engine.nodeId}` : 'engine'} at ${engine.where} stopped answering for ${Math.round(retryMs / 1000)} s (${(error as Error).message}); its container ${this.handle.name} may still run`,
          };
        }
        await delay(1000);
      }
    }
    return undefined;
  }

  /**
   * Reads the log from its start (the assembler skips what was taken before): following, until
   * the stream ends ('ended'), or is cut a while after the container exited ('cut'); or once.
   */
  private async readLog(container: Docker.Container, follow: boolean, exit?: Promise<unknown>): Promise<'ended' | 'cut' | 'gone' | Error> {
    this.lines.restart();
    const demux = new Demuxer((payload) => this.lines.take(payload));
    let data: unknown;
    try {
      data = follow
        ? await container.logs({ follow: true, stdout: true, stderr: true, abortSignal: this.abort.signal })
        : await container.logs({ follow: false, stdout: true, stderr: true, abortSignal: this.abort.signal });
    } catch (error) {
      if (statusOf(error) === 404) return 'gone';
      return error instanceof Error ? error : new Error(String(error));
    }
    if (Buffer.isBuffer(data)) {
      demux.push(data);
      return 'ended';
    }
    const stream = data as Readable;
    if (this.stopped) {
      stream.destroy();
      return 'ended';
    }
    this.stream = stream;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const settle = (result: 'ended' | 'cut' | Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.stream === stream) this.stream = undefined;
        resolve(result);
      };
      stream.on('data', (chunk: Buffer) => demux.push(chunk));
      stream.once('end', () => settle('ended'));
      stream.once('error', (error) => settle(error));
      stream.once('close', () => settle(new Error('the log stream closed before its end')));
      void exit?.then(() => {
        timer = setTimeout(() => {
          settle('cut');
          stream.destroy();
        }, LOG_END_AFTER_EXIT_MS);
      });
    });
  }

  private finish(outcome: Outcome): void {
    if (this.stopped) return;
    this.lines.flush(true);
    if ('exitCode' in outcome && outcome.oomLimitBytes !== undefined) {
      // Said in the log (the bytes are not the container's: the offset stays where its output ends).
      const limit = outcome.oomLimitBytes > 0 ? ` of ${Math.round(outcome.oomLimitBytes / 1024 / 1024)} MiB` : '';
      safely(this.s, () => this.reporter.output(`aiplat: the container ran out of memory (its limit${limit}) and was killed\n`, this.lines.delivered));
    }
    this.stop();
    this.onDone();
    safely(this.s, () => ('lost' in outcome ? this.reporter.lost(outcome.lost) : this.reporter.exited({ exitCode: outcome.exitCode, signal: null })));
  }
}

/** Starts a created container; on failure removes it (no orphans) and says why. */
async function startContainer(s: Opened, engine: Engine, container: Docker.Container): Promise<string | undefined> {
  try {
    await container.start();
    return undefined;
  } catch (error) {
    await container.remove({ force: true, v: true }).catch((removeError: unknown) => {
      if (statusOf(removeError) !== 404) s.options.logger?.warn({ container: container.id, err: (removeError as Error).message }, 'cannot remove a container that failed to start');
    });
    return describeStartFailure(engine, error);
  }
}

function describeStartFailure(engine: Engine, error: unknown): string {
  const message = engineMessage(error);
  if (/could not select device driver/i.test(message)) {
    return `this Docker host has no NVIDIA container runtime (the engine said: ${message}); install the NVIDIA Container Toolkit and restart dockerd, or run GPU work elsewhere`;
  }
  if (/address already in use|port is already allocated/i.test(message)) {
    return `a host port given to it is already taken (the engine said: ${message})`;
  }
  return statusOf(error) === undefined ? engineError(engine, error).message : `${engineName(engine)} refused to start its container: ${message}`;
}

/** Why a mount is refused, or undefined. Only folders inside the core's storage area may be mounted. */
export function mountProblem(mount: WorkloadMount, storageRoot: string): string | undefined {
  if (typeof mount?.source !== 'string' || typeof mount.target !== 'string') return 'it needs a "source" and a "target"';
  const outside = `"${mount.source}" is a mount outside storage: a docker workload may only mount folders inside ${storageRoot}`;
  if (!path.isAbsolute(mount.source)) return outside;
  if (!path.posix.isAbsolute(mount.target)) return `its target "${mount.target}" must be an absolute path inside the container`;
  if (/[:,]/.test(mount.source) || /[:,]/.test(mount.target)) return 'its source and target may not contain ":" or ","';
  if (!inside(path.resolve(mount.source), storageRoot)) return outside;
  // Links are followed as the engine will follow them.
  if (existsSync(mount.source)) {
    let real: string;
    let realRoot: string;
    try {
      real = realpathSync(mount.source);
      realRoot = realpathSync(storageRoot);
    } catch {
      return outside;
    }
    if (!inside(real, realRoot)) return `${outside} (it links to ${real})`;
  }
  return undefined;
}

function realSource(source: string): string {
  return existsSync(source) ? realpathSync(source) : path.resolve(source);
}

/** Strictly inside (the storage root itself holds every team's files: not mountable whole). */
function inside(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Handles come back from the database: only a container of ours is ever stopped or removed. */
function parseHandle(handle: Record<string, unknown>): DockerReplicaHandle {
  const { containerId, name, nodeId, remote } = handle;
  if (
    typeof containerId !== 'string' ||
    !CONTAINER_ID.test(containerId) ||
    typeof name !== 'string' ||
    !CONTAINER_NAME.test(name) ||
    (nodeId !== undefined && (typeof nodeId !== 'string' || !NODE_ID.test(nodeId))) ||
    (remote !== undefined && (remote !== true || nodeId === undefined))
  ) {
    throw new Error(`not a handle of the docker executor: ${JSON.stringify(handle)}`);
  }
  return { containerId, name, ...(nodeId !== undefined ? { nodeId } : {}), ...(remote ? { remote } : {}) };
}

function assertOurs(info: Docker.ContainerInspectInfo, h: DockerReplicaHandle): void {
  if (info.Name !== `/${h.name}` || info.Config.Labels?.[LABELS.managed] !== 'true') {
    throw new Error(`container ${h.containerId.slice(0, 12)} is not ${h.name} made by aiplat: not touching it`);
  }
}

function engineName(engine: Engine): string {
  return engine.nodeId ? `the Docker host of node ${engine.nodeId} (${engine.where})` : 'the Docker engine';
}

/** `docker top` of a container that is gone or not running. */
function notRunning(error: unknown): boolean {
  const status = statusOf(error);
  return status === 404 || status === 409 || (status === 500 && /is not running|no such container/i.test(engineMessage(error)));
}

function safely(s: Opened, report: () => void): void {
  try {
    report();
  } catch (error) {
    s.options.logger?.error({ err: error }, 'a replica reporter threw');
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
