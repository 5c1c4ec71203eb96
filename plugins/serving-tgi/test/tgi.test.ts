/**
 * The tgi runtime against TGI's own published contract (3.3.6): its OpenAPI schema
 * (fixtures/tgi-openapi-3.3.6.json) and its documented launcher options (fixtures/tgi-launcher-3.3.6.md),
 * both taken verbatim from huggingface/text-generation-inference (fixtures/SOURCE.md). No TGI server
 * runs here: TGI ships as a CUDA container.
 */
import { describe, expect, it } from 'vitest';
import type { RuntimeContext } from '@aiplat-plugins/serving/api';
import { DEFAULT_IMAGE, LOCAL_REFUSAL, OPENAI_PATHS, QUANTIZE, optionsSchema, problemOf, tgiEngine, tgiLaunch, tgiRuntime } from '../src/index.js';
import { documentedLauncherFlags, errorsOf, exampleOf, openapi, schemaNamed, TGI_VERSION, validator } from './openapi.js';

function context(over: Partial<RuntimeContext> = {}, options: Record<string, unknown> = {}): RuntimeContext {
  return {
    deployment: { id: 'd1', name: 'chat', team: 'default' },
    revision: 1,
    servedModelName: 'tiny-chat',
    model: {
      versionId: 'v1',
      name: 'tiny',
      number: 1,
      path: '/data/models/tiny/1',
      metadata: { contextLength: 4096, layers: 2, hiddenSize: 64, attentionHeads: 4, keyValueHeads: 4 },
    },
    revisionDir: '/data/serving/d1/1',
    executor: 'docker',
    resources: { gpus: 1 },
    replicas: 1,
    options: { maxConcurrentRequests: 128, quantize: 'none', dtype: 'auto', ...options },
    maxGpusPerNode: 8,
    ...over,
  };
}

function ok(v: ReturnType<typeof validator>, data: unknown): void {
  const valid = v(data);
  expect(valid, valid ? '' : errorsOf(v)).toBe(true);
}

describe('TGI OpenAPI schema (published, 3.3.6)', () => {
  it('is the fixture we think it is', () => {
    expect(TGI_VERSION).toBe('3.3.6');
    expect(DEFAULT_IMAGE).toBe(`ghcr.io/huggingface/text-generation-inference:${TGI_VERSION}`);
    expect(openapi.info.version).toBe('3.3.6-dev0');
    // The OpenAI paths TGI answers itself: the /v1 alias forwards them unchanged.
    for (const p of OPENAI_PATHS) expect(Object.keys(openapi.paths)).toContain(p);
    expect(openapi.paths['/v1/chat/completions']!.post!.requestBody).toMatchObject({ content: { 'application/json': { schema: { $ref: '#/components/schemas/ChatRequest' } } } });
    expect(openapi.paths['/generate']!.post!.requestBody).toMatchObject({ content: { 'application/json': { schema: { $ref: '#/components/schemas/GenerateRequest' } } } });
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/health', '/metrics', '/info']));
  });

  it('accepts a chat completion as the /v1 alias forwards it (model replaced by the upstream name)', () => {
    const launch = tgiLaunch(context(), DEFAULT_IMAGE);
    const v = validator('ChatRequest');
    const plain = {
      model: launch.upstreamModel,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Say hello.' },
      ],
      max_tokens: 16,
      temperature: 0,
      top_p: 1,
      seed: 7,
      stop: ['</s>'],
      stream: false,
    };
    ok(v, plain);
    ok(v, { ...plain, stream: true, stream_options: { include_usage: true } });
    // OpenAI content parts.
    ok(v, { ...plain, messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello.' }] }] });
    // What TGI would refuse is caught by its schema too.
    expect(v({ ...plain, messages: 'hi' })).toBe(false);
    expect(v({ model: 'x' })).toBe(false);
    expect(v({ ...plain, max_tokens: -1 })).toBe(false);
  });

  it('accepts a /completions and a /generate request', () => {
    const completion = validator('CompletionRequest');
    ok(completion, { model: '/model', prompt: ['Once upon a time'], max_tokens: 8, temperature: 0, stream: false });
    // A gap in TGI's published schema: `Prompt` is declared an array of strings, but TGI's router also
    // takes a single string (router/src/lib.rs, `PromptDeserializer::Single`), which OpenAI clients
    // send. The /v1 alias forwards it unchanged and TGI accepts it; the schema alone would not.
    expect(completion({ model: '/model', prompt: 'Once upon a time', max_tokens: 8 })).toBe(false);
    const gen = validator('GenerateRequest');
    ok(gen, { inputs: 'Once upon a time', parameters: { max_new_tokens: 8, do_sample: false, details: true, stop: ['\n'] } });
    ok(gen, { inputs: 'Once upon a time', parameters: { max_new_tokens: 8, temperature: 0.7, top_p: 0.9, do_sample: true, seed: 1 } });
    // TGI's schema: temperature and top_p strictly above 0, top_p at most 1.
    expect(gen({ inputs: 'x', parameters: { temperature: 0 } })).toBe(false);
    expect(gen({ inputs: 'x', parameters: { top_p: 1.5 } })).toBe(false);
  });

  it('its own examples validate against ChatCompletion, ChatCompletionChunk, GenerateResponse, ChatRequest', () => {
    for (const name of ['ChatCompletion', 'ChatCompletionChunk', 'GenerateResponse', 'ChatRequest', 'GenerateRequest', 'Info']) {
      const example = exampleOf(schemaNamed(name));
      ok(validator(name), example);
    }
    const completion = exampleOf(schemaNamed('ChatCompletion')) as { model: string; created: number; choices: { message: { content: string } }[] };
    expect(completion.model).toBe('mistralai/Mistral-7B-Instruct-v0.2');
    expect(completion.created).toBe(1706270835);
    expect(completion.choices[0]!.message.content).toBe('My name is David and I');
  });

  it('an answer shaped like OpenAI\u2019s (what the alias hands back) fits ChatCompletion and ChatCompletionChunk', () => {
    ok(validator('ChatCompletion'), {
      object: 'chat.completion',
      id: '',
      created: 1732000000,
      model: '/model',
      system_fingerprint: '3.3.6-sha-efb94e0',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello.' }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
    });
    ok(validator('ChatCompletionChunk'), {
      object: 'chat.completion.chunk',
      id: '',
      created: 1732000000,
      model: '/model',
      system_fingerprint: '3.3.6-sha-efb94e0',
      choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, logprobs: null, finish_reason: null }],
      usage: null,
    });
  });
});

describe('launch spec', () => {
  const documented = documentedLauncherFlags();

  it('reads the documented launcher options', () => {
    expect(documented.size).toBeGreaterThan(50);
    expect(documented.get('--quantize')).toEqual(QUANTIZE.filter((q) => q !== 'none'));
    expect(documented.get('--dtype')).toEqual(['float16', 'bfloat16']);
  });

  it('uses only documented flags, with documented values', () => {
    const cases = [
      context(),
      context({ resources: { gpus: 4 } }, { numShard: 4, maxInputTokens: 3000, maxTotalTokens: 4096, maxBatchPrefillTokens: 4096, quantize: 'awq' }),
      context({ resources: { gpus: 2 } }, { dtype: 'bfloat16', maxConcurrentRequests: 16 }),
      context({ resources: { gpus: 0 } }),
    ];
    for (const c of cases) {
      expect(problemOf(c)).toBeUndefined();
      const { command } = tgiLaunch(c, DEFAULT_IMAGE);
      expect(command[0]).toBe('/tgi-entrypoint.sh');
      const args = command.slice(1);
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        if (!a.startsWith('--')) continue;
        expect(documented.has(a), `${a} is a documented launcher option`).toBe(true);
        const values = documented.get(a);
        if (values) expect(values).toContain(args[i + 1]);
      }
      // The optionsSchema's enums are the documented values (plus none/auto: flag left out).
    }
    const props = optionsSchema.properties;
    expect(props.quantize.enum.filter((q) => q !== 'none')).toEqual(documented.get('--quantize'));
    expect(props.dtype.enum.filter((d) => d !== 'auto')).toEqual(documented.get('--dtype'));
  });

  it('builds the container spec', () => {
    const l = tgiLaunch(context({ resources: { gpus: 2 } }, { maxInputTokens: 1024, maxTotalTokens: 2048, quantize: 'fp8' }), 'registry.local/tgi:3.3.6');
    expect(l).toEqual({
      image: 'registry.local/tgi:3.3.6',
      command: [
        '/tgi-entrypoint.sh',
        '--model-id', '/model',
        '--port', '80',
        '--hostname', '0.0.0.0',
        '--num-shard', '2',
        '--max-input-tokens', '1024',
        '--max-total-tokens', '2048',
        '--max-concurrent-requests', '128',
        '--quantize', 'fp8',
        '--usage-stats', 'off',
      ],
      env: { HF_HUB_OFFLINE: '1' },
      mounts: [{ source: '/data/models/tiny/1', target: '/model', readOnly: true }],
      containerPort: 80,
      readiness: { path: '/health', initialDelaySeconds: 5, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 240 },
      upstreamModel: '/model',
    });
    // CPU replica: no shards flag.
    expect(tgiLaunch(context({ resources: { gpus: 0 } }), DEFAULT_IMAGE).command).not.toContain('--num-shard');
  });

  it('declares the runtime', () => {
    const r = tgiRuntime(() => ({}));
    expect(r).toMatchObject({ id: 'tgi', protocol: 'tgi', gpu: 'optional', executors: ['docker'], metricsPath: '/metrics' });
    expect(r.check?.(context())).toBeUndefined();
    expect((r.launch(context()) as { image: string }).image).toBe(DEFAULT_IMAGE);
    expect((tgiRuntime(() => ({ image: 'mine:1' })).launch(context()) as { image: string }).image).toBe('mine:1');
  });
});

describe('refusals', () => {
  const cases: [string, RuntimeContext, RegExp][] = [
    ['local executor', context({ executor: 'local' }), /^TGI runs only in its container: choose the docker executor$/],
    ['another executor', context({ executor: 'k8s' }), /not on "k8s"/],
    ['max input ≥ max total', context({}, { maxInputTokens: 2048, maxTotalTokens: 2048 }), /most prompt tokens \(2048\) must be less than most prompt \+ output tokens \(2048\)/],
    ['max total above context', context({}, { maxTotalTokens: 8192 }), /above the model's context length \(4096 tokens\)/],
    ['max input ≥ context (no total)', context({}, { maxInputTokens: 4096 }), /less than the model's context length/],
    ['shards ≠ GPUs', context({ resources: { gpus: 2 } }, { numShard: 4 }), /shards \(4\) must equal the replica's GPUs \(2\)/],
    ['shards without GPUs', context({ resources: { gpus: 0 } }, { numShard: 2 }), /needs? 2 GPUs, but the replica has none/],
    ['GPUs above the largest node', context({ resources: { gpus: 16 }, maxGpusPerNode: 8 }), /largest node has 8/],
    ['quantize without GPU', context({ resources: { gpus: 0 } }, { quantize: 'gptq' }), /"gptq" needs a GPU/],
    ['exl2 sharded', context({ resources: { gpus: 2 } }, { quantize: 'exl2' }), /exl2 quantization does not support sharding/],
    ['dtype with quantize', context({}, { quantize: 'awq', dtype: 'float16' }), /cannot be combined with quantization "awq"/],
    ['prefill below max input', context({}, { maxInputTokens: 2000, maxTotalTokens: 4000, maxBatchPrefillTokens: 1000 }), /prefill batch \(1000\) must be at least most prompt tokens \(2000\)/],
  ];
  it.each(cases)('%s', (_name, c, reason) => {
    expect(problemOf(c)).toMatch(reason);
  });
});

describe('engine', () => {
  it('is unavailable on local, with the reason', async () => {
    expect(await tgiEngine('local', DEFAULT_IMAGE)).toEqual({ available: false, version: null, reason: LOCAL_REFUSAL });
    expect(await tgiRuntime(() => ({})).engine('local')).toEqual({ available: false, version: null, reason: LOCAL_REFUSAL });
  });

  it('on docker, says why when there is no docker CLI', async () => {
    const s = await tgiEngine('docker', DEFAULT_IMAGE, '/nonexistent/docker');
    expect(s).toEqual({ available: false, version: null, reason: `no docker CLI on this machine to look for the image ${DEFAULT_IMAGE}` });
  });

  it('on docker, asks the real docker CLI when there is one', async () => {
    const s = await tgiEngine('docker', DEFAULT_IMAGE);
    // Whatever this machine has (no CLI, no engine, no image, or the image): a person-readable answer.
    if (s.available) expect(s.version).toBe(TGI_VERSION);
    else expect(s.reason).toMatch(/docker|image/);
  });
});
