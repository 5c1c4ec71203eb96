/**
 * The contract of the lineage plugin: what other plugins import (`@aiplat-plugins/lineage/api`)
 * to record where their objects come from, instead of importing the plugin itself.
 *
 * A node is `{ kind, id }`. Kinds are free strings named `<plugin id>.<thing>` by convention:
 *
 * | kind | what it is |
 * | --- | --- |
 * | `datasets.version` | a version of a dataset |
 * | `training.run` | a training (or fine-tuning) run |
 * | `training.checkpoint` | a checkpoint a run wrote |
 * | `models.version` | a registered model version |
 * | `models.variant` | an optimised variant of a model version (quantised, distilled, pruned) |
 * | `serving.revision` | a revision of a deployment |
 *
 * An edge goes from what was used to what was made (`datasets.version` → `training.run`), so
 * "upstream" is where something comes from and "downstream" is what was made from it. Edges form
 * a DAG: a record that would close a cycle is refused.
 *
 * ```ts
 * import { lineageService } from '@aiplat-plugins/lineage/api';
 * // In a route handler of a plugin whose manifest depends on "lineage": the edge commits with the request.
 * await ctx.plugin.service(lineageService).record(
 *   { from: { kind: 'datasets.version', id: dv.id }, to: { kind: 'training.run', id: run.id, label: run.name, team: run.team_id }, relation: 'trained-from' },
 *   { db: ctx.db, createdBy: 'training' },
 * );
 * ```
 */
import { createServiceRef, type Knex, type ServiceRef } from '@aiplat/plugin-sdk';

export * from './types.js';
import type { LineageEdgeInput, LineageGraph, LineageNode } from './types.js';


export interface RecordOptions {
  /**
   * The caller's database handle: in a route handler, `ctx.db` (the request's transaction), so the
   * edge commits or rolls back with the caller's own change. Default: lineage's own connection.
   */
  db?: Knex;
  /** The recording plugin's id (shown as the edge's `createdBy`). Default `unknown`. */
  createdBy?: string;
}

export interface TraverseOptions {
  /** How many edges away from the node to go: 1 to {@link MAX_DEPTH}, default {@link DEFAULT_DEPTH}. */
  depth?: number;
  /** At most this many nodes (root included), 1 to {@link MAX_NODES}, default {@link MAX_NODES}; past it the graph is `truncated`. */
  limit?: number;
  db?: Knex;
}

export const DEFAULT_DEPTH = 5;
export const MAX_DEPTH = 20;
export const MAX_NODES = 500;

/** The service the lineage plugin provides. Depend on `lineage` in your manifest to use it. */
export interface LineageService {
  /**
   * Record an edge (and the nodes' labels and teams). Idempotent: the same `from`, `to` and
   * `relation` twice is one edge (the first one's `details` and `createdAt` are kept). Refuses with
   * 409 `conflict` an edge that would close a cycle, and with 400 `validation_failed` a bad node.
   */
  record(edge: LineageEdgeInput, options?: RecordOptions): Promise<void>;
  /** Record several edges at once, in one transaction (all or none). */
  recordMany(edges: LineageEdgeInput[], options?: RecordOptions): Promise<void>;
  /** Where the node comes from: the nodes it was made from, up to `depth` edges away. */
  upstream(node: LineageNode, options?: TraverseOptions): Promise<LineageGraph>;
  /** What was made from the node, up to `depth` edges away. */
  downstream(node: LineageNode, options?: TraverseOptions): Promise<LineageGraph>;
  /** Remove an edge; resolves with whether it existed. */
  remove(edge: { from: LineageNode; to: LineageNode; relation: string }, options?: { db?: Knex }): Promise<boolean>;
  /** Remove every edge touching the node, and what lineage knows of it (e.g. when a version is deleted). Resolves with the number of edges removed. */
  forget(node: LineageNode, options?: { db?: Knex }): Promise<number>;
  /**
   * The shell route of a kind's pages, e.g. `describeKind('models.version', { route: '/models/versions/{id}' })`:
   * the lineage graph links each node of that kind to its page. Call it in your plugin's `start`.
   */
  describeKind(kind: string, info: { route?: string }): void;
}

export const lineageService = createServiceRef<LineageService>({ id: 'lineage.service' });

/**
 * The lineage service when the lineage plugin is installed and enabled, else undefined: for plugins
 * that list `lineage` in `optionalDependencies` and record lineage only when it is there.
 */
export function lineageOf(plugin: { service<T>(ref: ServiceRef<T>): T }): LineageService | undefined {
  try {
    return plugin.service(lineageService);
  } catch {
    return undefined;
  }
}
