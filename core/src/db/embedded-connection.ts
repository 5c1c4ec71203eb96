import type { Knex } from 'knex';
import { AiplatError } from '@aiplat/plugin-sdk';

/** How long a query waits for the embedded database's single connection before it gives up. */
export const EMBEDDED_ACQUIRE_TIMEOUT_MS = 10_000;

/**
 * The embedded database has ONE connection. A route handler that queries through the global
 * handle instead of `ctx.db` while its own transaction holds that connection waits for itself;
 * after the acquire timeout it fails with this message instead of knex's generic one, naming the
 * likely cause. (Tracking the request in an AsyncLocalStorage would catch it at once, but on
 * Node 20 that costs every request about 15 µs: see docs/adr/0002.)
 */
export function explainEmbeddedAcquireTimeout(knex: Knex): void {
  const client = knex.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = () =>
    acquire().catch((error: Error) => {
      if (error.name !== 'KnexTimeoutError') throw error;
      throw new AiplatError(
        'unavailable',
        `The embedded database's only connection stayed busy for ${EMBEDDED_ACQUIRE_TIMEOUT_MS / 1000} s. ` +
          'Most often a route handler queried the global connection (ctx.plugin.db, the database service) inside its own request transaction: use ctx.db in route handlers.',
      );
    });
}
