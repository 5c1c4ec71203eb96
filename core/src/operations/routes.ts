import { AiplatError, type Operation, type Principal, type RouteDefinition } from '@aiplat/plugin-sdk';
import { MANAGE_OPERATIONS, type OperationsService } from './operations.js';

const states = ['running', 'succeeded', 'failed', 'cancelled'];

export const operationSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string' },
    owner: { type: 'string', description: 'the plugin that started it, or core' },
    userId: { type: ['string', 'null'], description: 'the user it runs for' },
    title: { type: 'string' },
    state: { enum: states },
    progress: { type: 'number', minimum: 0, maximum: 1, description: 'never decreases' },
    message: { type: ['string', 'null'] },
    result: {},
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      description: 'code "interrupted" when the core running it stopped',
    },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: ['string', 'null'], format: 'date-time' },
  },
};

const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 100 } } };

/**
 * `/api/v1/operations`: a user sees and cancels the operations started for them; holders of
 * `operations:manage` (admins) see and cancel every operation. Others' operations answer 404.
 */
export function operationRoutes(operations: OperationsService, can: (principal: Principal, permission: string) => boolean): RouteDefinition[] {
  const seesAll = (user: Principal) => can(user, MANAGE_OPERATIONS);
  const visibleTo = (user: Principal) => (op: Operation) => op.userId === user.id || seesAll(user);
  return [
    {
      method: 'GET',
      path: '/operations',
      summary: 'My operations, newest first (every user\'s with ?all=true, for admins)',
      tags: ['operations'],
      permission: 'operations:read',
      query: {
        type: 'object',
        properties: {
          all: { type: 'boolean', default: false, description: 'every user\'s operations; needs operations:manage' },
          state: { enum: states },
          kind: { type: 'string', minLength: 1, maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
          cursor: { type: 'string', minLength: 1, maxLength: 100 },
        },
      },
      responses: {
        200: {
          description: 'A page of operations',
          schema: { type: 'object', properties: { items: { type: 'array', items: operationSchema }, nextCursor: { type: ['string', 'null'] } } },
        },
      },
      handler: (ctx) => {
        const user = ctx.user!;
        if (ctx.query.all && !seesAll(user)) {
          throw new AiplatError('forbidden', `Listing every user's operations needs the permission "${MANAGE_OPERATIONS}"`, { permission: MANAGE_OPERATIONS });
        }
        return operations.list(ctx.db, {
          userId: ctx.query.all ? undefined : user.id,
          state: ctx.query.state,
          kind: ctx.query.kind,
          limit: ctx.query.limit,
          cursor: ctx.query.cursor,
        });
      },
    },
    {
      method: 'GET',
      path: '/operations/:id',
      summary: 'One operation (its user\'s or, for admins, anyone\'s)',
      tags: ['operations'],
      permission: 'operations:read',
      params: idParams,
      responses: { 200: { description: 'The operation', schema: operationSchema } },
      handler: async (ctx) => {
        const op = await operations.read(ctx.db, ctx.params.id);
        if (!op || !visibleTo(ctx.user!)(op)) throw new AiplatError('not_found', `No operation ${ctx.params.id}`);
        return op;
      },
    },
    {
      method: 'POST',
      path: '/operations/:id/cancel',
      summary: 'Cancel a running operation (409 when it already finished)',
      tags: ['operations'],
      permission: 'operations:cancel',
      params: idParams,
      body: { mode: 'none' },
      responses: { 200: { description: 'The cancelled operation', schema: operationSchema } },
      handler: async (ctx) => {
        const op = await operations.cancelIn(ctx.db, ctx.params.id, visibleTo(ctx.user!));
        // The function is aborted and the change published only once the cancel (and its audit row) is committed.
        ctx.afterCommit(() => operations.cancelled(op));
        return op;
      },
    },
  ];
}
