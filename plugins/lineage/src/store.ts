/**
 * Lineage storage: edges in `p_lineage_edges`, what is known of nodes (label, team) in
 * `p_lineage_nodes`, traversal with recursive CTEs (PostgreSQL 15 and the embedded PGlite).
 */
import { AiplatError, type Knex } from '@aiplat/plugin-sdk';
import {
  DEFAULT_DEPTH,
  MAX_DEPTH,
  MAX_NODES,
  type LineageEdge,
  type LineageEdgeInput,
  type LineageGraph,
  type LineageNode,
} from '../api/index.js';

export const EDGES = 'p_lineage_edges';
export const NODES = 'p_lineage_nodes';

export const KIND_PATTERN = '^[a-z][a-z0-9_.-]{0,99}$';
export const RELATION_PATTERN = '^[a-z][a-z0-9-]{0,62}$';
const KIND_RE = new RegExp(KIND_PATTERN);
const RELATION_RE = new RegExp(RELATION_PATTERN);
const MAX_ID = 200;
const MAX_LABEL = 200;
const MAX_DETAILS = 16 * 1024;

export type Direction = 'up' | 'down' | 'both';

/** Shell routes of node kinds, given by the plugins that own them (`describeKind`). */
const kindRoutes = new Map<string, string>();
export function describeKind(kind: string, info: { route?: string }): void {
  checkKind(kind);
  if (info.route) kindRoutes.set(kind, info.route);
  else kindRoutes.delete(kind);
}
function routeOf(node: { kind: string; id: string }): string | null {
  const template = kindRoutes.get(node.kind);
  return template ? template.replaceAll('{id}', encodeURIComponent(node.id)) : null;
}

function checkKind(kind: unknown): asserts kind is string {
  if (typeof kind !== 'string' || !KIND_RE.test(kind)) {
    throw new AiplatError('validation_failed', `A node kind is "<plugin>.<thing>" in lower-case letters, digits, ".", "_" and "-" (at most 100 characters), not ${JSON.stringify(kind)}`, { field: 'kind' });
  }
}

export function checkNode(node: unknown, field: string): asserts node is LineageNode {
  if (typeof node !== 'object' || node === null) throw new AiplatError('validation_failed', `${field} must be a node { kind, id }`, { field });
  const n = node as Partial<LineageNode>;
  checkKind(n.kind);
  if (typeof n.id !== 'string' || n.id.length === 0 || n.id.length > MAX_ID) {
    throw new AiplatError('validation_failed', `${field}.id must be a string of 1 to ${MAX_ID} characters`, { field: `${field}.id` });
  }
  if (n.label !== undefined && n.label !== null && (typeof n.label !== 'string' || n.label.length > MAX_LABEL)) {
    throw new AiplatError('validation_failed', `${field}.label must be a string of at most ${MAX_LABEL} characters`, { field: `${field}.label` });
  }
  if (n.team !== undefined && n.team !== null && (typeof n.team !== 'string' || n.team.length === 0)) {
    throw new AiplatError('validation_failed', `${field}.team must be a team id or null`, { field: `${field}.team` });
  }
}

export function checkEdge(edge: LineageEdgeInput): void {
  if (typeof edge !== 'object' || edge === null) throw new AiplatError('validation_failed', 'An edge is { from, to, relation }');
  checkNode(edge.from, 'from');
  checkNode(edge.to, 'to');
  if (typeof edge.relation !== 'string' || !RELATION_RE.test(edge.relation)) {
    throw new AiplatError('validation_failed', `relation must match ${RELATION_PATTERN} (e.g. "trained-from"), not ${JSON.stringify(edge.relation)}`, { field: 'relation' });
  }
  if (edge.from.kind === edge.to.kind && edge.from.id === edge.to.id) {
    throw new AiplatError('conflict', `An edge cannot link ${edge.from.kind} "${edge.from.id}" to itself: lineage is a DAG`, { from: key(edge.from), to: key(edge.to) });
  }
  if (edge.details !== undefined) {
    if (typeof edge.details !== 'object' || edge.details === null || Array.isArray(edge.details)) {
      throw new AiplatError('validation_failed', 'details must be an object', { field: 'details' });
    }
    if (JSON.stringify(edge.details).length > MAX_DETAILS) throw new AiplatError('validation_failed', `details must be at most ${MAX_DETAILS} bytes as JSON`, { field: 'details' });
  }
}

const key = (n: { kind: string; id: string }) => ({ kind: n.kind, id: n.id });

/** Remember a node's label and team (when given); a node without either needs no row. */
async function upsertNode(db: Knex, node: LineageNode): Promise<void> {
  const hasLabel = typeof node.label === 'string';
  const hasTeam = node.team !== undefined;
  if (!hasLabel && !hasTeam) return;
  const row: Record<string, unknown> = { kind: node.kind, id: node.id, updated_at: db.fn.now() };
  if (hasLabel) row.label = node.label;
  if (hasTeam) row.team_id = node.team ?? null;
  await db(NODES)
    .insert(row)
    .onConflict(['kind', 'id'])
    .merge(Object.keys(row).filter((k) => k !== 'kind' && k !== 'id'));
}

/** Whether `to` already reaches `from` (so from → to would close a cycle). */
async function reaches(db: Knex, start: LineageNode, target: LineageNode): Promise<boolean> {
  const { rows } = (await db.raw(
    `WITH RECURSIVE walk(kind, id) AS (
       SELECT ?::text, ?::text
       UNION
       SELECT e.to_kind, e.to_id FROM ${EDGES} e JOIN walk w ON e.from_kind = w.kind AND e.from_id = w.id
     )
     SELECT 1 AS hit FROM walk WHERE kind = ? AND id = ? LIMIT 1`,
    [start.kind, start.id, target.kind, target.id],
  )) as { rows: unknown[] };
  return rows.length > 0;
}

/** Record edges in `db` (a transaction is opened when `db` is not one already). */
export async function recordEdges(db: Knex, edges: LineageEdgeInput[], createdBy: string): Promise<void> {
  for (const edge of edges) checkEdge(edge);
  const run = async (trx: Knex) => {
    // One writer at a time decides about cycles: two concurrent records must not close one together.
    await trx.raw('SELECT pg_advisory_xact_lock(hashtext(?))', [EDGES]);
    for (const edge of edges) {
      await upsertNode(trx, edge.from);
      await upsertNode(trx, edge.to);
      const exists = await trx(EDGES)
        .where({ from_kind: edge.from.kind, from_id: edge.from.id, to_kind: edge.to.kind, to_id: edge.to.id, relation: edge.relation })
        .first('relation');
      if (exists) continue;
      if (await reaches(trx, edge.to, edge.from)) {
        throw new AiplatError(
          'conflict',
          `Recording ${edge.from.kind} "${edge.from.id}" → ${edge.to.kind} "${edge.to.id}" would close a cycle: ${edge.to.kind} "${edge.to.id}" already leads to ${edge.from.kind} "${edge.from.id}", and lineage is a DAG`,
          { from: key(edge.from), to: key(edge.to), relation: edge.relation },
        );
      }
      await trx(EDGES)
        .insert({
          from_kind: edge.from.kind,
          from_id: edge.from.id,
          to_kind: edge.to.kind,
          to_id: edge.to.id,
          relation: edge.relation,
          details: edge.details === undefined ? null : JSON.stringify(edge.details),
          created_by: createdBy,
        })
        .onConflict(['from_kind', 'from_id', 'to_kind', 'to_id', 'relation'])
        .ignore();
    }
  };
  if (db.isTransaction) await run(db);
  else await db.transaction(run);
}

export async function removeEdge(db: Knex, edge: { from: LineageNode; to: LineageNode; relation: string }): Promise<boolean> {
  checkNode(edge.from, 'from');
  checkNode(edge.to, 'to');
  const n = await db(EDGES).where({ from_kind: edge.from.kind, from_id: edge.from.id, to_kind: edge.to.kind, to_id: edge.to.id, relation: edge.relation }).delete();
  return n > 0;
}

export async function forgetNode(db: Knex, node: LineageNode): Promise<number> {
  checkNode(node, 'node');
  const n = await db(EDGES)
    .where((q) => q.where({ from_kind: node.kind, from_id: node.id }).orWhere({ to_kind: node.kind, to_id: node.id }))
    .delete();
  await db(NODES).where({ kind: node.kind, id: node.id }).delete();
  return n;
}

interface EdgeRow {
  from_kind: string;
  from_id: string;
  to_kind: string;
  to_id: string;
  relation: string;
  details: Record<string, unknown> | string | null;
  created_by: string;
  created_at: Date | string;
}
interface NodeRow {
  kind: string;
  id: string;
  label: string | null;
  team_id: string | null;
}

/** Who may see a node: `visible(team)`; undefined means everyone. */
export type Visibility = (team: string | null) => boolean;

export interface WalkOptions {
  depth?: number;
  limit?: number;
  visible?: Visibility;
}

function clampDepth(depth: number | undefined): number {
  const d = depth ?? DEFAULT_DEPTH;
  if (!Number.isInteger(d) || d < 1 || d > MAX_DEPTH) throw new AiplatError('validation_failed', `depth must be an integer from 1 to ${MAX_DEPTH}`, { field: 'depth' });
  return d;
}

/**
 * The nodes within `depth` edges of `root` in one direction, each at its shortest distance, and
 * whether any lie one step further (then the graph is truncated).
 */
async function walk(db: Knex, root: LineageNode, direction: 'up' | 'down', depth: number): Promise<Map<string, { kind: string; id: string; depth: number }>> {
  const [near, far] = direction === 'down' ? ['from', 'to'] : ['to', 'from'];
  const { rows } = (await db.raw(
    `WITH RECURSIVE walk(kind, id, depth) AS (
       SELECT ?::text, ?::text, 0
       UNION
       SELECT e.${far}_kind, e.${far}_id, w.depth + 1
         FROM ${EDGES} e JOIN walk w ON e.${near}_kind = w.kind AND e.${near}_id = w.id
        WHERE w.depth < ?
     )
     SELECT kind, id, min(depth) AS depth FROM walk GROUP BY kind, id ORDER BY min(depth), kind, id`,
    [root.kind, root.id, depth + 1],
  )) as { rows: { kind: string; id: string; depth: number | string }[] };
  const out = new Map<string, { kind: string; id: string; depth: number }>();
  for (const r of rows) out.set(nodeKey(r), { kind: r.kind, id: r.id, depth: Number(r.depth) });
  return out;
}

const nodeKey = (n: { kind: string; id: string }) => `${n.kind}\u0000${n.id}`;

function toIso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

/** The lineage graph around `root`, `up`, `down` or `both`. */
export async function graph(db: Knex, root: LineageNode, direction: Direction, options: WalkOptions = {}): Promise<LineageGraph> {
  checkNode(root, 'node');
  const depth = clampDepth(options.depth);
  const limit = options.limit ?? MAX_NODES;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_NODES) throw new AiplatError('validation_failed', `limit must be an integer from 1 to ${MAX_NODES}`, { field: 'limit' });

  // Shortest signed distance of every node reached (negative upstream), one step past the limit.
  const reached = new Map<string, { kind: string; id: string; depth: number }>();
  reached.set(nodeKey(root), { kind: root.kind, id: root.id, depth: 0 });
  for (const dir of direction === 'both' ? (['up', 'down'] as const) : [direction]) {
    for (const [k, n] of await walk(db, root, dir, depth)) {
      if (n.depth === 0) continue;
      const signed = dir === 'up' ? -n.depth : n.depth;
      const known = reached.get(k);
      if (!known || Math.abs(signed) < Math.abs(known.depth)) reached.set(k, { ...n, depth: signed });
    }
  }
  let truncated = [...reached.values()].some((n) => Math.abs(n.depth) > depth);
  let candidates = [...reached.values()].filter((n) => Math.abs(n.depth) <= depth);

  // What lineage knows of the nodes (labels, teams), and the edges among them.
  const info = new Map<string, NodeRow>();
  const edgeRows: EdgeRow[] = [];
  const chunk = 200;
  const kinds = [...new Set(candidates.map((n) => n.kind))];
  const ids = [...new Set(candidates.map((n) => n.id))];
  if (candidates.length > 0) {
    for (let i = 0; i < ids.length; i += chunk) {
      const part = ids.slice(i, i + chunk);
      for (const row of (await db(NODES).whereIn('kind', kinds).whereIn('id', part).select('kind', 'id', 'label', 'team_id')) as NodeRow[]) {
        info.set(nodeKey(row), row);
      }
      edgeRows.push(
        ...((await db(EDGES).whereIn('from_kind', kinds).whereIn('from_id', part).whereIn('to_kind', kinds).select('*')) as EdgeRow[]),
      );
    }
  }
  const rootInfo = info.get(nodeKey(root));
  const visible = options.visible ?? (() => true);
  if (!visible(rootInfo?.team_id ?? null)) {
    throw new AiplatError('not_found', `No ${root.kind} "${root.id}" in lineage, or it belongs to a team you are not in`, { kind: root.kind, id: root.id });
  }

  // Keep visible nodes reachable from the root through visible nodes only (a hidden node hides
  // what lies behind it), nearest first, up to the cap.
  const candidateKeys = new Set(candidates.map(nodeKey));
  const usable = edgeRows.filter((e) => candidateKeys.has(nodeKey({ kind: e.from_kind, id: e.from_id })) && candidateKeys.has(nodeKey({ kind: e.to_kind, id: e.to_id })));
  const isVisible = (k: string) => visible(info.get(k)?.team_id ?? null);
  const byKey = new Map(candidates.map((n) => [nodeKey(n), n]));
  const next = new Map<string, { key: string; up: boolean }[]>();
  for (const e of usable) {
    const f = nodeKey({ kind: e.from_kind, id: e.from_id });
    const t = nodeKey({ kind: e.to_kind, id: e.to_id });
    (next.get(f) ?? next.set(f, []).get(f)!).push({ key: t, up: false });
    (next.get(t) ?? next.set(t, []).get(t)!).push({ key: f, up: true });
  }
  const kept = new Map<string, number>();
  kept.set(nodeKey(root), 0);
  let frontier = [nodeKey(root)];
  for (let level = 1; level <= depth && frontier.length > 0; level++) {
    const found: string[] = [];
    for (const k of frontier) {
      const fromDepth = kept.get(k)!;
      for (const step of next.get(k) ?? []) {
        // Follow only the asked direction(s): upstream keeps going up, downstream keeps going down.
        if (kept.has(step.key) || !isVisible(step.key) || !byKey.has(step.key)) continue;
        const goingUp = step.up;
        if (direction === 'up' && !goingUp) continue;
        if (direction === 'down' && goingUp) continue;
        if (direction === 'both' && fromDepth !== 0 && goingUp !== fromDepth < 0) continue;
        kept.set(step.key, goingUp ? -level : level);
        found.push(step.key);
      }
    }
    frontier = found.sort();
  }
  candidates = [...kept.entries()]
    .map(([k, d]) => ({ ...byKey.get(k)!, depth: d }))
    .sort((a, b) => Math.abs(a.depth) - Math.abs(b.depth) || a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
  if (candidates.length > limit) {
    truncated = true;
    candidates = candidates.slice(0, limit);
  }
  const keptKeys = new Set(candidates.map(nodeKey));

  const describe = (n: { kind: string; id: string }): LineageNode => {
    const row = info.get(nodeKey(n));
    return { kind: n.kind, id: n.id, label: row?.label ?? undefined, team: row?.team_id ?? null, route: routeOf(n) };
  };
  const edges: LineageEdge[] = usable
    .filter((e) => keptKeys.has(nodeKey({ kind: e.from_kind, id: e.from_id })) && keptKeys.has(nodeKey({ kind: e.to_kind, id: e.to_id })))
    .map((e) => {
      const edge: LineageEdge = {
        from: describe({ kind: e.from_kind, id: e.from_id }),
        to: describe({ kind: e.to_kind, id: e.to_id }),
        relation: e.relation,
        createdAt: toIso(e.created_at),
        createdBy: e.created_by,
      };
      const details = typeof e.details === 'string' ? (JSON.parse(e.details) as Record<string, unknown>) : e.details;
      if (details) edge.details = details;
      return edge;
    })
    .sort((a, b) => a.from.kind.localeCompare(b.from.kind) || a.from.id.localeCompare(b.from.id) || a.to.kind.localeCompare(b.to.kind) || a.to.id.localeCompare(b.to.id) || a.relation.localeCompare(b.relation));
  return {
    root: describe(root),
    nodes: candidates.map((n) => ({ ...describe(n), depth: n.depth })),
    edges,
    truncated,
  };
}

/** One node: what lineage knows of it and how many edges go in and out. */
export async function nodeInfo(db: Knex, node: LineageNode): Promise<{ node: LineageNode; upstream: number; downstream: number; known: boolean }> {
  checkNode(node, 'node');
  const row = (await db(NODES).where({ kind: node.kind, id: node.id }).first()) as NodeRow | undefined;
  const [up] = (await db(EDGES).where({ to_kind: node.kind, to_id: node.id }).count({ n: '*' })) as { n: string | number }[];
  const [down] = (await db(EDGES).where({ from_kind: node.kind, from_id: node.id }).count({ n: '*' })) as { n: string | number }[];
  const upstream = Number(up?.n ?? 0);
  const downstream = Number(down?.n ?? 0);
  return {
    node: { kind: node.kind, id: node.id, label: row?.label ?? undefined, team: row?.team_id ?? null, route: routeOf(node) },
    upstream,
    downstream,
    known: Boolean(row) || upstream + downstream > 0,
  };
}
