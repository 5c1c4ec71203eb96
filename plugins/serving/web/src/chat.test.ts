// The playground's stream reader and its "Copy as code" snippets, without a browser: Server-Sent
// Events split anywhere across reads, the revision header, usage at the end, an abort that keeps
// what came, an error event; the snippets' request to /v1 with the key from AIPLAT_API_KEY.
import { describe, expect, it } from 'vitest';
import type { ApiClient, FetchInit } from '@aiplat/plugin-sdk/web';
import { chatSnippet, sseData, streamChat, type ChatParams } from './chat.ts';

/** A body that hands out `parts` one read at a time. */
function body(parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < parts.length) controller.enqueue(encoder.encode(parts[i++]));
      else controller.close();
    },
  });
}

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;

/** An API client whose `fetch` answers `response` and records what it was asked. */
function client(response: (init: FetchInit) => Response): { api: ApiClient; calls: { path: string; init: FetchInit }[] } {
  const calls: { path: string; init: FetchInit }[] = [];
  const api = {
    fetch: (path: string, init: FetchInit = {}) => {
      calls.push({ path, init });
      return Promise.resolve(response(init));
    },
  } as unknown as ApiClient;
  return { api, calls };
}

const params: ChatParams = { temperature: 0.2, topP: 0.9, maxTokens: 64, stop: ['###'] };

describe('sseData', () => {
  it('yields each event’s data, however the bytes are split, with CRLF and several data lines', async () => {
    const text = 'data: one\n\n: a comment\ndata: two\r\ndata: lines\r\n\r\ndata:[DONE]\n\n';
    for (const size of [1, 3, 7, text.length]) {
      const parts: string[] = [];
      for (let i = 0; i < text.length; i += size) parts.push(text.slice(i, i + size));
      const out: string[] = [];
      for await (const data of sseData(body(parts))) out.push(data);
      expect(out, `split every ${size}`).toEqual(['one', 'two\nlines', '[DONE]']);
    }
  });
});

describe('streamChat', () => {
  it('streams the deltas, reads the answering revision and the usage at the end', async () => {
    const { api, calls } = client(
      () =>
        new Response(body([chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }) + chunk({ content: 'lo' }), `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 2 } })}\n\n`, 'data: [DONE]\n\n']), {
          headers: { 'content-type': 'text/event-stream', 'x-aiplat-revision': '3' },
        }),
    );
    const deltas: string[] = [];
    const outcome = await streamChat(api, { deployment: 'd1', revision: 3 }, [{ role: 'user', content: 'hi' }], params, (d) => deltas.push(d), new AbortController().signal);
    expect(deltas).toEqual(['Hel', 'lo']);
    expect(outcome).toMatchObject({ revision: 3, promptTokens: 5, completionTokens: 2, approximate: false });
    expect(outcome.ttftMs).not.toBeNull();
    expect(calls[0]!.path).toBe('/playground/chat/completions');
    expect(calls[0]!.init.query).toEqual({ deployment: 'd1', revision: 3 });
    expect(JSON.parse(calls[0]!.init.body as string)).toEqual({
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 64,
      stop: ['###'],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('counts content chunks when no usage comes, and leaves the revision out of the query when none is picked', async () => {
    const { api, calls } = client(() => new Response(body([chunk({ content: 'a' }), chunk({ content: 'b' }), 'data: [DONE]\n\n']), { headers: { 'content-type': 'text/event-stream' } }));
    const outcome = await streamChat(api, { deployment: 'd1', revision: null }, [], { ...params, maxTokens: null, stop: [] }, () => undefined, new AbortController().signal);
    expect(outcome).toMatchObject({ revision: null, completionTokens: 2, approximate: true });
    expect(calls[0]!.init.query).toEqual({ deployment: 'd1', revision: undefined });
    const sent = JSON.parse(calls[0]!.init.body as string) as Record<string, unknown>;
    expect(sent).not.toHaveProperty('max_tokens');
    expect(sent).not.toHaveProperty('stop');
  });

  it('keeps what came before an abort, and throws an error event’s message', async () => {
    const controller = new AbortController();
    const encoder = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode(chunk({ content: 'partial' })));
        controller.signal.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
      },
    });
    const { api } = client(() => new Response(stream, { headers: { 'content-type': 'text/event-stream' } }));
    const deltas: string[] = [];
    const outcome = await streamChat(api, { deployment: 'd1', revision: null }, [], params, (d) => {
      deltas.push(d);
      controller.abort();
    }, controller.signal);
    expect(deltas).toEqual(['partial']);
    expect(outcome.completionTokens).toBe(1);

    const failing = client(() => new Response(body([chunk({ content: 'x' }), `data: ${JSON.stringify({ error: { message: 'upstream went away', type: 'server_error' } })}\n\n`]), { headers: { 'content-type': 'text/event-stream' } }));
    await expect(streamChat(failing.api, { deployment: 'd1', revision: null }, [], params, () => undefined, new AbortController().signal)).rejects.toThrow('upstream went away');
  });

  it('takes a whole (not streamed) answer as one delta', async () => {
    const { api } = client(() => Response.json({ choices: [{ message: { content: 'whole' }, finish_reason: 'length' }], usage: { prompt_tokens: 3, completion_tokens: 4 } }, { headers: { 'x-aiplat-revision': '1' } }));
    const deltas: string[] = [];
    const outcome = await streamChat(api, { deployment: 'd1', revision: null }, [], params, (d) => deltas.push(d), new AbortController().signal);
    expect(deltas).toEqual(['whole']);
    expect(outcome).toMatchObject({ revision: 1, completionTokens: 4, promptTokens: 3, finishReason: 'length', approximate: false });
  });
});

describe('chatSnippet', () => {
  const messages = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: "It's \"quoted\"" },
    { role: 'assistant' as const, content: 'Sure.' },
  ];
  it('writes the request up to the last question, the model and the key from the environment', () => {
    const curl = chatSnippet('curl', 'http://host:8080/v1/', 'my-model', messages, params);
    expect(curl).toContain('curl http://host:8080/v1/chat/completions');
    expect(curl).toContain('Authorization: Bearer $AIPLAT_API_KEY');
    // The JSON after -d, unquoted from the shell's single quotes, is the request.
    const json = curl.slice(curl.indexOf("-d '") + 4, -1).replace(/'\\''/g, "'");
    expect(JSON.parse(json)).toEqual({ model: 'my-model', messages: messages.slice(0, 2), temperature: 0.2, top_p: 0.9, max_tokens: 64, stop: ['###'] });

    const py = chatSnippet('python', 'http://host:8080/v1', 'my-model', messages, params);
    expect(py).toContain('api_key=os.environ["AIPLAT_API_KEY"]');
    expect(py).toContain('base_url="http://host:8080/v1"');
    expect(py).toContain('model="my-model",');
    expect(py).toContain('{"role": "user", "content": "It\'s \\"quoted\\""},');
    expect(py).not.toContain('Sure.');

    const js = chatSnippet('javascript', 'http://host:8080/v1', 'my-model', messages, params);
    expect(js).toContain('apiKey: process.env.AIPLAT_API_KEY');
    expect(js).toContain("import OpenAI from 'openai';");
    expect(js).toContain('model: "my-model",');
    expect(js).toContain('stop: [\n    "###",\n  ],');
  });
});
