/**
 * The playground's chat: a streamed OpenAI chat completion through
 * `POST /playground/chat/completions?deployment=&revision=` (the signed-in user's token, by the SDK
 * client's raw `fetch`), read as Server-Sent Events chunk by chunk; and the same request written out
 * as code against `/v1` (curl, Python `openai`, JavaScript `openai`) with the API key left to an
 * environment variable.
 */
import { createParser } from 'eventsource-parser';
import type { ApiClient } from '@aiplat/plugin-sdk/web';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The sampling parameters the playground sends. */
export interface ChatParams {
  temperature: number;
  topP: number;
  /** Null: the server's default. */
  maxTokens: number | null;
  stop: string[];
}

/** What an answer took, for the line under it. */
export interface ChatOutcome {
  /** The revision that answered (`x-aiplat-revision`), null when the header was not there. */
  revision: number | null;
  /** Milliseconds to the first content, and to the end. */
  ttftMs: number | null;
  latencyMs: number;
  /** From the stream's `usage` when it sent one; else the completion is the count of content chunks (`approximate`). */
  promptTokens: number | null;
  completionTokens: number;
  approximate: boolean;
  finishReason: string | null;
}

/** The OpenAI body the playground sends (and the snippets write out, with `model` and without `stream`). */
export function chatBody(messages: ChatMessage[], params: ChatParams): Record<string, unknown> {
  const body: Record<string, unknown> = { messages, temperature: params.temperature, top_p: params.topP };
  if (params.maxTokens !== null) body.max_tokens = params.maxTokens;
  if (params.stop.length) body.stop = params.stop;
  return body;
}

interface Chunk {
  choices?: { delta?: { content?: string | null; reasoning_content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

/** The `data:` payloads of a Server-Sent Events body, one per event, as they arrive (parsed by eventsource-parser). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const events: string[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event.data) });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      parser.feed(done ? decoder.decode() : decoder.decode(value, { stream: true }));
      while (events.length) yield events.shift()!;
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Send a streamed chat to a deployment (and a revision of it, or the traffic split), calling
 * `onDelta` with each piece of text as it comes. Aborting `signal` stops reading (the fetch is
 * cancelled); what came until then stays. Errors before the stream are the SDK's `ApiError` (the
 * OpenAI error's message); an error event in the stream throws with its message.
 */
export async function streamChat(
  api: ApiClient,
  target: { deployment: string; revision: number | null },
  messages: ChatMessage[],
  params: ChatParams,
  onDelta: (text: string) => void,
  signal: AbortSignal,
): Promise<ChatOutcome> {
  const started = performance.now();
  const res = await api.fetch('/playground/chat/completions', {
    method: 'POST',
    query: { deployment: target.deployment, revision: target.revision ?? undefined },
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    // The usage chunk at the end gives the exact token counts (the gateway asks the runtime for it anyway).
    body: JSON.stringify({ ...chatBody(messages, params), stream: true, stream_options: { include_usage: true } }),
    signal,
  });
  const header = res.headers.get('x-aiplat-revision');
  const outcome: ChatOutcome = {
    revision: header && /^\d+$/.test(header) ? Number(header) : null,
    ttftMs: null,
    latencyMs: 0,
    promptTokens: null,
    completionTokens: 0,
    approximate: true,
    finishReason: null,
  };
  const type = res.headers.get('content-type') ?? '';
  if (!type.includes('text/event-stream') || !res.body) {
    // A whole answer (a runtime that does not stream): one delta.
    const whole = (await res.json()) as { choices?: { message?: { content?: string | null }; finish_reason?: string | null }[]; usage?: Chunk['usage'] };
    const text = whole.choices?.[0]?.message?.content ?? '';
    outcome.ttftMs = outcome.latencyMs = Math.round(performance.now() - started);
    if (text) onDelta(text);
    outcome.finishReason = whole.choices?.[0]?.finish_reason ?? null;
    if (whole.usage) {
      outcome.promptTokens = whole.usage.prompt_tokens ?? null;
      outcome.completionTokens = whole.usage.completion_tokens ?? 0;
      outcome.approximate = false;
    }
    return outcome;
  }
  try {
    for await (const data of sseData(res.body)) {
      if (data.trim() === '[DONE]') break;
      let chunk: Chunk;
      try {
        chunk = JSON.parse(data) as Chunk;
      } catch {
        continue;
      }
      if (chunk.error) throw new Error(chunk.error.message ?? 'stream error');
      const choice = chunk.choices?.[0];
      const text = choice?.delta?.content ?? '';
      if (text) {
        outcome.ttftMs ??= Math.round(performance.now() - started);
        if (outcome.approximate) outcome.completionTokens += 1;
        onDelta(text);
      }
      if (choice?.finish_reason) outcome.finishReason = choice.finish_reason;
      if (chunk.usage && typeof chunk.usage.completion_tokens === 'number') {
        outcome.promptTokens = chunk.usage.prompt_tokens ?? null;
        outcome.completionTokens = chunk.usage.completion_tokens;
        outcome.approximate = false;
      }
    }
  } catch (error) {
    if ((error as Error).name !== 'AbortError') throw error;
  } finally {
    outcome.latencyMs = Math.round(performance.now() - started);
  }
  return outcome;
}

export type SnippetId = 'curl' | 'python' | 'javascript';
export const SNIPPET_IDS: SnippetId[] = ['curl', 'python', 'javascript'];

const indent = (text: string, by: string) => text.replace(/\n/g, `\n${by}`);

/** A JSON value as a Python literal (None, True, False; strings as JSON strings, which Python reads). */
function python(value: unknown, pad = ''): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = `${pad}    `;
    return `[\n${value.map((v) => `${inner}${python(v, inner)},`).join('\n')}\n${pad}]`;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${python(v, pad)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

/** A JSON value as a JavaScript literal (keys unquoted where they can be). */
function javascript(value: unknown, pad = ''): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = `${pad}  `;
    return `[\n${value.map((v) => `${inner}${javascript(v, inner)},`).join('\n')}\n${pad}]`;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return `{ ${entries.map(([k, v]) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${javascript(v, pad)}`).join(', ')} }`;
  }
  return JSON.stringify(value);
}

/** The request as code against the OpenAI-compatible `/v1` (`baseUrl`), the key from `AIPLAT_API_KEY`. */
export function chatSnippet(id: SnippetId, baseUrl: string, model: string, messages: ChatMessage[], params: ChatParams): string {
  // The request that got the last answer: the conversation up to its last question.
  const upTo = messages.map((m) => m.role).lastIndexOf('user');
  const body = { model, ...chatBody(upTo >= 0 ? messages.slice(0, upTo + 1) : messages, params) };
  if (id === 'curl') {
    const json = JSON.stringify(body, null, 2).replace(/'/g, `'\\''`);
    return [`curl ${baseUrl.replace(/\/+$/, '')}/chat/completions \\`, `  -H "Authorization: Bearer $AIPLAT_API_KEY" \\`, `  -H "Content-Type: application/json" \\`, `  -d '${indent(json, '  ')}'`].join('\n');
  }
  const args = Object.entries(body);
  if (id === 'python') {
    return [
      'import os',
      'from openai import OpenAI',
      '',
      `client = OpenAI(base_url=${JSON.stringify(baseUrl)}, api_key=os.environ["AIPLAT_API_KEY"])`,
      '',
      'completion = client.chat.completions.create(',
      ...args.map(([k, v]) => `    ${k}=${python(v, '    ')},`),
      ')',
      'print(completion.choices[0].message.content)',
    ].join('\n');
  }
  return [
    "import OpenAI from 'openai';",
    '',
    `const client = new OpenAI({ baseURL: ${JSON.stringify(baseUrl)}, apiKey: process.env.AIPLAT_API_KEY });`,
    '',
    'const completion = await client.chat.completions.create({',
    ...args.map(([k, v]) => `  ${k}: ${javascript(v, '  ')},`),
    '});',
    'console.log(completion.choices[0].message.content);',
  ].join('\n');
}
