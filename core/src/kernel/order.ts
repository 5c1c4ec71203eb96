import semver from 'semver';

export interface PlanNode {
  id: string;
  version: string;
  requires: Record<string, string>;
  optional: Record<string, string>;
}

export interface StartPlan {
  /** Start order of the plugins that can start: every plugin after what it depends on. */
  order: string[];
  /** Plugins that cannot start, with the reason. */
  failed: Map<string, string>;
}

function satisfies(version: string, range: string): boolean {
  return semver.valid(version) !== null && semver.validRange(range) !== null && semver.satisfies(version, range, { includePrerelease: true });
}

/**
 * Kahn's topological sort over required and present optional dependencies. Missing or
 * incompatible dependencies and cycles fail the plugins concerned, naming the others involved;
 * everything else still gets an order.
 */
export function planStartOrder(nodes: PlanNode[]): StartPlan {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const failed = new Map<string, string>();

  for (const node of nodes) {
    for (const [dep, range] of Object.entries(node.requires)) {
      const target = byId.get(dep);
      if (!target) {
        failed.set(node.id, `missing dependency "${dep}" (needs ${range})`);
        break;
      }
      if (!semver.validRange(range)) {
        failed.set(node.id, `dependency "${dep}" has an invalid version range "${range}"`);
        break;
      }
      if (!satisfies(target.version, range)) {
        failed.set(node.id, `needs "${dep}" ${range}, but ${dep} ${target.version} is installed`);
        break;
      }
    }
  }

  const edgesOf = (node: PlanNode): string[] => {
    const deps = Object.keys(node.requires);
    for (const [dep, range] of Object.entries(node.optional)) {
      const target = byId.get(dep);
      if (target && satisfies(target.version, range)) deps.push(dep);
    }
    return deps;
  };

  // A plugin whose required dependency failed fails too, transitively.
  const propagate = () => {
    let changed = true;
    while (changed) {
      changed = false;
      for (const node of nodes) {
        if (failed.has(node.id)) continue;
        const bad = Object.keys(node.requires).find((dep) => failed.has(dep));
        if (bad) {
          failed.set(node.id, `depends on failed plugin "${bad}"`);
          changed = true;
        }
      }
    }
  };
  propagate();

  const remaining = nodes.filter((n) => !failed.has(n.id));
  const inDegree = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const node of remaining) {
    const deps = edgesOf(node).filter((d) => !failed.has(d));
    inDegree.set(node.id, deps.length);
    for (const dep of deps) dependents.set(dep, [...(dependents.get(dep) ?? []), node.id]);
  }
  const ready = remaining.filter((n) => inDegree.get(n.id) === 0).map((n) => n.id).sort();
  const order: string[] = [];
  while (ready.length > 0) {
    const id = ready.shift()!;
    order.push(id);
    for (const next of dependents.get(id) ?? []) {
      const degree = inDegree.get(next)! - 1;
      inDegree.set(next, degree);
      if (degree === 0) {
        ready.push(next);
        ready.sort();
      }
    }
  }

  // Whatever is left sits on a cycle or behind one.
  const stuck = new Set(remaining.map((n) => n.id).filter((id) => !order.includes(id)));
  for (const id of [...stuck].sort()) {
    if (failed.has(id)) continue;
    const cycle = findCycle(id, (n) => edgesOf(byId.get(n)!).filter((d) => stuck.has(d)));
    if (cycle) {
      const text = `dependency cycle: ${cycle.join(' → ')}`;
      for (const member of cycle) if (!failed.has(member)) failed.set(member, text);
    }
  }
  for (const id of [...stuck].sort()) {
    if (!failed.has(id)) {
      const dep = edgesOf(byId.get(id)!).find((d) => failed.has(d));
      failed.set(id, `depends on failed plugin "${dep ?? '?'}"`);
    }
  }
  propagate();
  return { order: order.filter((id) => !failed.has(id)), failed };
}

/** A cycle through `start` as a closed path (first id repeated at the end), or undefined. */
function findCycle(start: string, next: (id: string) => string[]): string[] | undefined {
  const path: string[] = [];
  const onPath = new Set<string>();
  const seen = new Set<string>();
  const visit = (id: string): string[] | undefined => {
    if (onPath.has(id)) {
      const from = path.indexOf(id);
      return [...path.slice(from), id];
    }
    if (seen.has(id)) return undefined;
    seen.add(id);
    onPath.add(id);
    path.push(id);
    for (const n of next(id)) {
      const found = visit(n);
      if (found) return found;
    }
    path.pop();
    onPath.delete(id);
    return undefined;
  };
  return visit(start);
}

/** Plugins that must stop before `id` can (enabled dependents, transitively), dependents first. */
export function dependentsClosure(id: string, requiresOf: (id: string) => string[], all: string[]): string[] {
  const result: string[] = [];
  const visit = (target: string) => {
    for (const other of all) {
      if (requiresOf(other).includes(target) && !result.includes(other)) {
        visit(other);
        result.push(other);
      }
    }
  };
  visit(id);
  return result;
}
