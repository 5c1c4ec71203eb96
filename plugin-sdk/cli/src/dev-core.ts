/**
 * The core process of `aiplat-plugin dev` (a child, so that a restart loads the plugin's changed
 * code): reads the configuration from the environment the parent set, starts the core, reports
 * its URL over IPC and stops cleanly on SIGTERM or when the parent goes away.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, startCore, type RunningCore } from '@aiplat/core';

export interface DevCoreMessage {
  type: 'ready' | 'failed';
  url?: string;
  generatedAdminPassword?: string;
  /** The web shell's build the core serves at `/`, when there is one. */
  webDir?: string;
  shellBuilt?: boolean;
  /** The developed plugin's state (AIPLAT_DEV_PLUGIN names it) and why, when it is not enabled. */
  plugin?: { state: string; reason?: string };
  message?: string;
}

function send(message: DevCoreMessage): void {
  process.send?.(message);
}

function pluginState(running: RunningCore, id: string): { state: string; reason?: string } {
  const found = running.kernel.list().find((p) => p.id === id);
  if (!found) return { state: 'missing', reason: 'the core did not find it in AIPLAT_PLUGIN_DIRS' };
  return { state: found.state, ...(found.reason ? { reason: found.reason } : {}) };
}

let core: RunningCore | undefined;
let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    await core?.stop();
  } finally {
    process.exit(code);
  }
}
process.once('SIGTERM', () => void stop(0));
process.once('SIGINT', () => void stop(0));
process.once('disconnect', () => void stop(0));

try {
  const config = loadConfig();
  core = await startCore(config);
  send({
    type: 'ready',
    url: core.url,
    webDir: config.webDir,
    shellBuilt: existsSync(path.join(config.webDir, 'index.html')),
    ...(process.env.AIPLAT_DEV_PLUGIN ? { plugin: pluginState(core, process.env.AIPLAT_DEV_PLUGIN) } : {}),
    ...(core.generatedAdminPassword ? { generatedAdminPassword: core.generatedAdminPassword } : {}),
  });
} catch (error) {
  send({ type: 'failed', message: (error as Error).message });
  process.stderr.write(`aiplat-plugin dev: the core did not start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
}
