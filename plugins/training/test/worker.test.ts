// Real runs of the training plugin's Python worker (plugins/training/runtime/worker): a tiny Llama trained from
// scratch on a generated corpus, LoRA on top of it, DDP and FSDP with two gloo processes under torchrun,
// SIGTERM and resume, and the refusals of bad specs. The worker's venv comes from
// plugins/training/runtime/worker/setup.sh (about 40 s the first time with the torch wheel on disk, instant
// afterwards). Every run is CPU-only and takes seconds.
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const worker = path.join(repo, 'plugins/training/runtime/worker');
const execFileP = promisify(execFile);

interface Line {
  type: string;
  event?: string;
  step?: number;
  loss?: number;
  eval_loss?: number;
  message?: string;
  field?: string;
  path?: string;
  [k: string]: unknown;
}
interface Result {
  code: number | null;
  lines: Line[];
  stdout: string;
  stderr: string;
}

let python: string;
let work: string;
let data: string;

/** Runs the worker (or torchrun around it) and collects its JSON lines; onLine may act on them live. */
function runWorker(args: string[], onLine?: (line: Line, child: ReturnType<typeof spawn>) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { cwd: worker, env: { ...process.env, OMP_NUM_THREADS: '1', PYTHONUNBUFFERED: '1' } });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const lines: Line[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!text.startsWith('{')) continue;
        const line = JSON.parse(text) as Line;
        lines.push(line);
        onLine?.(line, child);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, lines, stdout, stderr }));
  });
}

const single = (specFile: string) => runWorker(['-m', 'aiplat_train', '--spec', specFile]);
const torchrun = (specFile: string) =>
  runWorker(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py', '--spec', specFile]);

const metrics = (r: Result) => r.lines.filter((l) => l.type === 'metric' && typeof l.loss === 'number');
const eventOf = (r: Result, name: string) => r.lines.find((l) => l.type === 'event' && l.event === name);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function baseSpec(output: string, over: Record<string, unknown> = {}, hyper: Record<string, unknown> = {}) {
  return {
    runId: path.basename(output),
    output,
    model: {
      from: 'scratch',
      template: 'llama',
      config: { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 256 },
    },
    tokenizer: null,
    data: { path: data, format: 'auto' },
    method: 'full',
    hyper: { learningRate: 3e-3, schedule: 'cosine', warmupSteps: 2, maxSteps: 40, batchSize: 8, sequenceLength: 64, seed: 42, evalSplit: 0.1, evalInterval: 20, checkpointInterval: 20, ...hyper },
    strategy: { kind: 'single' },
    resumeFrom: null,
    ...over,
  };
}

async function writeSpec(name: string, spec: unknown) {
  const file = path.join(work, `${name}.json`);
  await writeFile(file, JSON.stringify(spec));
  return file;
}

/** What transformers sees in a saved folder: the parameter count and the files. */
async function loadWithTransformers(folder: string) {
  const code = `import json,sys
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1])
print(json.dumps({"parameters": sum(p.numel() for p in m.parameters()), "vocab": len(t), "roundtrip": t.decode(t("the cat")["input_ids"])}))`;
  const { stdout } = await execFileP(python, ['-c', code, folder], { env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { parameters: number; vocab: number; roundtrip: string };
}

beforeAll(async () => {
  const { stdout } = await execFileP('sh', [path.join(worker, 'setup.sh')], { cwd: repo, maxBuffer: 16 << 20 });
  python = stdout.trim().split('\n').pop()!;
  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-train-'));
  data = path.join(work, 'data');
  await mkdir(path.join(data, 'more'), { recursive: true });
  // A small, very regular corpus (a model this size learns it within tens of steps), as text and chat.
  const words = 'the cat sat on a mat and the dog ran to the park while birds sang'.split(' ');
  const text = Array.from({ length: 400 }, (_, i) => Array.from({ length: 12 }, (_, j) => words[(i + j) % words.length]).join(' '));
  await writeFile(path.join(data, 'corpus.txt'), text.join('\n') + '\n');
  const chat = Array.from({ length: 40 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `say ${words[i % words.length]}` }, { role: 'assistant', content: words[i % words.length] }] }));
  await writeFile(path.join(data, 'more', 'chat.jsonl'), chat.join('\n') + '\n');
}, 600_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('training worker', () => {
  let scratch: Result;

  it('trains a tiny Llama from scratch: the loss falls, checkpoints and final/ are complete', async () => {
    const out = path.join(work, 'scratch');
    scratch = await single(await writeSpec('scratch', baseSpec(out)));
    expect(scratch.code, scratch.stderr).toBe(0);

    const m = metrics(scratch);
    expect(m.map((l) => l.step)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    for (const key of ['epoch', 'loss', 'lr', 'grad_norm', 'tokens_per_s']) expect(typeof m[5]![key], key).toBe('number');
    const first = mean(m.slice(0, 10).map((l) => l.loss!));
    const last = mean(m.slice(-10).map((l) => l.loss!));
    expect(last).toBeLessThan(0.7 * first);
    expect(scratch.lines.filter((l) => l.type === 'metric' && typeof l.eval_loss === 'number').map((l) => l.step)).toEqual([20, 40]);

    const cp = eventOf(scratch, 'checkpoint')!;
    expect(cp).toMatchObject({ step: 20, path: path.join(out, 'checkpoints/step-20') });
    const files = await readdir(cp.path!);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'optimizer.pt', 'scheduler.pt', 'trainer_state.json']) expect(files).toContain(f);
    const state = JSON.parse(await readFile(path.join(cp.path!, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ step: 20, data: { epoch: 0, stepInEpoch: 20 }, globalBatch: 8 });
    expect(Object.keys(state.rng)).toEqual(expect.arrayContaining(['python', 'torch']));
    expect((await readdir(path.join(out, 'checkpoints'))).filter((n) => n.startsWith('.tmp'))).toEqual([]);

    const finished = eventOf(scratch, 'finished')!;
    expect(finished).toMatchObject({ step: 40, output: out, final: path.join(out, 'final') });
    const loaded = await loadWithTransformers(path.join(out, 'final'));
    expect(loaded.parameters).toBe(finished.parameters);
    expect(loaded.vocab).toBe(259); // bytes + <s>, </s>, <pad>
    expect(loaded.roundtrip).toBe('the cat');
  });

  it('trains a LoRA adapter on that model: adapter/ and the merged model in final/', async () => {
    const out = path.join(work, 'lora');
    const spec = baseSpec(out, { method: 'lora', model: { from: 'folder', path: path.join(work, 'scratch/final') } }, { maxSteps: 10, checkpointInterval: 5, evalInterval: 0, lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] } });
    const r = await single(await writeSpec('lora', spec));
    expect(r.code, r.stderr).toBe(0);
    const started = eventOf(r, 'started')!;
    expect(started.trainableParameters as number).toBeLessThan((started.parameters as number) / 10);
    expect(await readdir(path.join(out, 'checkpoints/step-5'))).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'config.json', 'optimizer.pt']));
    expect(await readdir(path.join(out, 'adapter'))).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'tokenizer.json']));
    const finished = eventOf(r, 'finished')!;
    expect(finished).toMatchObject({ adapter: path.join(out, 'adapter'), final: path.join(out, 'final') });
    const loaded = await loadWithTransformers(path.join(out, 'final'));
    expect(loaded.parameters).toBe(finished.parameters);
    expect(loaded.parameters).toBe(eventOf(scratch, 'finished')!.parameters); // merged: no adapter weights left
  });

  it('runs DDP with two gloo processes: rank 0 reports, the result matches one process', async () => {
    const r = await torchrun(await writeSpec('ddp', baseSpec(path.join(work, 'ddp'), { strategy: { kind: 'ddp' } }, { batchSize: 4 })));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('rank 0/2 on cpu');
    expect(r.stderr).toContain('rank 1/2 on cpu');
    const m = metrics(r);
    expect(m.map((l) => l.step)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1)); // once per step: rank 1 is silent
    expect(eventOf(r, 'started')).toMatchObject({ worldSize: 2, globalBatch: 8 });
    const one = metrics(scratch);
    // Same global batch, seed and sequences: equal up to float rounding.
    expect(Math.abs(m[39]!.loss! - one[39]!.loss!)).toBeLessThan(1e-3);
    expect(Math.abs(mean(m.map((l) => l.loss!)) - mean(one.map((l) => l.loss!)))).toBeLessThan(1e-3);
  });

  it('runs FSDP with two gloo processes on CPU and saves a whole model', async () => {
    const out = path.join(work, 'fsdp');
    const r = await torchrun(await writeSpec('fsdp', baseSpec(out, { strategy: { kind: 'fsdp' } }, { batchSize: 4, maxSteps: 40, checkpointInterval: 0 })));
    expect(r.code, r.stderr).toBe(0);
    expect(Math.abs(metrics(r)[39]!.loss! - metrics(scratch)[39]!.loss!)).toBeLessThan(1e-3);
    expect((await loadWithTransformers(path.join(out, 'final'))).parameters).toBe(eventOf(scratch, 'finished')!.parameters);
  });

  it('saves a checkpoint on SIGTERM, exits 0, and resumes to the same losses as an uninterrupted run', async () => {
    const out = path.join(work, 'resume');
    const spec = baseSpec(out, {}, { checkpointInterval: 0 });
    let signalled = 0;
    const first = await runWorker(['-m', 'aiplat_train', '--spec', await writeSpec('resume', spec)], (line, child) => {
      if (line.type === 'metric' && line.step === 3 && !signalled) {
        signalled = Date.now();
        child.kill('SIGTERM');
      }
    });
    expect(first.code, first.stderr).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000); // the scheduler's default grace
    const cp = eventOf(first, 'checkpoint')!;
    expect(cp.step).toBeGreaterThanOrEqual(3);
    expect(cp.step).toBeLessThan(40);
    expect(eventOf(first, 'stopped')).toMatchObject({ step: cp.step, checkpoint: cp.path });
    expect(eventOf(first, 'finished')).toBeUndefined();

    const second = await single(await writeSpec('resume2', { ...spec, resumeFrom: cp.path }));
    expect(second.code, second.stderr).toBe(0);
    const m = metrics(second);
    expect(m[0]!.step).toBe(cp.step! + 1);
    expect(m.at(-1)!.step).toBe(40);
    expect(eventOf(second, 'finished')).toMatchObject({ step: 40 });
    // Same weights, optimizer moments, schedule and data position as the run that never stopped.
    const straight = new Map(metrics(scratch).map((l) => [l.step, l.loss!]));
    for (const l of m) expect(Math.abs(l.loss! - straight.get(l.step!)!), `step ${l.step}`).toBeLessThan(1e-4);
  });

  it('refuses bad input with exit code 2 and an error line naming the problem', async () => {
    const refused = async (name: string, spec: unknown) => {
      const r = await single(await writeSpec(name, spec));
      expect(r.code, r.stderr).toBe(2);
      const err = r.lines.find((l) => l.type === 'error')!;
      expect(err).toBeDefined();
      return err;
    };
    const lr = await refused('bad-lr', baseSpec(path.join(work, 'bad'), {}, { learningRate: -1 }));
    expect(lr).toMatchObject({ field: 'hyper.learningRate' });
    expect(lr.message).toContain('must be > 0');

    const badChat = path.join(work, 'bad-chat');
    await mkdir(badChat, { recursive: true });
    await writeFile(path.join(badChat, 'chat.jsonl'), '{"messages":[{"role":"user","content":"hi"}]}\n{"conversation":[]}\n');
    const chat = await refused('bad-chat', baseSpec(path.join(work, 'bad'), { data: { path: badChat, format: 'chat' } }));
    expect(chat.message).toContain('chat.jsonl line 2');
    expect(chat.message).toContain('"messages"');

    const qlora = await refused('qlora', baseSpec(path.join(work, 'bad'), { method: 'qlora' }));
    expect(qlora).toMatchObject({ field: 'method' });
    expect(qlora.message).toContain('CUDA');
    expect(existsSync(path.join(work, 'bad', 'final'))).toBe(false);
  });
});
