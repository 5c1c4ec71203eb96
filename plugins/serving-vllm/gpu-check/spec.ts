/**
 * Writes the vllm runtime's launch spec for the GPU check: a local replica of the tiny chat model
 * (head size 32) with one GPU, tensor-parallel 1, gpuMemoryUtilization 0.3, maxModelLen 512.
 * The model path and interpreter are placeholders the check replaces on the GPU machine.
 *
 *   node --import tsx plugins/serving-vllm/gpu-check/spec.ts .gpucheck/vllm
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { vllmRuntime } from '../src/index.js';

const out = process.argv[2] ?? '.gpucheck/vllm';
const runtime = vllmRuntime(() => ({ python: '@PYTHON@' }));
const context = {
  deployment: { id: 'gpu-check', name: 'gpu-check', team: 'default' },
  revision: 1,
  servedModelName: 'tiny-chat',
  model: { versionId: 'v1', name: 'tiny', number: 1, path: '@MODEL@', metadata: { contextLength: 512, hiddenSize: 64, attentionHeads: 2, keyValueHeads: 2, layers: 2 } },
  revisionDir: '@REVISION_DIR@',
  executor: 'local',
  resources: { gpus: 1 },
  replicas: 1,
  options: { tensorParallelSize: 1, maxModelLen: 512, gpuMemoryUtilization: 0.3, quantization: 'none', dtype: 'auto', enforceEager: false, cpuKvCacheGiB: 4 },
  maxGpusPerNode: 1,
};
const problem = runtime.check!(context);
if (problem) throw new Error(problem);
mkdirSync(out, { recursive: true });
const launch = await runtime.launch(context);
// The launcher's path, relative to the repository root (the GPU machine has another root).
launch.command = launch.command.map((a) => a.replace(path.resolve(import.meta.dirname, '..', '..', '..') + '/', '@ROOT@/'));
writeFileSync(path.join(out, 'launch.json'), JSON.stringify(launch, null, 2) + '\n');
console.log(path.join(out, 'launch.json'));
