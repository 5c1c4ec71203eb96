/**
 * @aiplat/plugin-sdk — the only door into the core for plugins.
 * Contracts only: it depends on nothing of aiplat's.
 */
export * from './manifest.js';
export * from './errors.js';
export * from './routes.js';
export * from './services.js';
export * from './hooks.js';
export * from './plugin.js';
export * from './events.js';
export * from './storage.js';
export * from './operations.js';
export * from './teams.js';
export * from './workloads.js';
export * from './paths.js';
export * from './archive.js';
export type { Knex } from 'knex';
