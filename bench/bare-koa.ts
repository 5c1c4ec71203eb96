/**
 * The baseline for `npm run bench:http`: a bare Koa app, no middleware, answering the greeting
 * route with the same JSON the full stack returns. Started by bench/http.ts as a child process
 * with the same Node flags as the core, on PORT.
 */
import http from 'node:http';
import Koa from 'koa';

const app = new Koa();
app.use((ctx) => {
  if (ctx.method === 'GET' && ctx.path === '/api/plugins/hello/greeting') ctx.body = { greeting: 'HELLO, ADA' };
});

const server = http.createServer(app.callback());
server.keepAliveTimeout = 65_000; // as the core
server.listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
