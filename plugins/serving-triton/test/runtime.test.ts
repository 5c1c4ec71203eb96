/**
 * The runtime's parts that need no server: the plugin's contribution, the checks, the engine check's
 * refusals, the launch for both executors and the adapter's mapping.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RuntimeContext, ServingRuntime } from '@aiplat-plugins/serving/api';
import plugin, { DEFAULT_OPTIONS, clearEngineCache, configPbtxt, openaiAdapter, tritonModelName, tritonRuntime } from '../src/index.js';

function context(overrides: Partial<RuntimeContext> = {}): RuntimeContext {
  return {
    deployment: { id: 'd1', name: 'tiny', team: 'default' },
    revision: 1,
    servedModelName: 'tiny-chat',
    model: { versionId: 'v1', name: 'tiny', number: 1, path: '/models/tiny/1', metadata: {} },
    revisionDir: '/data/serving/d1/1',
    executor: 'local',
    resources: { gpus: 0 },
    replicas: 1,
    options: { ...DEFAULT_OPTIONS },
    maxGpusPerNode: 0,
    ...overrides,
  };
}

describe('serving-triton runtime', () => {
  it('contributes the triton runtime to serving.runtimes', () => {
    const contributed: { ref: { id?: string; name?: string }; item: ServingRuntime }[] = [];
    const env = { manifest: { id: 'serving-triton' }, contribute: (ref: never, item: never) => contributed.push({ ref, item }) };
    plugin.register(env as never);
    expect(contributed).toHaveLength(1);
    const runtime = contributed[0]!.item;
    expect(runtime).toMatchObject({ id: 'triton', protocol: 'kserve-v2', gpu: 'optional', executors: ['local', 'docker'] });
    expect(runtime.openai?.paths).toEqual(['/chat/completions', '/completions']);
    expect(Object.keys((runtime.optionsSchema as { properties: object }).properties)).toEqual(
      expect.arrayContaining(['instanceGroups', 'maxBatchSize', 'dynamicBatching', 'maxQueueDelayMicroseconds', 'maxNewTokens']),
    );
  });

  it('refuses KIND_GPU instance groups without GPUs, and other impossible revisions', () => {
    const runtime = tritonRuntime(() => ({}));
    const gpuGroup = { ...DEFAULT_OPTIONS, instanceGroups: [{ count: 1, kind: 'KIND_GPU' }] };
    expect(runtime.check!(context({ options: gpuGroup }))).toMatch(/KIND_GPU instance group needs GPUs/);
    expect(runtime.check!(context({ options: gpuGroup, resources: { gpus: 1 }, maxGpusPerNode: 8 }))).toBeUndefined();
    expect(runtime.check!(context({ resources: { gpus: 4 }, maxGpusPerNode: 2 }))).toMatch(/largest node has 2/);
    expect(runtime.check!(context({ options: { ...DEFAULT_OPTIONS, dtype: 'float16' } }))).toMatch(/float16/);
    expect(runtime.check!(context())).toBeUndefined();
  });

  it('reports the local engine unavailable, with a reason, when python points at a missing path', async () => {
    clearEngineCache();
    const status = await tritonRuntime(() => ({ python: '/nonexistent/venv/bin/python' })).engine('local');
    expect(status).toEqual({ available: false, version: null, reason: expect.stringContaining('/nonexistent/venv/bin/python') });
    const ts = await tritonRuntime(() => ({ python: process.execPath, tritonserver: '/nonexistent/tritonserver' })).engine('local');
    expect(ts.available).toBe(false);
    expect(ts.reason).toContain('/nonexistent/tritonserver');
    expect((await tritonRuntime(() => ({})).engine('k8s')).reason).toMatch(/local and docker/);
  });

  it('reports the docker engine with a reason when the image is not there', async () => {
    clearEngineCache();
    const status = await tritonRuntime(() => ({ image: 'aiplat-test/no-such-triton-image:0' })).engine('docker');
    expect(status.available).toBe(false);
    expect(status.reason).toContain('aiplat-test/no-such-triton-image:0');
  });

  it('writes a model repository and the argv for both executors', async () => {
    const runtime = tritonRuntime(() => ({}));
    const local = await runtime.launch(context({ servedModelName: 'acme/tiny chat' }));
    expect(tritonModelName('acme/tiny chat')).toBe('acme--tiny_chat');
    expect(Object.keys(local.files!).sort()).toEqual(['model_repository/acme--tiny_chat/1/model.py', 'model_repository/acme--tiny_chat/config.pbtxt']);
    expect(local.command[1]).toBe(path.resolve(import.meta.dirname, '../runtime/launch.py'));
    expect(local.command.slice(-2)).toEqual(['--model-repository', '/data/serving/d1/1/model_repository']);
    expect(local.readiness.path).toBe('/v2/health/ready');
    const pbtxt = local.files!['model_repository/acme--tiny_chat/config.pbtxt'];
    expect(pbtxt).toContain('name: "acme--tiny_chat"');
    expect(pbtxt).toContain('backend: "python"');
    expect(pbtxt).toContain('max_queue_delay_microseconds: 100');
    expect(pbtxt).toMatch(/key: "model_path"\n\s+value: \{ string_value: "\/models\/tiny\/1" \}/);
    expect(local.files!['model_repository/acme--tiny_chat/1/model.py']).toContain('class TritonPythonModel');

    const docker = await tritonRuntime(() => ({ image: 'example/triton:1' })).launch(context({ executor: 'docker' }));
    expect(docker.image).toBe('example/triton:1');
    expect(docker.command[0]).toBe('tritonserver');
    expect(docker.containerPort).toBe(8000);
    expect(docker.mounts).toEqual([{ source: '/data/serving/d1/1/model_repository', target: '/opt/aiplat/model_repository', readOnly: true }]);
    expect(docker.files!['model_repository/tiny-chat/config.pbtxt']).toContain('string_value: "/model"');

    const noBatching = configPbtxt({ servedModelName: 'x', options: { ...DEFAULT_OPTIONS, dynamicBatching: false, instanceGroups: [{ count: 2, kind: 'KIND_GPU' }] } }, '/m');
    expect(noBatching).not.toContain('dynamic_batching');
    expect(noBatching).toContain('count: 2\n    kind: KIND_GPU');
  });

  it('maps OpenAI requests to KServe v2 infer and back', () => {
    const ctx = { servedModelName: 'acme/tiny' };
    const chat = openaiAdapter.request('/chat/completions', { model: 'acme/tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 4, temperature: 0 }, ctx);
    expect(chat.path).toBe('/v2/models/acme--tiny/infer');
    expect(chat.body).toEqual({
      inputs: [
        { name: 'text_input', datatype: 'BYTES', shape: [1, 1], data: ['[{"role":"user","content":"hi"}]'] },
        { name: 'max_tokens', datatype: 'INT32', shape: [1, 1], data: [4] },
        { name: 'temperature', datatype: 'FP32', shape: [1, 1], data: [0] },
        { name: 'chat_template', datatype: 'BOOL', shape: [1, 1], data: [true] },
      ],
    });
    const upstream = {
      model_name: 'acme--tiny',
      outputs: [
        { name: 'text_output', datatype: 'BYTES', shape: [1, 1], data: ['hello'] },
        { name: 'prompt_tokens', datatype: 'INT32', shape: [1, 1], data: [7] },
        { name: 'completion_tokens', datatype: 'INT32', shape: [1, 1], data: [2] },
        { name: 'finish_reason', datatype: 'BYTES', shape: [1, 1], data: ['stop'] },
      ],
    };
    const answer = openaiAdapter.response('/completions', upstream, { ...ctx, request: {} });
    expect(answer).toMatchObject({
      object: 'text_completion',
      model: 'acme/tiny',
      choices: [{ index: 0, text: 'hello', finish_reason: 'stop' }],
      usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
    });
    expect(() => openaiAdapter.response('/completions', { error: 'boom' }, { ...ctx, request: {} })).toThrow(/boom/);
  });
});
