/**
 * executor-docker: contributes the `docker` executor (ARCHITECTURE §7) to the core's
 * `scheduler.executors` extension point, and the `docker` node connector to
 * `scheduler.nodeConnectors`. The executor is `local`: it drives the Docker engine of the core's own
 * machine, so the core's node and its simulated nodes accept `executor: "docker"` workloads; nodes
 * added as remote Docker hosts (`POST /api/v1/nodes` `{ kind: "docker" }`) run theirs on their own
 * engine, through the client the connector keeps for them. Image routes list, pull, import and
 * remove images per node.
 */
import { definePlugin, schedulerExtensionPoints, type Logger, type PluginManifest } from '@aiplat/plugin-sdk';
import { DockerConnector } from './connector.js';
import { DockerHosts } from './engine.js';
import { DockerExecutor } from './executor.js';
import { registerImageRoutes } from './routes.js';

export { DockerExecutor, containerName, mountProblem, LABELS, type DockerExecutorOptions, type DockerReplicaHandle } from './executor.js';
export { DockerConnector, settingsSchema } from './connector.js';
export { DockerHosts, REMOTE_LABEL, dockerTarget, type Engine, type RemoteHost } from './engine.js';
export { probeGpus } from './gpu-probe.js';

export interface ExecutorDockerConfig {
  socketPath: string;
  stopGraceSeconds?: number;
  init: boolean;
  /** Largest file `POST .../images/import` takes, in GiB. */
  importMaxGiB: number;
  /** A pull that reports no progress for this long is given up. */
  pullStallSeconds: number;
}

interface Registered {
  executor: DockerExecutor;
  config: ExecutorDockerConfig | undefined;
  logger: Logger | undefined;
}

/**
 * What each registration made, found again at start. One process may run several cores (tests):
 * each registers this plugin with its own manifest record, so that is the key.
 */
const registrations = new WeakMap<PluginManifest, Registered>();

function registered(manifest: PluginManifest): Registered {
  const found = registrations.get(manifest);
  if (!found) throw new Error('executor-docker was started without being registered');
  return found;
}

const GIB = 1024 ** 3;

export default definePlugin<ExecutorDockerConfig>({
  register(env) {
    // One set of remote hosts per registration, shared by the connector, the executor and the routes.
    const hosts = new DockerHosts();
    const executor = new DockerExecutor(hosts);
    const state: Registered = { executor, config: undefined, logger: undefined };
    registrations.set(env.manifest, state);
    env.contribute(schedulerExtensionPoints.executors, executor);
    env.contribute(schedulerExtensionPoints.nodeConnectors, new DockerConnector(hosts, { logger: () => state.logger }));
    registerImageRoutes(env, {
      executor: () => executor,
      limits: (ctx) => {
        const config = (ctx.plugin.config ?? state.config ?? {}) as Partial<ExecutorDockerConfig>;
        return { importMaxBytes: Math.floor((config.importMaxGiB ?? 20) * GIB), pullStallMs: (config.pullStallSeconds ?? 60) * 1000 };
      },
    });
  },
  start(ctx) {
    const state = registered(ctx.manifest);
    state.config = ctx.config;
    state.logger = ctx.logger;
    state.executor.open(options(ctx));
    ctx.logger.info({ socketPath: ctx.config.socketPath }, 'docker executor ready');
  },
  stop(ctx) {
    // Remote hosts' clients stay (the connector's): followers re-attach when the plugin is enabled again.
    registered(ctx.manifest).executor.close();
  },
  // New settings apply to new work; containers being followed are followed on.
  configChanged(ctx) {
    const state = registered(ctx.manifest);
    state.config = ctx.config;
    state.executor.reconfigure(options(ctx));
  },
});

function options(ctx: { config: ExecutorDockerConfig; platform: { dataDir: string }; logger: Logger }) {
  return {
    socketPath: ctx.config.socketPath,
    dataDir: ctx.platform.dataDir,
    logger: ctx.logger,
    stopGraceSeconds: ctx.config.stopGraceSeconds,
    init: ctx.config.init,
  };
}
