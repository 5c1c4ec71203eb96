/**
 * executor-docker: contributes the `docker` executor (ARCHITECTURE §7) to the core's
 * `scheduler.executors` extension point. It is `local`: it drives the Docker engine of the core's own
 * machine, so the core's node and its simulated nodes accept `executor: "docker"` workloads.
 */
import { definePlugin, schedulerExtensionPoints, type PluginManifest } from '@aiplat/plugin-sdk';
import { DockerExecutor } from './executor.js';

export { DockerExecutor, containerName, mountProblem, LABELS, type DockerExecutorOptions, type DockerReplicaHandle } from './executor.js';

export interface ExecutorDockerConfig {
  socketPath: string;
  stopGraceSeconds?: number;
  init: boolean;
}

/**
 * The executor each registration contributed, found again at start. One process may run several
 * cores (tests): each registers this plugin with its own manifest record, so that is the key.
 */
const executors = new WeakMap<PluginManifest, DockerExecutor>();

function executorOf(manifest: PluginManifest): DockerExecutor {
  const executor = executors.get(manifest);
  if (!executor) throw new Error('executor-docker was started without being registered');
  return executor;
}

export default definePlugin<ExecutorDockerConfig>({
  register(env) {
    const executor = new DockerExecutor();
    executors.set(env.manifest, executor);
    env.contribute(schedulerExtensionPoints.executors, executor);
  },
  start(ctx) {
    executorOf(ctx.manifest).open({
      socketPath: ctx.config.socketPath,
      dataDir: ctx.platform.dataDir,
      logger: ctx.logger,
      stopGraceSeconds: ctx.config.stopGraceSeconds,
      init: ctx.config.init,
    });
    ctx.logger.info({ socketPath: ctx.config.socketPath }, 'docker executor ready');
  },
  stop(ctx) {
    executorOf(ctx.manifest).close();
  },
  // New settings apply to new work; containers being followed are followed on.
  configChanged(ctx) {
    executorOf(ctx.manifest).reconfigure({
      socketPath: ctx.config.socketPath,
      dataDir: ctx.platform.dataDir,
      logger: ctx.logger,
      stopGraceSeconds: ctx.config.stopGraceSeconds,
      init: ctx.config.init,
    });
  },
});
