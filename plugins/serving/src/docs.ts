/**
 * API docs of a deployment: an OpenAPI document of the `/v1` paths its runtime answers, with the
 * deployment's model name, and copy-paste snippets (curl, Python `openai`, JavaScript `openai`).
 */
import type { ApiDocs, ServingRuntime } from '../api/index.js';

const message = {
  type: 'object',
  required: ['role', 'content'],
  properties: { role: { type: 'string', enum: ['system', 'user', 'assistant'] }, content: { type: 'string' } },
};

const usage = {
  type: 'object',
  properties: { prompt_tokens: { type: 'integer' }, completion_tokens: { type: 'integer' }, total_tokens: { type: 'integer' } },
};

const sampling = {
  max_tokens: { type: 'integer', minimum: 1, description: 'Most tokens to generate.' },
  temperature: { type: 'number', minimum: 0, maximum: 2, description: '0 for greedy decoding.' },
  top_p: { type: 'number', minimum: 0, maximum: 1 },
  stop: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }] },
  stream: { type: 'boolean', description: 'Answer as server-sent events (`data: {...}` chunks, then `data: [DONE]`).' },
};

/** The OpenAI paths a runtime answers through the alias. */
export function pathsOf(runtime: ServingRuntime | undefined): string[] {
  if (runtime?.openai) return runtime.openai.paths;
  return ['/chat/completions', '/completions'];
}

export function openApiOf(input: { baseUrl: string; model: string; deployment: string; revision: number; runtime: ServingRuntime | undefined }): Record<string, unknown> {
  const modelField = { type: 'string', enum: [input.model], description: 'The deployment’s served model name.' };
  const paths: Record<string, unknown> = {};
  const available = pathsOf(input.runtime);
  const errors = {
    '400': { description: 'The request is not valid', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '401': { description: 'No valid token', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '404': { description: 'No such model, or no access to it', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '503': { description: 'No replica is ready', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
  };
  if (available.includes('/chat/completions')) {
    paths['/chat/completions'] = {
      post: {
        operationId: 'createChatCompletion',
        summary: `Chat with ${input.model}`,
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'object', required: ['model', 'messages'], additionalProperties: true, properties: { model: modelField, messages: { type: 'array', minItems: 1, items: message }, ...sampling } },
              example: { model: input.model, messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 32 },
            },
          },
        },
        responses: {
          '200': {
            description: 'The answer (a `chat.completion`, or `chat.completion.chunk` events when streamed)',
            content: {
              'application/json': { schema: { $ref: '#/components/schemas/ChatCompletion' } },
              'text/event-stream': { schema: { type: 'string' } },
            },
          },
          ...errors,
        },
      },
    };
  }
  if (available.includes('/completions')) {
    paths['/completions'] = {
      post: {
        operationId: 'createCompletion',
        summary: `Complete a prompt with ${input.model}`,
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'object', required: ['model', 'prompt'], additionalProperties: true, properties: { model: modelField, prompt: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] }, ...sampling } },
              example: { model: input.model, prompt: 'Once upon a time', max_tokens: 32 },
            },
          },
        },
        responses: {
          '200': { description: 'The completion (`text_completion`)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Completion' } }, 'text/event-stream': { schema: { type: 'string' } } } },
          ...errors,
        },
      },
    };
  }
  if (available.includes('/embeddings')) {
    paths['/embeddings'] = {
      post: {
        operationId: 'createEmbedding',
        summary: `Embeddings from ${input.model}`,
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['model', 'input'], properties: { model: modelField, input: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] } } } } } },
        responses: { '200': { description: 'The embeddings' }, ...errors },
      },
    };
  }
  paths['/models'] = { get: { operationId: 'listModels', summary: 'The models you may call', responses: { '200': { description: 'A list of models' } } } };
  return {
    openapi: '3.1.0',
    info: { title: `${input.deployment} (${input.model})`, version: `revision ${input.revision}`, description: `OpenAI-compatible API of the deployment ${input.deployment}, served by the ${input.runtime?.id ?? 'unknown'} runtime. Authenticate with a gateway API key of the deployment's team (Serving → API keys): \`Authorization: Bearer sk-aiplat-…\`; a platform API token also works.` },
    servers: [{ url: input.baseUrl }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        ChatCompletion: {
          type: 'object',
          required: ['id', 'object', 'created', 'model', 'choices'],
          properties: {
            id: { type: 'string' },
            object: { const: 'chat.completion' },
            created: { type: 'integer' },
            model: { type: 'string' },
            choices: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, message, finish_reason: { type: ['string', 'null'] } } } },
            usage,
          },
        },
        Completion: {
          type: 'object',
          required: ['id', 'object', 'created', 'model', 'choices'],
          properties: {
            id: { type: 'string' },
            object: { const: 'text_completion' },
            created: { type: 'integer' },
            model: { type: 'string' },
            choices: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, text: { type: 'string' }, finish_reason: { type: ['string', 'null'] } } } },
            usage,
          },
        },
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: ['string', 'null'] } } } },
        },
      },
    },
  };
}

export function snippetsOf(baseUrl: string, model: string): ApiDocs['snippets'] {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 64 });
  return [
    {
      id: 'curl',
      title: 'curl',
      language: 'bash',
      code: `curl ${baseUrl}/chat/completions \\\n  -H "Authorization: Bearer $AIPLAT_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`,
    },
    {
      id: 'python',
      title: 'Python (openai)',
      language: 'python',
      code: `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${baseUrl}", api_key=os.environ["AIPLAT_API_KEY"])\nanswer = client.chat.completions.create(\n    model="${model}",\n    messages=[{"role": "user", "content": "Hello!"}],\n    max_tokens=64,\n)\nprint(answer.choices[0].message.content)\n`,
    },
    {
      id: 'javascript',
      title: 'JavaScript (openai)',
      language: 'javascript',
      code: `import OpenAI from 'openai';\n\nconst client = new OpenAI({ baseURL: '${baseUrl}', apiKey: process.env.AIPLAT_API_KEY });\nconst answer = await client.chat.completions.create({\n  model: '${model}',\n  messages: [{ role: 'user', content: 'Hello!' }],\n  max_tokens: 64,\n});\nconsole.log(answer.choices[0].message.content);\n`,
    },
  ];
}
