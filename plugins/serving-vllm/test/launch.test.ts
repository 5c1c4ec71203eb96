/**
 * The vllm runtime's launch spec, refusals and estimate (no vLLM runs here: see vllm-cpu.vllm.ts,
 * `npm run test:vllm`, for the real engine).
 */
import { describe, expect, it } from 'vitest';
import type { RuntimeContext } from '@aiplat-plugins/serving/api';
import { DEFAULT_IMAGE, PLUGIN_DIR, defaultPython, vllmRuntime } from '../src/index.js';
import { CPU_QUANTIZATIONS, QUANTIZATIONS, estimateGpuMemoryMiB, optionsSchema, problemOf, vllmFlags, optionsOf } from '../src/options.js';

const metadata = { contextLength: 4096, layers: 32, hiddenSize: 4096, attentionHeads: 32, keyValueHeads: 8, parameters: 8_000_000_000, sizes: { weightBytes: 16_000_000_000 } };

function context(over: Partial<RuntimeContext> = {}, options: Record<string, unknown> = {}): RuntimeContext {
  return {
    deployment: { id: 'd1', name: 'chat', team: 'default' },
    revision: 3,
    servedModelName: 'llama-chat',
    model: { versionId: 'v1', name: 'llama', number: 1, path: '/data/models/llama/1', metadata },
    revisionDir: '/data/serving/d1/3',
    executor: 'local',
    resources: { gpus: 1 },
    replicas: 1,
    options: { tensorParallelSize: 1, gpuMemoryUtilization: 0.9, quantization: 'none', dtype: 'auto', enforceEager: false, cpuKvCacheGiB: 4, ...options },
    maxGpusPerNode: 8,
    ...over,
  };
}

const settings = () => ({ python: '/venv/bin/python', image: 'vllm/vllm-openai:v0.32.0' });

describe('argv', () => {
  it('local, one GPU, defaults', () => {
    const l = vllmRuntime(settings).launch(context()) as Awaited<ReturnType<ReturnType<typeof vllmRuntime>['launch']>>;
    expect(l).toEqual({
      command: [
        '/venv/bin/python',
        `${PLUGIN_DIR}/runtime/launch.py`,
        '/data/models/llama/1',
        '--served-model-name',
        'llama-chat',
        '--tensor-parallel-size',
        '1',
        '--gpu-memory-utilization',
        '0.9',
        '--dtype',
        'auto',
      ],
      env: { VLLM_NO_USAGE_STATS: '1', DO_NOT_TRACK: '1', HF_HUB_OFFLINE: '1' },
      workingDir: '/data/serving/d1/3',
      readiness: { path: '/health', initialDelaySeconds: 5, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 240 },
    });
  });

  it('every option', () => {
    const o = optionsOf({ tensorParallelSize: 4, maxModelLen: 2048, gpuMemoryUtilization: 0.85, quantization: 'awq', dtype: 'float16', maxNumSeqs: 64, enforceEager: true });
    expect(vllmFlags(o, 4)).toEqual([
      '--tensor-parallel-size', '4',
      '--max-model-len', '2048',
      '--gpu-memory-utilization', '0.85',
      '--quantization', 'awq',
      '--dtype', 'float16',
      '--max-num-seqs', '64',
      '--enforce-eager',
    ]);
  });

  it('a CPU replica: no GPU flags, the CPU platform and its KV cache size', () => {
    const l = vllmRuntime(settings).launch(context({ resources: { gpus: 0 }, maxGpusPerNode: 0 }, { maxModelLen: 512, dtype: 'float32', cpuKvCacheGiB: 2 })) as { command: string[]; env: Record<string, string> };
    expect(l.command.slice(2)).toEqual(['/data/models/llama/1', '--served-model-name', 'llama-chat', '--max-model-len', '512', '--dtype', 'float32']);
    expect(l.env).toMatchObject({ VLLM_CPU_KVCACHE_SPACE: '2', VLLM_TARGET_DEVICE: 'cpu' });
  });

  it('docker: the image\u2019s vllm serve, the model at /model, port 8000', () => {
    const l = vllmRuntime(settings).launch(context({ executor: 'docker', resources: { gpus: 2 } }, { tensorParallelSize: 2 }));
    expect(l).toEqual({
      image: 'vllm/vllm-openai:v0.32.0',
      command: [
        'vllm', 'serve', '/model',
        '--served-model-name', 'llama-chat',
        '--host', '0.0.0.0',
        '--port', '8000',
        '--tensor-parallel-size', '2',
        '--gpu-memory-utilization', '0.9',
        '--dtype', 'auto',
      ],
      env: { VLLM_NO_USAGE_STATS: '1', DO_NOT_TRACK: '1', HF_HUB_OFFLINE: '1' },
      mounts: [{ source: '/data/models/llama/1', target: '/model', readOnly: true }],
      containerPort: 8000,
      readiness: { path: '/health', initialDelaySeconds: 5, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 240 },
    });
  });

  it('declares the runtime and its settings', () => {
    const r = vllmRuntime(() => ({}));
    expect(r).toMatchObject({ id: 'vllm', protocol: 'openai', gpu: 'optional', executors: ['local', 'docker'], metricsPath: '/metrics' });
    expect(r.openai).toBeUndefined();
    expect(DEFAULT_IMAGE).toBe('vllm/vllm-openai:v0.32.0');
    expect((r.launch(context({ executor: 'docker' })) as { image: string }).image).toBe(DEFAULT_IMAGE);
    expect((r.launch(context()) as { command: string[] }).command[0]).toBe(defaultPython());
    expect(defaultPython()).toMatch(/aiplat-serve-vllm-venv\/bin\/python$/);
    expect(optionsSchema.properties.quantization.enum).toEqual([...QUANTIZATIONS]);
    expect(optionsSchema.properties.dtype.enum).toEqual(['auto', 'float16', 'bfloat16', 'float32']);
    for (const q of CPU_QUANTIZATIONS) expect(QUANTIZATIONS).toContain(q);
  });

  it('says why the engine is missing', async () => {
    const s = await vllmRuntime(() => ({ python: '/nonexistent/venv/bin/python' })).engine('local');
    expect(s).toEqual({ available: false, version: null, reason: "the vllm venv's interpreter /nonexistent/venv/bin/python does not exist (run pip install vllm in that venv)" });
    expect((await vllmRuntime(() => ({})).engine('k8s')).reason).toMatch(/local or docker executor/);
  });
});

describe('refusals', () => {
  const cases: [string, RuntimeContext, RegExp][] = [
    ['tensor-parallel above the replica\u2019s GPUs', context({ resources: { gpus: 2 } }, { tensorParallelSize: 4 }), /tensor-parallel size 4 is larger than the replica's 2 GPU\(s\)/],
    ['tensor-parallel above the largest node', context({ resources: { gpus: 16 }, maxGpusPerNode: 8 }, { tensorParallelSize: 16 }), /more than the 8 GPU\(s\) the largest node has/],
    ['tensor-parallel without GPUs', context({ resources: { gpus: 0 }, maxGpusPerNode: 8 }, { tensorParallelSize: 2 }), /needs 2 GPUs, but the replica has none/],
    ['GPU memory share 0', context({}, { gpuMemoryUtilization: 0 }), /above 0 and at most 1/],
    ['GPU memory share above 1', context({}, { gpuMemoryUtilization: 1.5 }), /above 0 and at most 1 \(a fraction of each card\), not 1.5/],
    ['unknown quantization', context({}, { quantization: 'squeezellm' }), /"squeezellm" is not one vLLM knows/],
    ['GPU-only quantization on CPU', context({ resources: { gpus: 0 } }, { quantization: 'fp8' }), /"fp8" needs a GPU, but the replica has none/],
    ['context above the model\u2019s', context({}, { maxModelLen: 8192 }), /context length 8192 is above the model's 4096 tokens/],
    ['CPU attention head size', context({ resources: { gpus: 0 }, model: { ...context().model, metadata: { hiddenSize: 64, attentionHeads: 4 } } }), /head sizes 32, 64.*this model's is 16/],
    ['another executor', context({ executor: 'k8s' }), /local or docker executor, not "k8s"/],
  ];
  it.each(cases)('%s', (_name, c, reason) => {
    expect(problemOf(c)).toMatch(reason);
  });

  it('accepts what can run', () => {
    expect(problemOf(context())).toBeUndefined();
    expect(problemOf(context({ resources: { gpus: 4 } }, { tensorParallelSize: 4, maxModelLen: 4096, quantization: 'fp8' }))).toBeUndefined();
    expect(problemOf(context({ resources: { gpus: 0 } }, { quantization: 'awq' }))).toBeUndefined();
    // Unknown metadata: nothing to refuse on.
    expect(problemOf(context({ model: { ...context().model, metadata: {} } }, { maxModelLen: 100_000 }))).toBeUndefined();
  });
});

describe('estimateGpuMemoryMiB', () => {
  it('weights + KV cache for the context length (+10 %)', () => {
    // KV: 2 × 32 layers × 8 KV heads × 128 head size × 2 bytes × 4096 tokens = 512 MiB.
    const kv = 2 * 32 * 8 * 128 * 2 * 4096;
    expect(estimateGpuMemoryMiB(context())).toBe(Math.ceil(((16_000_000_000 + kv) * 1.1) / 2 ** 20));
    // A shorter context: less KV cache.
    expect(estimateGpuMemoryMiB(context({}, { maxModelLen: 1024 }))).toBe(Math.ceil(((16_000_000_000 + kv / 4) * 1.1) / 2 ** 20));
  });

  it('from parameters × dtype when the weights\u2019 size is unknown', () => {
    const m = { ...metadata, sizes: undefined, parameters: 1_000_000_000, layers: undefined };
    expect(estimateGpuMemoryMiB(context({ model: { ...context().model, metadata: m } }, { dtype: 'float32' }))).toBe(Math.ceil((4_000_000_000 * 1.1) / 2 ** 20));
  });

  it('a slice of a card: gpuMemoryUtilization × the slice', () => {
    expect(estimateGpuMemoryMiB(context({ resources: { gpus: 0, gpuMemoryMiB: 20_000 } }, { gpuMemoryUtilization: 0.5 }))).toBe(10_000);
  });
});
