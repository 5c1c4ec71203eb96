/**
 * The Triton runtime's pure parts: its options, the model repository it writes (config.pbtxt and
 * the Python-backend model.py), the checks, and the OpenAI adapter (OpenAI chat / completions ⇄
 * KServe v2 infer with BYTES tensors). No I/O here except reading the shipped model.py once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pluginRootOf } from '@aiplat/plugin-sdk';
import type { OpenAiAdapter, RuntimeContext } from '@aiplat-plugins/serving/api';

/** The plugin's folder (its `runtime/` holds the launcher and the model.py it writes). */
export const PLUGIN_DIR = pluginRootOf(import.meta.url);
export const RUNTIME_DIR = path.join(PLUGIN_DIR, 'runtime');
/** The model repository's folder inside the revision folder. */
export const REPOSITORY_DIR = 'model_repository';
/** Where the docker executor mounts the model repository inside the container. */
export const CONTAINER_REPOSITORY = '/opt/aiplat/model_repository';
/** tritonserver's HTTP port inside a container. */
export const CONTAINER_HTTP_PORT = 8000;

export type InstanceKind = 'KIND_CPU' | 'KIND_GPU';

export interface TritonOptions {
  instanceGroups: { count: number; kind: InstanceKind }[];
  maxBatchSize: number;
  dynamicBatching: boolean;
  maxQueueDelayMicroseconds: number;
  maxNewTokens: number;
  dtype: 'auto' | 'float32' | 'bfloat16' | 'float16';
}

export const DEFAULT_OPTIONS: TritonOptions = {
  instanceGroups: [{ count: 1, kind: 'KIND_CPU' }],
  maxBatchSize: 8,
  dynamicBatching: true,
  maxQueueDelayMicroseconds: 100,
  maxNewTokens: 128,
  dtype: 'auto',
};

/** The runtime's `optionsSchema`: Triton's own knobs, named as in config.pbtxt. */
export const optionsSchema: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    instanceGroups: {
      type: 'array',
      title: 'Instance groups (instance_group): model instances per replica and where they run',
      minItems: 1,
      maxItems: 8,
      default: DEFAULT_OPTIONS.instanceGroups,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['count', 'kind'],
        properties: {
          count: { type: 'integer', minimum: 1, maximum: 16, default: 1, title: 'Instances (count; KIND_GPU: per visible GPU)' },
          kind: { type: 'string', enum: ['KIND_CPU', 'KIND_GPU'], default: 'KIND_CPU', title: 'Kind' },
        },
      },
    },
    maxBatchSize: {
      type: 'integer',
      minimum: 1,
      maximum: 1024,
      default: DEFAULT_OPTIONS.maxBatchSize,
      title: 'Max batch size (max_batch_size): requests the dynamic batcher may hand the model at once',
    },
    dynamicBatching: { type: 'boolean', default: DEFAULT_OPTIONS.dynamicBatching, title: 'Dynamic batching (dynamic_batching)' },
    maxQueueDelayMicroseconds: {
      type: 'integer',
      minimum: 0,
      maximum: 10_000_000,
      default: DEFAULT_OPTIONS.maxQueueDelayMicroseconds,
      title: 'Max queue delay, µs (dynamic_batching.max_queue_delay_microseconds)',
    },
    maxNewTokens: {
      type: 'integer',
      minimum: 1,
      maximum: 32_768,
      default: DEFAULT_OPTIONS.maxNewTokens,
      title: 'Default max new tokens (when a request names none)',
    },
    dtype: {
      type: 'string',
      enum: ['auto', 'float32', 'bfloat16', 'float16'],
      default: DEFAULT_OPTIONS.dtype,
      title: 'Weights dtype (auto: as saved)',
    },
  },
};

/** The options with defaults for anything missing (the serving plugin fills them in; tests may not). */
export function optionsOf(options: Record<string, unknown>): TritonOptions {
  return { ...DEFAULT_OPTIONS, ...(options as Partial<TritonOptions>) };
}

/**
 * The name Triton knows the model by: its folder in the repository, so no `/`, `\`, leading dot or
 * odd characters. `org/model` becomes `org--model`. The adapter derives it the same way from
 * `servedModelName`, so nothing else has to carry it.
 */
export function tritonModelName(servedModelName: string): string {
  const name = servedModelName
    .replace(/[/\\]/g, '--')
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_');
  return name.slice(0, 200) || 'model';
}

/** A reason to refuse the revision, or undefined. */
export function problemOf(context: Pick<RuntimeContext, 'options' | 'resources' | 'maxGpusPerNode' | 'servedModelName'>): string | undefined {
  const o = optionsOf(context.options);
  const gpus = context.resources.gpus ?? 0;
  const wantsGpu = o.instanceGroups.some((g) => g.kind === 'KIND_GPU');
  if (wantsGpu && gpus < 1 && !context.resources.gpuMemoryMiB) {
    return 'a KIND_GPU instance group needs GPUs: give each replica at least one GPU (resources.gpus), or use KIND_CPU';
  }
  if (gpus > context.maxGpusPerNode) {
    return `a replica asks for ${gpus} GPUs, but the largest node has ${context.maxGpusPerNode}`;
  }
  if (!wantsGpu && o.dtype === 'float16') {
    return 'float16 weights need a KIND_GPU instance group (use bfloat16 or float32 on CPU)';
  }
  if (o.instanceGroups.reduce((n, g) => n + g.count, 0) > 16) {
    return 'at most 16 model instances per replica (each loads its own copy of the weights)';
  }
  if (!context.servedModelName.trim()) return 'the served model name is empty';
  return undefined;
}

function pbString(value: string): string {
  return JSON.stringify(value); // protobuf text format accepts C-style escapes; JSON's are a subset
}

/** config.pbtxt of the generated Python-backend model. */
export function configPbtxt(context: Pick<RuntimeContext, 'servedModelName' | 'options'>, modelPath: string): string {
  const o = optionsOf(context.options);
  const tensor = (name: string, type: string, optional = false) =>
    `  {\n    name: ${pbString(name)}\n    data_type: ${type}\n    dims: [ 1 ]${optional ? '\n    optional: true' : ''}\n  }`;
  const inputs = [
    tensor('text_input', 'TYPE_STRING'),
    tensor('max_tokens', 'TYPE_INT32', true),
    tensor('temperature', 'TYPE_FP32', true),
    tensor('top_p', 'TYPE_FP32', true),
    tensor('seed', 'TYPE_INT64', true),
    tensor('chat_template', 'TYPE_BOOL', true),
  ];
  const outputs = [
    tensor('text_output', 'TYPE_STRING'),
    tensor('prompt_tokens', 'TYPE_INT32'),
    tensor('completion_tokens', 'TYPE_INT32'),
    tensor('finish_reason', 'TYPE_STRING'),
  ];
  const groups = o.instanceGroups.map((g) => `  {\n    count: ${g.count}\n    kind: ${g.kind}\n  }`);
  const parameters: Record<string, string> = {
    model_path: modelPath,
    max_new_tokens: String(o.maxNewTokens),
    dtype: o.dtype,
    served_model_name: context.servedModelName,
  };
  const lines = [
    `# Written by the aiplat serving-triton runtime for ${context.servedModelName}.`,
    `name: ${pbString(tritonModelName(context.servedModelName))}`,
    'backend: "python"',
    `max_batch_size: ${o.maxBatchSize}`,
    `input [\n${inputs.join(',\n')}\n]`,
    `output [\n${outputs.join(',\n')}\n]`,
    `instance_group [\n${groups.join(',\n')}\n]`,
  ];
  if (o.dynamicBatching) lines.push(`dynamic_batching {\n  max_queue_delay_microseconds: ${o.maxQueueDelayMicroseconds}\n}`);
  for (const [key, value] of Object.entries(parameters)) {
    lines.push(`parameters {\n  key: ${pbString(key)}\n  value: { string_value: ${pbString(value)} }\n}`);
  }
  return lines.join('\n') + '\n';
}

let modelPy: string | undefined;
/** The Python-backend model (runtime/model.py), written as `<model>/1/model.py`. */
export function modelPySource(): string {
  modelPy ??= fs.readFileSync(path.join(RUNTIME_DIR, 'model.py'), 'utf8');
  return modelPy;
}

/** The model repository's files, relative to the revision folder. */
export function repositoryFiles(context: Pick<RuntimeContext, 'servedModelName' | 'options'>, modelPath: string): Record<string, string> {
  const name = tritonModelName(context.servedModelName);
  return {
    [`${REPOSITORY_DIR}/${name}/config.pbtxt`]: configPbtxt(context, modelPath),
    [`${REPOSITORY_DIR}/${name}/1/model.py`]: modelPySource(),
  };
}

// ---------------------------------------------------------------------------------------------
// KServe v2 ⇄ OpenAI

interface V2Tensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}

/** The KServe v2 infer request for one prompt (`chat`: the prompt is a JSON list of messages). */
export function inferRequest(
  prompt: string,
  settings: { maxTokens?: number; temperature?: number; topP?: number; seed?: number; chat?: boolean } = {},
): { inputs: V2Tensor[] } {
  const inputs: V2Tensor[] = [{ name: 'text_input', datatype: 'BYTES', shape: [1, 1], data: [prompt] }];
  if (settings.maxTokens !== undefined) inputs.push({ name: 'max_tokens', datatype: 'INT32', shape: [1, 1], data: [settings.maxTokens] });
  if (settings.temperature !== undefined) inputs.push({ name: 'temperature', datatype: 'FP32', shape: [1, 1], data: [settings.temperature] });
  if (settings.topP !== undefined) inputs.push({ name: 'top_p', datatype: 'FP32', shape: [1, 1], data: [settings.topP] });
  if (settings.seed !== undefined) inputs.push({ name: 'seed', datatype: 'INT64', shape: [1, 1], data: [settings.seed] });
  if (settings.chat) inputs.push({ name: 'chat_template', datatype: 'BOOL', shape: [1, 1], data: [true] });
  return { inputs };
}

/** The outputs of a KServe v2 infer answer, by name (first element of each). */
export function inferOutputs(upstream: unknown): { text: string; promptTokens: number; completionTokens: number; finishReason: string; id: string | null } {
  const answer = upstream as { id?: string; outputs?: V2Tensor[]; error?: string };
  if (!answer || typeof answer !== 'object' || !Array.isArray(answer.outputs)) {
    throw new Error(`Triton answered without outputs${answer && typeof answer.error === 'string' ? `: ${answer.error}` : ''}`);
  }
  const first = (name: string) => answer.outputs!.find((o) => o.name === name)?.data?.[0];
  const text = first('text_output');
  if (typeof text !== 'string') throw new Error('Triton answered without a text_output');
  return {
    text,
    promptTokens: Number(first('prompt_tokens') ?? 0),
    completionTokens: Number(first('completion_tokens') ?? 0),
    finishReason: typeof first('finish_reason') === 'string' ? (first('finish_reason') as string) : 'stop',
    id: typeof answer.id === 'string' && answer.id ? answer.id : null,
  };
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The text content of an OpenAI message (a string, or an array of `{type: 'text', text}` parts). */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part === 'object' && (part as { type?: unknown }).type === 'text' ? String((part as { text?: unknown }).text ?? '') : ''))
      .join('');
  }
  return content == null ? '' : String(content);
}

function settingsOf(body: Record<string, unknown>) {
  const maxTokens = num(body.max_completion_tokens) ?? num(body.max_tokens);
  return { maxTokens, temperature: num(body.temperature), topP: num(body.top_p), seed: num(body.seed) };
}

let counter = 0;
function openAiId(prefix: string, upstreamId: string | null): string {
  return `${prefix}-${upstreamId ?? `${Date.now().toString(36)}${(counter++).toString(36)}`}`;
}

export const openaiAdapter: OpenAiAdapter = {
  paths: ['/chat/completions', '/completions'],
  request(openAiPath, body, context) {
    const target = `/v2/models/${encodeURIComponent(tritonModelName(context.servedModelName))}/infer`;
    if (openAiPath === '/chat/completions') {
      const messages = Array.isArray(body.messages) ? body.messages : [];
      const plain = messages.map((m) => {
        const message = (m ?? {}) as Record<string, unknown>;
        return { role: String(message.role ?? 'user'), content: contentText(message.content) };
      });
      return { path: target, body: inferRequest(JSON.stringify(plain), { ...settingsOf(body), chat: true }) };
    }
    if (openAiPath === '/completions') {
      const prompt = Array.isArray(body.prompt) ? String(body.prompt[0] ?? '') : String(body.prompt ?? '');
      return { path: target, body: inferRequest(prompt, settingsOf(body)) };
    }
    throw new Error(`the Triton runtime does not answer ${openAiPath}`);
  },
  response(openAiPath, upstream, context) {
    const out = inferOutputs(upstream);
    const usage = { prompt_tokens: out.promptTokens, completion_tokens: out.completionTokens, total_tokens: out.promptTokens + out.completionTokens };
    const created = Math.floor(Date.now() / 1000);
    if (openAiPath === '/chat/completions') {
      return {
        id: openAiId('chatcmpl', out.id),
        object: 'chat.completion',
        created,
        model: context.servedModelName,
        choices: [{ index: 0, message: { role: 'assistant', content: out.text }, logprobs: null, finish_reason: out.finishReason }],
        usage,
      };
    }
    return {
      id: openAiId('cmpl', out.id),
      object: 'text_completion',
      created,
      model: context.servedModelName,
      choices: [{ index: 0, text: out.text, logprobs: null, finish_reason: out.finishReason }],
      usage,
    };
  },
};
