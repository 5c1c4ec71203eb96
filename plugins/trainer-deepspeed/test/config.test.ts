// The ds_config.json the plugin writes, validated by DeepSpeed's own config classes
// (deepspeed.runtime.config.DeepSpeedConfig, from the deepspeed package that setup.sh installs into
// the training venv): every combination the wizard offers parses, and DeepSpeed reads back what
// the options and hyper-parameters asked for. A config DeepSpeed rejects is rejected here too, so
// the check has teeth. Refusals of impossible combinations come before any file is written.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deepspeedConfig, problemOf, type DeepSpeedOptions } from '../src/config.js';

const run = promisify(execFile);
const here = import.meta.dirname;
let python: string;
let work: string;

interface Parsed {
  file: string;
  ok: boolean;
  error?: string;
  parsed?: { stage: number; offloadOptimizer: string | null; offloadParameters: string | null; overlapComm: boolean; reduceBucketSize: number; gatherOnSave: boolean; bf16: boolean; fp16: boolean; microBatch: number; gradientAccumulation: number; trainBatch: number; gradientClipping: number };
}

async function validate(configs: Record<string, unknown>[]): Promise<Parsed[]> {
  const files: string[] = [];
  for (const [i, c] of configs.entries()) {
    const file = path.join(work, `ds-${i}.json`);
    await writeFile(file, JSON.stringify(c));
    files.push(file);
  }
  const { stdout } = await run(python, [path.join(here, 'validate_config.py'), ...files], { maxBuffer: 16 << 20 });
  return stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Parsed);
}

beforeAll(async () => {
  const { stdout } = await run('sh', [path.join(here, '..', 'setup.sh')], { timeout: 600_000, maxBuffer: 16 << 20 });
  python = stdout.trim().split('\n').pop()!;
  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-ds-config-'));
}, 660_000);
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('ds_config.json', () => {
  it('every combination the wizard allows is a config DeepSpeed accepts, and reads back as asked', async () => {
    const cases: { options: DeepSpeedOptions; hyper: Record<string, unknown>; gpus: number }[] = [];
    for (const stage of [1, 2, 3] as const)
      for (const precision of ['fp32', 'bf16', 'fp16'])
        for (const offloadOptimizer of [false, true])
          for (const offloadParameters of [false, true]) {
            const options = { stage, offloadOptimizer, offloadParameters, overlapComm: stage !== 1 };
            const hyper = { method: 'full', precision, batchSize: 4, gradientAccumulation: 3, maxGradNorm: 0.5 };
            if (problemOf(options, hyper, 8) === undefined) cases.push({ options, hyper, gpus: 8 });
          }
    // 3 stages x 3 precisions x 2 optimizer offloads, plus stage 3's parameter offload (x 3 x 2).
    expect(cases).toHaveLength(24);
    const results = await validate(cases.map((c) => deepspeedConfig(c.options, c.hyper, { reduceBucketSize: 50_000_000 })));
    expect(results).toHaveLength(cases.length);
    for (const [i, r] of results.entries()) {
      const { options, hyper } = cases[i]!;
      expect(r.ok, r.error).toBe(true);
      expect(r.parsed).toEqual({
        stage: options.stage,
        offloadOptimizer: options.offloadOptimizer ? 'cpu' : null,
        offloadParameters: options.offloadParameters ? 'cpu' : null,
        overlapComm: options.overlapComm,
        reduceBucketSize: 50_000_000,
        gatherOnSave: options.stage === 3,
        bf16: hyper.precision === 'bf16',
        fp16: hyper.precision === 'fp16',
        microBatch: 4,
        gradientAccumulation: 3,
        // One process when DeepSpeed reads it alone; the worker's world multiplies it.
        trainBatch: 12,
        gradientClipping: 0.5,
      });
    }
  }, 120_000);

  it('DeepSpeed rejects a broken config, so the check above is real', async () => {
    const good = deepspeedConfig({ stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true }, { precision: 'bf16' });
    const [typo, badStage, bothPrecisions] = await validate([
      { ...good, zero_optimization: { ...(good.zero_optimization as object), overlap_com: true } },
      { ...good, zero_optimization: { ...(good.zero_optimization as object), stage: 4 } },
      { ...good, fp16: { enabled: true } },
    ]);
    expect(typo).toMatchObject({ ok: false });
    expect(typo!.error).toMatch(/overlap_com[\s\S]*Extra inputs are not permitted/);
    expect(badStage).toMatchObject({ ok: false });
    expect(badStage!.error).toMatch(/stage/);
    expect(bothPrecisions).toMatchObject({ ok: false });
    expect(bothPrecisions!.error).toMatch(/bfloat16 and fp16/);
  }, 60_000);

  it('refuses combinations that cannot run, with the reason', () => {
    const o = (over: Partial<DeepSpeedOptions>): DeepSpeedOptions => ({ stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true, ...over });
    expect(problemOf(o({ offloadParameters: true }), {}, 8)).toMatch(/stage 3/);
    expect(problemOf(o({ stage: 3 }), { method: 'lora' }, 8)).toMatch(/LoRA/);
    expect(problemOf(o({}), { method: 'qlora' }, 8)).toMatch(/QLoRA/);
    expect(problemOf(o({ offloadOptimizer: true }), {}, 0)).toMatch(/CPU run/);
    expect(problemOf(o({}), { precision: 'fp16' }, 0)).toMatch(/fp16 needs GPUs/);
    expect(problemOf(o({ stage: 3 }), { method: 'full', precision: 'bf16' }, 0)).toBeUndefined();
  });
});
