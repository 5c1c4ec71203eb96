/**
 * trainer-deepspeed: contributes the `deepspeed` strategy to the training plugin's
 * `training.strategies` extension point. A run with it writes `ds_config.json` (from `config.ts`)
 * into the run folder and starts the worker under torchrun on every node; the worker wraps its
 * model and optimizer with `deepspeed.initialize` (worker/aiplat_train/ds.py in the training plugin).
 * DeepSpeed itself is installed into the worker's environment by this plugin's `setup.sh`.
 */
import path from 'node:path';
import { definePlugin, type PluginManifest } from '@aiplat/plugin-sdk';
import { torchrunLaunch, trainingExtensionPoints, type TrainingStrategy } from '@aiplat-plugins/training/api';
import { deepspeedConfig, optionsOf, optionsSchema, problemOf, type DeepSpeedSettings } from './config.js';

export { deepspeedConfig, optionsSchema, problemOf, type DeepSpeedOptions } from './config.js';

/** Each registration's settings (one process may run several cores: tests), found again at start. */
const registrations = new WeakMap<PluginManifest, { settings: Partial<DeepSpeedSettings> }>();

export default definePlugin<Partial<DeepSpeedSettings>>({
  register(env) {
    // The plugin's config is read at launch time; until start it has its defaults.
    const state: { settings: Partial<DeepSpeedSettings> } = { settings: {} };
    registrations.set(env.manifest, state);
    const strategy: TrainingStrategy = {
      id: 'deepspeed',
      title: { en: 'DeepSpeed ZeRO', 'zh-CN': 'DeepSpeed ZeRO' },
      cpu: true,
      optionsSchema,
      check: (c) => problemOf(optionsOf(c.options), c.hyper, c.gpusPerNode),
      launch: (c) => {
        const config = deepspeedConfig(optionsOf(c.options), c.hyper, { reduceBucketSize: state.settings.reduceBucketSize ?? 200_000_000 });
        return {
          args: torchrunLaunch(c),
          files: { 'ds_config.json': JSON.stringify(config, null, 2) + '\n' },
          spec: { deepspeedConfig: path.join(c.runDir, 'ds_config.json') },
        };
      },
    };
    env.contribute(trainingExtensionPoints.strategies, strategy);
  },
  start(ctx) {
    const state = registrations.get(ctx.manifest);
    if (state) state.settings = { ...ctx.config };
  },
});
