/** What lineage's routes answer (see plugins/lineage/api/index.ts). */

export interface LineageNode {
  kind: string;
  id: string;
  label?: string;
  team?: string | null;
  route?: string | null;
}

export interface GraphNode extends LineageNode {
  /** Distance from the root: negative upstream, positive downstream. */
  depth: number;
}

export interface LineageEdge {
  from: LineageNode;
  to: LineageNode;
  relation: string;
  createdAt: string;
  createdBy: string;
  details?: Record<string, unknown>;
}

/** `GET /graph`. */
export interface LineageGraph {
  root: LineageNode;
  nodes: GraphNode[];
  edges: LineageEdge[];
  truncated: boolean;
}

export type Direction = 'up' | 'down' | 'both';

/** The kinds other plugins record by convention (`<plugin>.<thing>`). */
export const KNOWN_KINDS = ['datasets.version', 'training.run', 'training.checkpoint', 'models.version', 'models.variant', 'serving.revision'];

export const MAX_DEPTH = 20;
export const DEFAULT_DEPTH = 5;

export const nodeKey = (n: { kind: string; id: string }) => `${n.kind}\u0000${n.id}`;
