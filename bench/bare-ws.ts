/**
 * The baseline of `npm run bench:stream`: a plain `ws` server that broadcasts to every connected
 * client, with nothing in between: no tickets, no topics, no sequence store, no audience filter, no
 * per-connection queue. `POST /publish { count, rate, pad, topic }` sends `count` messages shaped
 * like the core's event messages (`{ topic, seq, at, payload: { i, t, pad? } }`), paced the same
 * way as the core's fixture route, each encoded once and sent to every client with `ws.send`.
 * With `cork: true` each client's socket is corked while a tick's messages are sent (what the
 * core's stream does), so they leave in one write per client instead of one per message.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';

const port = Number(process.env.PORT ?? 0);
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const TEXT = { binary: false } as const;
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let seq = 0;

const socketOf = (ws: unknown) => (ws as { _socket: Socket })._socket;

async function publish(body: { count: number; rate?: number; pad?: number; topic?: string; cork?: boolean }): Promise<{ published: number; last: number }> {
  const topic = body.topic ?? 'bare';
  const rate = body.rate ?? 0;
  const padding = body.pad ? 'x'.repeat(body.pad) : undefined;
  const began = now();
  let published = 0;
  while (published < body.count) {
    const due = rate > 0 ? Math.min(body.count, Math.ceil(((now() - began) / 1000) * rate)) : Math.min(body.count, published + 500);
    if (body.cork) for (const client of wss.clients) socketOf(client).cork();
    for (; published < due; published++) {
      const payload = padding ? { i: published, t: now(), pad: padding } : { i: published, t: now() };
      const frame = Buffer.from(JSON.stringify({ topic, seq: ++seq, at: new Date().toISOString(), payload }));
      for (const client of wss.clients) client.send(frame, TEXT);
    }
    if (body.cork) for (const client of wss.clients) socketOf(client).uncork();
    await (rate > 0 && published < body.count ? sleep(5) : Promise.resolve());
  }
  return { published, last: seq };
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.end('{"status":"ok"}');
    return;
  }
  if (req.method === 'POST' && req.url === '/publish') {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      publish(JSON.parse(raw) as { count: number }).then(
        (result) => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(result));
        },
        (error: Error) => {
          res.statusCode = 500;
          res.end(error.message);
        },
      );
    });
    return;
  }
  res.statusCode = 404;
  res.end();
});
server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
});
