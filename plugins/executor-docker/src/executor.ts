/**
 * The `docker` executor: each replica runs as one container on the Docker engine of the core's
 * machine (`local: true`: the core's own node and its simulated nodes take `executor: "docker"`).
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
import { Demuxer, LineAssembler } from './output.js';

export const IMAGE_HELP = 'no registry is reachable: import it with docker load / docker import, see plugins/executor-docker/README.md';
const WORKLOAD_ID = /^[A-Za-z0-9_-]+$/;
/** name[:tag][@digest], loosely: it is looked up on the engine, so it must not be able to name another endpoint. */
const IMAGE_REFERENCE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]{0,254}$/;
const CONTAINER_NAME = /^aiplat-[A-Za-z0-9_-]+-r\d+-e\d+$/;
const CONTAINER_ID = /^[0-9a-f]{64}$/;
/** How long `stop()` waits for the engine before it resolves with the stop under way. */
const STOP_UNDER_WAY_MS = 250;
/** After the container exited, how long its log stream may take to end before it is read once more instead. */
const LOG_END_AFTER_EXIT_MS = 3000;
/** The smallest memory limit the engine accepts (6 MiB). */
const MIN_MEMORY_MIB = 6;

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
}

/** The JSON the scheduler stores to `attach`, `stop` and `cleanup` later. */
export interface DockerReplicaHandle {
  [key: string]: unknown;
  containerId: string;
  name: string;
}

interface Opened {
  docker: Docker;
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

  /** Connects to the engine (the plugin's `start`). Methods called before, or after `close()`, throw. */
  open(options: DockerExecutorOptions): void {
    this.close();
    this.state = {
      docker: new Docker({ socketPath: options.socketPath }),
      options,
      storageRoot: path.resolve(options.dataDir, 'storage'),
    };
  }

  /** New settings for what comes next; the followers go on with the client they have. */
  reconfigure(options: DockerExecutorOptions): void {
    if (!this.state) return this.open(options);
    this.state = {
      docker: options.socketPath === this.state.options.socketPath ? this.state.docker : new Docker({ socketPath: options.socketPath }),
      options,
      storageRoot: path.resolve(options.dataDir, 'storage'),
    };
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
    } else if (!IMAGE_REFERENCE.test(spec.image) || spec.image.includes('..')) {
      problems.push(`"${spec.image}" is not an image reference (name[:tag][@digest])`);
    } else {
      try {
        await s.docker.getImage(spec.image).inspect();
      } catch (error) {
        if (statusOf(error) === 404) problems.push(`image ${spec.image} is not on the Docker engine (${IMAGE_HELP})`);
        else problems.push(engineError(s, error).message);
      }
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

    this.starting.add(name);
    try {
      // Checked again: a folder may have been swapped for a link since the submission.
      const binds = (launch.spec.mounts ?? []).map((mount, i) => {
        const problem = mountProblem(mount, s.storageRoot);
        if (problem) throw new Error(`cannot start ${what}: mount ${i + 1}: ${problem}`);
        return `${realSource(mount.source)}:${mount.target}${mount.readOnly ? ':ro' : ''}`;
      });
      let container: Docker.Container;
      try {
        container = await s.docker.createContainer(this.createOptions(s, launch, name, binds));
      } catch (error) {
        // The name exists: this epoch was started before. Follow it, never start a second one.
        if (statusOf(error) === 409) return await this.resume(s, name, what, launch, reporter);
        if (statusOf(error) === 404) throw new Error(`cannot start ${what}: image ${launch.spec.image} is not on the Docker engine (${IMAGE_HELP})`, { cause: error });
        // The engine may have made it before the answer was lost: nothing of this epoch may stay behind.
        await s.docker
          .getContainer(name)
          .remove({ force: true, v: true })
          .catch(() => undefined);
        throw new Error(`cannot start ${what}: ${engineError(s, error).message}`, { cause: error });
      }
      const handle: DockerReplicaHandle = { containerId: container.id, name };
      // From here on the container exists: every outcome goes through the reporter.
      const failure = await startContainer(s, container);
      if (failure) {
        safely(s, () => reporter.lost(`${what} did not start: ${failure}`));
        return { handle };
      }
      safely(s, () => reporter.started({}));
      this.follow(s, handle, reporter, 0);
      return { handle };
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
    if (this.followers.has(h.name)) throw new Error(`container ${h.name} is already being followed`);
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await s.docker.getContainer(h.containerId).inspect();
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
      safely(s, () => reporter.started({}));
    }
    this.follow(s, h, reporter, options.outputOffset);
  }

  async stop(handle: Record<string, unknown>, options: { graceSeconds: number }): Promise<void> {
    const s = this.opened();
    const h = parseHandle(handle);
    const graceSeconds = s.options.stopGraceSeconds ?? options.graceSeconds;
    if (!Number.isFinite(graceSeconds) || graceSeconds < 0) throw new Error(`graceSeconds must be a number ≥ 0, not ${String(graceSeconds)}`);
    const container = s.docker.getContainer(h.containerId);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      if (statusOf(error) === 404) return;
      throw engineError(s, error);
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
        failure = engineError(s, error);
        s.options.logger?.warn({ container: h.name, err: failure.message }, 'stopping a container failed');
      },
    );
    await Promise.race([request, delay(STOP_UNDER_WAY_MS)]);
    if (failure) throw failure;
  }

  async cleanup(handle: Record<string, unknown>): Promise<void> {
    const s = this.opened();
    const h = parseHandle(handle);
    const container = s.docker.getContainer(h.containerId);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      if (statusOf(error) === 404) return;
      throw engineError(s, error);
    }
    assertOurs(info, h);
    if (info.State.Running) throw new Error(`cannot clean up container ${h.name}: it is still running (stop it first)`);
    this.followers.get(h.name)?.stop();
    this.followers.delete(h.name);
    // The container and its anonymous volumes; never an image, a named volume or a mounted folder.
    await container.remove({ v: true }).catch((error: unknown) => {
      const status = statusOf(error);
      if (status !== 404 && status !== 409) throw engineError(s, error);
    });
  }

  /** The container of this epoch exists already: follow it from where the stored output ends. */
  private async resume(s: Opened, name: string, what: string, launch: ReplicaLaunch, reporter: ReplicaReporter): Promise<{ handle: DockerReplicaHandle }> {
    const container = s.docker.getContainer(name);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (error) {
      throw new Error(`cannot start ${what}: its container ${name} exists but cannot be inspected: ${engineError(s, error).message}`, { cause: error });
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
    const handle: DockerReplicaHandle = { containerId: info.Id, name };
    if (info.State.Status === 'created') {
      // Created, never started (the start was cut off): this is that start.
      s.options.logger?.info({ container: name }, `${what}: its container was created but not started; starting it now`);
      const failure = await startContainer(s, s.docker.getContainer(info.Id));
      if (failure) {
        safely(s, () => reporter.lost(`${what} did not start: ${failure}`));
        return { handle };
      }
    } else {
      s.options.logger?.info({ container: name }, `${what} was started before: following its container instead of starting it again`);
    }
    safely(s, () => reporter.started({}));
    this.follow(s, handle, reporter, launch.outputOffset ?? 0);
    return { handle };
  }

  private createOptions(s: Opened, launch: ReplicaLaunch, name: string, binds: string[]): Docker.ContainerCreateOptions {
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
      (bindings[key] ??= []).push({ HostIp: '127.0.0.1', HostPort: String(hostPort) });
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

  private follow(s: Opened, handle: DockerReplicaHandle, reporter: ReplicaReporter, offset: number): void {
    const follower = new Follower(s, handle, reporter, offset, () => {
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

  constructor(
    private readonly s: Opened,
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
    const container = this.s.docker.getContainer(this.handle.containerId);
    let outcome: Outcome | undefined;
    const exit = this.waitForExit(container).then((o) => (outcome = o));
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
  private async waitForExit(container: Docker.Container): Promise<Outcome | undefined> {
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
            lost: `the Docker engine at ${this.s.options.socketPath} stopped answering for ${Math.round(retryMs / 1000)} s (${(error as Error).message}); its container ${this.handle.name} may still run`,
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
async function startContainer(s: Opened, container: Docker.Container): Promise<string | undefined> {
  try {
    await container.start();
    return undefined;
  } catch (error) {
    await container.remove({ force: true, v: true }).catch((removeError: unknown) => {
      if (statusOf(removeError) !== 404) s.options.logger?.warn({ container: container.id, err: (removeError as Error).message }, 'cannot remove a container that failed to start');
    });
    return describeStartFailure(s, error);
  }
}

function describeStartFailure(s: Opened, error: unknown): string {
  const message = engineMessage(error);
  if (/could not select device driver/i.test(message)) {
    return `this Docker host has no NVIDIA container runtime (the engine said: ${message}); install the NVIDIA Container Toolkit and restart dockerd, or run GPU work elsewhere`;
  }
  if (/address already in use|port is already allocated/i.test(message)) {
    return `a host port given to it is already taken (the engine said: ${message})`;
  }
  return statusOf(error) === undefined ? engineError(s, error).message : `the Docker engine refused to start its container: ${message}`;
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
  const { containerId, name } = handle;
  if (typeof containerId !== 'string' || !CONTAINER_ID.test(containerId) || typeof name !== 'string' || !CONTAINER_NAME.test(name)) {
    throw new Error(`not a handle of the docker executor: ${JSON.stringify(handle)}`);
  }
  return { containerId, name };
}

function assertOurs(info: Docker.ContainerInspectInfo, h: DockerReplicaHandle): void {
  if (info.Name !== `/${h.name}` || info.Config.Labels?.[LABELS.managed] !== 'true') {
    throw new Error(`container ${h.containerId.slice(0, 12)} is not ${h.name} made by aiplat: not touching it`);
  }
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The engine's own message for an HTTP error (dockerode wraps it in its own words). */
function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | undefined)?.json;
  if (typeof json?.message === 'string') return json.message;
  return (error as Error | undefined)?.message ?? String(error);
}

/** An error from the engine, or from not reaching it (then naming the socket). */
export function engineError(s: Pick<Opened, 'options'>, error: unknown): Error {
  if (statusOf(error) !== undefined) return new Error(`the Docker engine answered ${statusOf(error)}: ${engineMessage(error)}`, { cause: error });
  return new Error(
    `the Docker engine does not answer on ${s.options.socketPath} (${(error as Error)?.message ?? String(error)}): start dockerd (scripts/provision-docker.sh), or set socketPath in the executor-docker settings`,
    { cause: error },
  );
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
