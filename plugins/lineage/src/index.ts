/**
 * The lineage plugin: edges between `{ kind, id }` nodes (dataset version → run → model version →
 * optimised variant → deployment revision), recorded by other plugins through `lineageService`
 * (api/index.ts) or through the API, and lineage up and down from any node.
 */
import { AiplatError, definePlugin, json, type Knex, type RouteContext } from '@aiplat/plugin-sdk';
import { DEFAULT_DEPTH, lineageService, MAX_DEPTH, MAX_NODES, type LineageEdgeInput, type LineageNode, type LineageService } from '../api/index.js';
import { describeKind, EDGES, forgetNode, graph, KIND_PATTERN, NODES, nodeInfo, recordEdges, RELATION_PATTERN, removeEdge, type Direction, type Visibility } from './store.js';

/** `kind` and `id`: what names a node everywhere (bodies, queries). */
const nodeRef = {
  kind: { type: 'string', pattern: KIND_PATTERN },
  id: { type: 'string', minLength: 1, maxLength: 200 },
} as const;
const nodeRefSchema = { type: 'object', required: ['kind', 'id'], additionalProperties: false, properties: nodeRef } as const;

const nodeSchema = {
  type: 'object',
  required: ['kind', 'id'],
  additionalProperties: false,
  properties: {
    ...nodeRef,
    label: { type: 'string', maxLength: 200 },
    team: { type: ['string', 'null'], minLength: 1 },
  },
} as const;

const edgeBodySchema = {
  type: 'object',
  required: ['from', 'to', 'relation'],
  additionalProperties: false,
  properties: {
    from: nodeSchema,
    to: nodeSchema,
    relation: { type: 'string', pattern: RELATION_PATTERN },
    details: { type: 'object' },
  },
} as const;

const deleteBodySchema = {
  type: 'object',
  required: ['from', 'to', 'relation'],
  additionalProperties: false,
  properties: {
    from: nodeRefSchema,
    to: nodeRefSchema,
    relation: { type: 'string', pattern: RELATION_PATTERN },
  },
} as const;

const graphQuerySchema = {
  type: 'object',
  required: ['kind', 'id'],
  additionalProperties: false,
  properties: {
    ...nodeRef,
    direction: { enum: ['up', 'down', 'both'], default: 'both' },
    depth: { type: 'integer', minimum: 1, maximum: MAX_DEPTH, default: DEFAULT_DEPTH },
    limit: { type: 'integer', minimum: 1, maximum: MAX_NODES, default: MAX_NODES },
  },
} as const;

const nodeOut = {
  type: 'object',
  properties: {
    kind: { type: 'string' },
    id: { type: 'string' },
    label: { type: 'string' },
    team: { type: ['string', 'null'] },
    route: { type: ['string', 'null'] },
    depth: { type: 'integer' },
  },
} as const;
const graphOut = {
  type: 'object',
  properties: {
    root: nodeOut,
    nodes: { type: 'array', items: nodeOut },
    edges: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          from: nodeOut,
          to: nodeOut,
          relation: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          createdBy: { type: 'string' },
          details: { type: 'object' },
        },
      },
    },
    truncated: { type: 'boolean' },
  },
} as const;

/** Nodes without a team are visible to every `lineage:read` holder; a team's nodes to its members who hold it there. */
function visibility(ctx: RouteContext<any, any, any>): Visibility {
  return (team) => team === null || ctx.can('lineage:read', team);
}

/** Linking a team's node needs `lineage:write` in that team (lineage's own record of the team, or the one the body gives). */
async function checkWrite(ctx: RouteContext<any, any, any>, nodes: LineageNode[]): Promise<void> {
  for (const node of nodes) {
    const known = (await ctx.db(NODES).where({ kind: node.kind, id: node.id }).first('team_id')) as { team_id: string | null } | undefined;
    for (const team of new Set([known?.team_id ?? null, node.team ?? null])) {
      if (team !== null && !ctx.can('lineage:write', team)) {
        throw new AiplatError('forbidden', `You do not hold "lineage:write" in team "${team}", which owns ${node.kind} "${node.id}"`, { permission: 'lineage:write', team });
      }
    }
  }
}

function makeService(db: Knex): LineageService {
  return {
    record: (edge, options = {}) => recordEdges(options.db ?? db, [edge], options.createdBy ?? 'unknown'),
    recordMany: (edges, options = {}) => recordEdges(options.db ?? db, edges, options.createdBy ?? 'unknown'),
    upstream: (node, options = {}) => graph(options.db ?? db, node, 'up', options),
    downstream: (node, options = {}) => graph(options.db ?? db, node, 'down', options),
    remove: (edge, options = {}) => removeEdge(options.db ?? db, edge),
    forget: (node, options = {}) => forgetNode(options.db ?? db, node),
    describeKind,
  };
}

export default definePlugin({
  register(env) {
    env.migrations([
      {
        name: '0001_edges_and_nodes',
        async up(db: Knex) {
          await db.schema.createTable(EDGES, (t) => {
            t.text('from_kind').notNullable();
            t.text('from_id').notNullable();
            t.text('to_kind').notNullable();
            t.text('to_id').notNullable();
            t.text('relation').notNullable();
            t.jsonb('details');
            t.text('created_by').notNullable();
            t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
            t.unique(['from_kind', 'from_id', 'to_kind', 'to_id', 'relation'], { indexName: 'p_lineage_edges_unique' });
            // Downstream walks follow from → to (the unique index leads with from); upstream walks to → from.
            t.index(['to_kind', 'to_id'], 'p_lineage_edges_to');
          });
          await db.schema.createTable(NODES, (t) => {
            t.text('kind').notNullable();
            t.text('id').notNullable();
            t.text('label');
            t.text('team_id').index('p_lineage_nodes_team');
            t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
            t.primary(['kind', 'id']);
          });
        },
      },
    ]);

    env.provideService(lineageService, (ctx) => makeService(ctx.db));

    env.route({
      method: 'GET',
      path: '/graph',
      summary: 'The lineage of a node: where it comes from (up), what was made from it (down), or both',
      permission: 'lineage:read',
      query: graphQuerySchema,
      responses: { 200: { description: 'The lineage graph around the node', schema: graphOut } },
      handler: (ctx) => {
        const q = ctx.query as { kind: string; id: string; direction: Direction; depth: number; limit: number };
        return graph(ctx.db, { kind: q.kind, id: q.id }, q.direction, { depth: q.depth, limit: q.limit, visible: visibility(ctx) });
      },
    });

    env.route({
      method: 'GET',
      path: '/nodes/:kind/:id',
      summary: 'What lineage knows of a node: its label, team and how many links go in and out',
      permission: 'lineage:read',
      params: {
        type: 'object',
        required: ['kind', 'id'],
        properties: { kind: { type: 'string', pattern: KIND_PATTERN }, id: { type: 'string', minLength: 1, maxLength: 200 } },
      },
      responses: {
        200: {
          description: 'The node',
          schema: { type: 'object', properties: { node: nodeOut, upstream: { type: 'integer' }, downstream: { type: 'integer' }, known: { type: 'boolean' } } },
        },
      },
      handler: async (ctx) => {
        const info = await nodeInfo(ctx.db, { kind: ctx.params.kind, id: ctx.params.id });
        if (!info.known || !visibility(ctx)(info.node.team ?? null)) {
          throw new AiplatError('not_found', `No ${ctx.params.kind} "${ctx.params.id}" in lineage, or it belongs to a team you are not in`, { kind: ctx.params.kind, id: ctx.params.id });
        }
        return info;
      },
    });

    env.route({
      method: 'POST',
      path: '/edges',
      summary: 'Record a lineage link (for integrations and manual links); the same link twice is one link',
      permission: 'lineage:write',
      body: json(edgeBodySchema),
      auditResource: ({ body }) => (body ? { type: 'lineage-edge', id: `${body.from.kind}:${body.from.id}->${body.to.kind}:${body.to.id}` } : undefined),
      responses: { 204: { description: 'Recorded (or already there)' }, 409: { description: 'The link would close a cycle' } },
      handler: async (ctx) => {
        const edge = ctx.body as LineageEdgeInput;
        await checkWrite(ctx, [edge.from, edge.to]);
        await recordEdges(ctx.db, [edge], `user:${ctx.user!.id}`);
      },
    });

    env.route({
      method: 'DELETE',
      path: '/edges',
      summary: 'Remove a lineage link',
      permission: 'lineage:write',
      body: json(deleteBodySchema),
      auditResource: ({ body }) => (body ? { type: 'lineage-edge', id: `${body.from.kind}:${body.from.id}->${body.to.kind}:${body.to.id}` } : undefined),
      responses: { 204: { description: 'Removed' }, 404: { description: 'No such link' } },
      handler: async (ctx) => {
        const edge = ctx.body as { from: LineageNode; to: LineageNode; relation: string };
        await checkWrite(ctx, [edge.from, edge.to]);
        if (!(await removeEdge(ctx.db, edge))) {
          throw new AiplatError('not_found', `No "${edge.relation}" link from ${edge.from.kind} "${edge.from.id}" to ${edge.to.kind} "${edge.to.id}"`);
        }
      },
    });
  },
});
