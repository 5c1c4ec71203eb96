/**
 * Writes the ds_config.json files the GPU check runs with, made by the plugin's own config.ts (so
 * the check runs what a wizard submission writes):
 *
 *   node --import tsx plugins/trainer-deepspeed/gpu-check/configs.ts <folder>
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deepspeedConfig, type DeepSpeedOptions } from '../src/config.js';

const folder = process.argv[2];
if (!folder) throw new Error('usage: configs.ts <folder>');
mkdirSync(folder, { recursive: true });
const hyper = { batchSize: 16, gradientAccumulation: 1, precision: 'bf16' };
const cases: Record<string, DeepSpeedOptions> = {
  zero2: { stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true },
  zero3: { stage: 3, offloadOptimizer: false, offloadParameters: false, overlapComm: true },
  'zero3-offload': { stage: 3, offloadOptimizer: true, offloadParameters: true, overlapComm: true },
};
for (const [name, options] of Object.entries(cases)) {
  writeFileSync(path.join(folder, `${name}.json`), JSON.stringify(deepspeedConfig(options, hyper), null, 2) + '\n');
}
process.stdout.write(`wrote ${Object.keys(cases).length} configs into ${folder}\n`);
