/** What lineage's routes answer: the contract's shapes (plugins/lineage/api/types.ts) and UI helpers. */

export type { LineageEdge, LineageGraph, LineageNode } from '../../api/types.ts';
import type { LineageNode } from '../../api/types.ts';

export interface GraphNode extends LineageNode {
  /** Distance from the root: negative upstream, positive downstream. */
  depth: number;
}

export type Direction = 'up' | 'down' | 'both';

/** The kinds other plugins record by convention (`<plugin>.<thing>`). */
export const KNOWN_KINDS = ['datasets.version', 'training.run', 'training.checkpoint', 'models.version', 'models.variant', 'serving.revision'];

export const MAX_DEPTH = 20;
export const DEFAULT_DEPTH = 5;

export const nodeKey = (n: { kind: string; id: string }) => `${n.kind}\u0000${n.id}`;
