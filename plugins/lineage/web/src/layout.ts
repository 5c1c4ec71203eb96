/**
 * A layered left-to-right layout of a lineage DAG: each node's layer is the longest path to it
 * from a node with no parent in the graph (so every edge points right), and nodes within a layer
 * are ordered by the average position of their parents (fewer crossings), then by kind and id.
 */
import { nodeKey, type GraphNode, type LineageEdge } from './types.ts';

export interface PlacedNode extends GraphNode {
  key: string;
  x: number;
  y: number;
}

export function layout(nodes: GraphNode[], edges: LineageEdge[]): { nodes: PlacedNode[]; layers: number; height: number } {
  const keys = new Set(nodes.map(nodeKey));
  const parents = new Map<string, string[]>();
  const children = new Map<string, string[]>();
  for (const e of edges) {
    const f = nodeKey(e.from);
    const t = nodeKey(e.to);
    if (!keys.has(f) || !keys.has(t)) continue;
    (parents.get(t) ?? parents.set(t, []).get(t)!).push(f);
    (children.get(f) ?? children.set(f, []).get(f)!).push(t);
  }
  // Kahn's order; the layer of a node is one more than its deepest parent's.
  const layer = new Map<string, number>();
  const waiting = new Map(nodes.map((n) => [nodeKey(n), parents.get(nodeKey(n))?.length ?? 0]));
  let ready = nodes.filter((n) => (waiting.get(nodeKey(n)) ?? 0) === 0).map(nodeKey);
  for (const k of ready) layer.set(k, 0);
  while (ready.length > 0) {
    const next: string[] = [];
    for (const k of ready) {
      for (const c of children.get(k) ?? []) {
        layer.set(c, Math.max(layer.get(c) ?? 0, (layer.get(k) ?? 0) + 1));
        const left = (waiting.get(c) ?? 1) - 1;
        waiting.set(c, left);
        if (left === 0) next.push(c);
      }
    }
    ready = next;
  }
  const byLayer = new Map<number, GraphNode[]>();
  for (const n of nodes) {
    const l = layer.get(nodeKey(n)) ?? 0;
    (byLayer.get(l) ?? byLayer.set(l, []).get(l)!).push(n);
  }
  const placed = new Map<string, PlacedNode>();
  let height = 1;
  for (const l of [...byLayer.keys()].sort((a, b) => a - b)) {
    const list = byLayer.get(l)!;
    const weight = (n: GraphNode) => {
      const ys = (parents.get(nodeKey(n)) ?? []).map((p) => placed.get(p)?.y).filter((y): y is number => y !== undefined);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
    };
    list.sort((a, b) => weight(a) - weight(b) || a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
    height = Math.max(height, list.length);
    list.forEach((n, i) => placed.set(nodeKey(n), { ...n, key: nodeKey(n), x: l, y: i - (list.length - 1) / 2 }));
  }
  return { nodes: nodes.map((n) => placed.get(nodeKey(n))!), layers: byLayer.size, height };
}
