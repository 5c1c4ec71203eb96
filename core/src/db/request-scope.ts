import { AsyncLocalStorage } from 'node:async_hooks';
import type { Knex } from 'knex';
import { AiplatError } from '@aiplat/plugin-sdk';

interface Scope {
  /** Set while a request's transaction is open in this async context. */
  transactionOpen: boolean;
}

const scope = new AsyncLocalStorage<Scope>();

/** Run `fn` as the body of a request transaction: the global connection may not be used inside it. */
export function withinRequestTransaction<T>(fn: () => Promise<T>): Promise<T> {
  return scope.run({ transactionOpen: true }, fn);
}

/** Whether a request's transaction is open in this async context (the global connection may not be used). */
export function inRequestTransaction(): boolean {
  return scope.getStore()?.transactionOpen === true;
}

/** Run `fn` outside any request scope (background work started from a request). */
export function outsideRequest<T>(fn: () => T): T {
  return scope.exit(fn);
}

/**
 * Make a query through the global handle inside a request transaction fail loudly instead of
 * waiting for a connection the request itself holds (with the embedded database's single
 * connection it would wait forever). Handlers must use `ctx.db`.
 */
export function guardGlobalConnection(knex: Knex): void {
  const client = knex.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = () => {
    if (scope.getStore()?.transactionOpen) {
      return Promise.reject(
        new AiplatError(
          'internal',
          'A query used the global database connection inside a request transaction; use ctx.db in route handlers',
        ),
      );
    }
    return acquire();
  };
}
