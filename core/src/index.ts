export { startCore, createLogger, CORE_VERSION, type RunningCore, type StartOptions } from './core.js';
export { loadConfig, defaultPluginDirs, ConfigError, type CoreConfig } from './config/config.js';
export { DataDirInUseError } from './db/lock.js';
export { planStartOrder, type PlanNode, type StartPlan } from './kernel/order.js';
export { readManifest, discoverPlugins } from './kernel/manifest.js';
export type { PluginStatus, PluginState } from './kernel/kernel.js';
export { KernelHooks } from './kernel/hooks.js';
export { migrationSource } from './db/migrations.js';
export { embeddedEngineVersion, initEmbeddedCluster } from './db/database.js';
