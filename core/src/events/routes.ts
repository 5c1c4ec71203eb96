import type { RouteDefinition } from '@aiplat/plugin-sdk';
import { TICKET_TTL_SECONDS, type StreamTickets } from './tickets.js';

/** `POST /api/v1/stream/ticket`: what a client trades its access token for, to open the WebSocket stream. */
export function streamRoutes(tickets: StreamTickets): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/stream/ticket',
      summary: 'A single-use ticket (30 s) for opening the event stream: connect to /api/v1/stream?ticket=…',
      tags: ['stream'],
      permission: 'self:read',
      // Every shell page load asks for one: an audit row each would drown the log; a refused
      // request is still audited, and the stream connection itself is logged.
      audit: 'metered',
      body: { mode: 'none' },
      responses: {
        200: {
          description: 'The ticket',
          schema: {
            type: 'object',
            properties: {
              ticket: { type: 'string', description: 'use once, within expiresIn seconds, as ?ticket= on /api/v1/stream' },
              expiresIn: { const: TICKET_TTL_SECONDS },
            },
          },
        },
      },
      handler: (ctx) => tickets.issue(ctx.db, ctx.user!),
    },
  ];
}
