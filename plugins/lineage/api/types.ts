/**
 * The shapes of lineage's nodes, edges and graphs. No imports, so browser code (the plugin's UI)
 * can import them too.
 */
/** One node of the graph. `label` and `team` are remembered for the node (the latest given wins). */
export interface LineageNode {
  /** `<plugin id>.<thing>`, e.g. `models.version`: lower-case letters, digits, `.`, `_` and `-`, at most 100 characters. */
  kind: string;
  /** The object's id in its plugin, at most 200 characters. */
  id: string;
  /** What the UI shows for the node (e.g. `llama-3-8b v3`). */
  label?: string;
  /** The team that owns the object: only that team's members (with `lineage:read`) see the node. No team: every `lineage:read` holder. */
  team?: string | null;
  /** In a graph: the shell route of the object's page, when its plugin gave one. */
  route?: string | null;
}

/** Common relations; any `^[a-z][a-z0-9-]*$` string (at most 63 characters) is accepted. */
export type LineageRelation = 'trained-from' | 'derived-from' | 'produced-by' | 'registered-from' | 'optimised-from' | 'deployed-from' | (string & {});

/** What a caller records: an edge from what was used to what was made. */
export interface LineageEdgeInput {
  from: LineageNode;
  to: LineageNode;
  relation: LineageRelation;
  /** Anything JSON worth keeping about the link (at most 16 KiB as JSON), e.g. `{ split: 'train' }`. */
  details?: Record<string, unknown>;
}

/** A recorded edge. */
export interface LineageEdge {
  from: LineageNode;
  to: LineageNode;
  relation: string;
  /** RFC 3339, UTC. */
  createdAt: string;
  /** Who recorded it: a plugin id (`training`), or `user:<id>` for a link made through the API. */
  createdBy: string;
  details?: Record<string, unknown>;
}

/** A lineage graph around `root`. */
export interface LineageGraph {
  root: LineageNode;
  /** Every node reached, `root` included, each with its `depth` (its distance from the root: negative upstream, positive downstream). */
  nodes: (LineageNode & { depth: number })[];
  edges: LineageEdge[];
  /** True when the depth limit or the node cap left part of the lineage out. */
  truncated: boolean;
}
