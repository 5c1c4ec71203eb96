import { AiplatError, reply, type JsonSchema, type RouteDefinition } from '@aiplat/plugin-sdk';
import { ACTOR_TYPES, OUTCOMES } from './chain.js';
import { readHeadFile } from './head.js';
import { exportAudit, listAudit, type AuditFilters, type ExportFormat } from './query.js';
import { verifyChain } from './verify.js';

const text = (maxLength: number, description: string) => ({ type: 'string', minLength: 1, maxLength, description });

const filterProperties: Record<string, JsonSchema> = {
  actor: text(200, 'actor id or name (exact)'),
  actorType: { enum: [...ACTOR_TYPES] },
  action: text(300, 'exact action, or a prefix ending in * (core:auth.*)'),
  resource: text(300, '<type> or <type>:<id>, e.g. plugin:hello'),
  outcome: { enum: [...OUTCOMES] },
  plugin: text(100, 'rows of one plugin'),
  team: text(100, 'rows of one team'),
  requestId: text(128, 'rows of one request'),
  from: { type: 'string', format: 'date-time', description: 'rows at or after this time (ISO 8601 with a time zone)' },
  to: { type: 'string', format: 'date-time', description: 'rows before this time (ISO 8601 with a time zone)' },
};

const recordSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer', description: '1, 2, 3, … in the order rows were written' },
    at: { type: 'string', format: 'date-time' },
    actorType: { enum: [...ACTOR_TYPES] },
    actorId: { type: ['string', 'null'] },
    actorName: { type: ['string', 'null'] },
    action: { type: 'string' },
    resourceType: { type: ['string', 'null'] },
    resourceId: { type: ['string', 'null'] },
    teamId: { type: ['string', 'null'] },
    plugin: { type: ['string', 'null'] },
    requestId: { type: ['string', 'null'] },
    clientIp: { type: ['string', 'null'] },
    outcome: { enum: [...OUTCOMES] },
    status: { type: ['integer', 'null'] },
    details: { type: 'object', description: 'secrets shown as "••••"' },
    prevHash: { type: 'string', description: 'hash of the row before (64 zeros for row 1)' },
    hash: { type: 'string', description: 'SHA-256 of the canonical form of this row without hash (docs/audit.md)' },
  },
};

function filtersOf(query: Record<string, unknown>): AuditFilters {
  const filters: AuditFilters = {};
  for (const key of Object.keys(filterProperties)) {
    if (query[key] !== undefined) (filters as Record<string, unknown>)[key] = query[key];
  }
  if (filters.from !== undefined && filters.to !== undefined && Date.parse(filters.from) >= Date.parse(filters.to)) {
    throw new AiplatError('validation_failed', 'Invalid query: from must be earlier than to', { problems: [{ path: 'from', message: 'must be earlier than to' }] });
  }
  return filters;
}

/** `/api/v1/audit`: list, export and verify the audit log (permission `audit:read`). */
export function auditRoutes(options: { headFile?: string }): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/audit',
      summary: 'Audit rows, newest first, filtered',
      tags: ['audit'],
      permission: 'audit:read',
      query: {
        type: 'object',
        properties: {
          ...filterProperties,
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          cursor: { type: 'string', pattern: '^[1-9][0-9]{0,15}$', description: 'nextCursor of the page before' },
        },
      },
      responses: {
        200: { description: 'A page of rows', schema: { type: 'object', properties: { items: { type: 'array', items: recordSchema }, nextCursor: { type: ['string', 'null'] } } } },
      },
      handler: (ctx) => listAudit(ctx.db, filtersOf(ctx.query), { limit: ctx.query.limit, cursor: ctx.query.cursor }),
    },
    {
      method: 'GET',
      path: '/audit/export',
      summary: 'Export the matching audit rows, oldest first, as JSON Lines or CSV (streamed)',
      description: 'The export itself is recorded in the audit log (core:audit.export).',
      tags: ['audit'],
      permission: 'audit:read',
      query: {
        type: 'object',
        properties: { ...filterProperties, format: { enum: ['jsonl', 'csv'], default: 'jsonl' } },
      },
      responses: { 200: { description: 'application/x-ndjson or text/csv, one row per line' } },
      handler: async (ctx) => {
        const format = ctx.query.format as ExportFormat;
        const filters = filtersOf(ctx.query);
        await ctx.audit('core:audit.export', { format, filters }, { resource: { type: 'audit' } });
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        return reply(200, exportAudit(ctx.db, filters, format), {
          'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
          'content-disposition': `attachment; filename="aiplat-audit-${stamp}.${format}"`,
          'cache-control': 'no-store',
        });
      },
    },
    {
      method: 'GET',
      path: '/audit/verify',
      summary: 'Recompute the hash chain and report the first bad row',
      tags: ['audit'],
      permission: 'audit:read',
      responses: {
        200: {
          description: 'The verdict',
          schema: {
            type: 'object',
            properties: {
              ok: { type: 'boolean' },
              checked: { type: 'integer' },
              firstBadId: { type: ['integer', 'null'] },
              problem: { type: 'string' },
              lastId: { type: 'integer' },
              headFile: { type: 'object', properties: { id: { type: ['integer', 'null'] }, hash: { type: ['string', 'null'] }, matches: { type: 'boolean' }, problem: { type: 'string' } } },
            },
          },
        },
      },
      handler: (ctx) => verifyChain(ctx.db, options.headFile ? { head: readHeadFile(options.headFile) } : {}),
    },
  ];
}
