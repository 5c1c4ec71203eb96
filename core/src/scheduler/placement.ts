/**
 * Placement in memory: which node and which cards (or which memory range of a shared card) a
 * replica gets. Pure and synchronous, so a scheduling pass over thousands of queued workloads costs
 * microseconds each; the database then makes the result safe (the ledger's exclusion constraint
 * refuses any overlap a stale picture would produce).
 */
import { Minimatch } from 'minimatch';

export type Strategy = 'binpack' | 'spread';

export interface DeviceState {
  id: string;
  nodeId: string;
  index: number;
  uuid: string;
  model: string;
  memoryMiB: number;
  /** Reserved memory ranges [lo, hi), sorted by lo (memory held outside aiplat is one of them, at the top). */
  used: [number, number][];
  /** MiB held by processes aiplat did not start. */
  foreignMiB?: number;
}

export interface NodeState {
  id: string;
  address: string;
  executors: string[];
  labels: Record<string, string>;
  /** Image patterns this node runs (globs: `*` within a path segment, `**` across); empty: any image. */
  allowedImages?: string[];
  devices: DeviceState[];
  /** Live replicas placed here without GPUs (spreads CPU-only work). */
  cpuReplicas: number;
}

export interface PlacementRequest {
  /** Whole cards per replica. */
  gpus: number;
  /** A slice of one shared card (with gpus 0 or 1). */
  gpuMemoryMiB?: number | null;
  executor: string;
  nodeSelector?: Record<string, string>;
  /** The container image, for nodes with an image allow-list. */
  image?: string;
}

export interface DeviceGrant {
  deviceId: string;
  index: number;
  uuid: string;
  lo: number;
  hi: number;
  whole: boolean;
}

export interface ReplicaGrant {
  nodeId: string;
  address: string;
  devices: DeviceGrant[];
}

export function usedMiB(device: DeviceState): number {
  let sum = 0;
  for (const [lo, hi] of device.used) sum += hi - lo;
  return sum;
}

function isFree(device: DeviceState): boolean {
  return device.used.length === 0;
}

/** The lowest gap of at least `size` MiB, or undefined. */
function gapFor(device: DeviceState, size: number): number | undefined {
  let cursor = 0;
  for (const [lo, hi] of device.used) {
    if (lo - cursor >= size) return cursor;
    cursor = Math.max(cursor, hi);
  }
  return device.memoryMiB - cursor >= size ? cursor : undefined;
}

export function occupy(device: DeviceState, lo: number, hi: number): void {
  const used = device.used;
  let i = used.length;
  while (i > 0 && used[i - 1]![0] > lo) i--;
  used.splice(i, 0, [lo, hi]);
}

export function vacate(device: DeviceState, lo: number, hi: number): void {
  const i = device.used.findIndex(([a, b]) => a === lo && b === hi);
  if (i !== -1) device.used.splice(i, 1);
}

export function eligible(node: NodeState, request: PlacementRequest): boolean {
  if (!node.executors.includes(request.executor)) return false;
  if (request.nodeSelector) {
    for (const [key, value] of Object.entries(request.nodeSelector)) if (node.labels[key] !== value) return false;
  }
  if (request.image && node.allowedImages && node.allowedImages.length > 0 && !imageAllowed(request.image, node.allowedImages)) return false;
  return true;
}

/** Compiled allow-list patterns: a pass tests the same few patterns against many workloads. */
const compiledPatterns = new Map<string, Minimatch>();

/** Whether `image` matches one of a node's allow-list patterns (`local/*`, `registry.lan/team/**`, `pytorch:2.*`). */
export function imageAllowed(image: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    let compiled = compiledPatterns.get(pattern);
    if (!compiled) {
      if (compiledPatterns.size > 10_000) compiledPatterns.clear();
      compiled = new Minimatch(pattern, { nocomment: true, nonegate: true });
      compiledPatterns.set(pattern, compiled);
    }
    return compiled.match(image);
  });
}

/** Place one replica on the cluster picture and record it there; undefined when nothing fits. */
export function placeReplica(nodes: NodeState[], request: PlacementRequest, strategy: Strategy): ReplicaGrant | undefined {
  if (request.gpuMemoryMiB) return placeSlice(nodes, request, request.gpuMemoryMiB, strategy);
  if (request.gpus > 0) return placeWhole(nodes, request, strategy);
  let best: NodeState | undefined;
  for (const node of nodes) {
    if (!eligible(node, request)) continue;
    if (!best || (strategy === 'spread' ? node.cpuReplicas < best.cpuReplicas : node.cpuReplicas > best.cpuReplicas)) best = node;
  }
  if (!best) return undefined;
  best.cpuReplicas++;
  return { nodeId: best.id, address: best.address, devices: [] };
}

function placeWhole(nodes: NodeState[], request: PlacementRequest, strategy: Strategy): ReplicaGrant | undefined {
  let best: NodeState | undefined;
  let bestFree = 0;
  for (const node of nodes) {
    if (node.devices.length < request.gpus || !eligible(node, request)) continue;
    let free = 0;
    for (const device of node.devices) if (isFree(device)) free++;
    if (free < request.gpus) continue;
    // binpack: the fullest node that still fits; spread: the emptiest.
    if (!best || (strategy === 'binpack' ? free < bestFree : free > bestFree)) {
      best = node;
      bestFree = free;
    }
  }
  if (!best) return undefined;
  const devices: DeviceGrant[] = [];
  for (const device of best.devices) {
    if (devices.length === request.gpus) break;
    if (!isFree(device)) continue;
    occupy(device, 0, device.memoryMiB);
    devices.push({ deviceId: device.id, index: device.index, uuid: device.uuid, lo: 0, hi: device.memoryMiB, whole: true });
  }
  return { nodeId: best.id, address: best.address, devices };
}

function placeSlice(nodes: NodeState[], request: PlacementRequest, size: number, strategy: Strategy): ReplicaGrant | undefined {
  let best: { node: NodeState; device: DeviceState; lo: number; free: number } | undefined;
  for (const node of nodes) {
    if (!eligible(node, request)) continue;
    for (const device of node.devices) {
      if (device.memoryMiB < size) continue;
      const lo = gapFor(device, size);
      if (lo === undefined) continue;
      const free = device.memoryMiB - usedMiB(device);
      // binpack: the card with the least memory left that still fits (fill shared cards first);
      // spread: the one with the most.
      if (!best || (strategy === 'binpack' ? free < best.free : free > best.free)) best = { node, device, lo, free };
    }
  }
  if (!best) return undefined;
  occupy(best.device, best.lo, best.lo + size);
  return {
    nodeId: best.node.id,
    address: best.node.address,
    devices: [{ deviceId: best.device.id, index: best.device.index, uuid: best.device.uuid, lo: best.lo, hi: best.lo + size, whole: false }],
  };
}

/** Undo a grant on the picture (a gang that did not fully fit, a preemption being tried). */
export function release(nodes: Map<string, NodeState>, grant: ReplicaGrant): void {
  const node = nodes.get(grant.nodeId);
  if (!node) return;
  if (grant.devices.length === 0) node.cpuReplicas = Math.max(0, node.cpuReplicas - 1);
  for (const d of grant.devices) {
    const device = node.devices.find((x) => x.id === d.deviceId);
    if (device) vacate(device, d.lo, d.hi);
  }
}

/**
 * Place a gang: every replica or none. Returns the grants in replica order, or undefined (and the
 * picture unchanged) when any replica does not fit.
 */
export function placeGang(nodes: NodeState[], byId: Map<string, NodeState>, request: PlacementRequest, replicas: number, strategy: Strategy): ReplicaGrant[] | undefined {
  const grants: ReplicaGrant[] = [];
  for (let i = 0; i < replicas; i++) {
    const grant = placeReplica(nodes, request, strategy);
    if (!grant) {
      for (const g of grants) release(byId, g);
      return undefined;
    }
    grants.push(grant);
  }
  return grants;
}

/** Why a request cannot be placed on any node of the cluster even when it is empty, or undefined. */
export function neverFits(nodes: NodeState[], request: PlacementRequest): string | undefined {
  const candidates = nodes.filter((n) => eligible(n, request));
  if (candidates.length === 0) {
    const selector = request.nodeSelector && Object.keys(request.nodeSelector).length > 0 ? ` with labels ${JSON.stringify(request.nodeSelector)}` : '';
    const image = request.image && nodes.some((n) => n.allowedImages && n.allowedImages.length > 0) ? ` that allows the image "${request.image}"` : '';
    return `no node runs the "${request.executor}" executor${selector}${image}`;
  }
  if (request.gpuMemoryMiB) {
    const largest = Math.max(0, ...candidates.flatMap((n) => n.devices.map((d) => d.memoryMiB)));
    if (largest === 0) return 'no node has a GPU';
    if (request.gpuMemoryMiB > largest) return `asks for ${request.gpuMemoryMiB} MiB of one GPU, but the largest GPU has ${largest} MiB`;
    return undefined;
  }
  if (request.gpus > 0) {
    const most = Math.max(0, ...candidates.map((n) => n.devices.length));
    if (most === 0) return `asks for ${request.gpus} GPU${request.gpus === 1 ? '' : 's'} per replica, but no node has a GPU`;
    if (request.gpus > most) return `asks for ${request.gpus} GPUs per replica, but no node has more than ${most}`;
  }
  return undefined;
}

/** A short account of what is free, for the reason a workload waits. */
export function describeShortage(nodes: NodeState[], request: PlacementRequest): string {
  const candidates = nodes.filter((n) => eligible(n, request));
  if (request.gpuMemoryMiB) {
    let best = 0;
    for (const n of candidates) for (const d of n.devices) best = Math.max(best, d.memoryMiB - usedMiB(d));
    return `waiting for ${request.gpuMemoryMiB} MiB on one GPU (the most free on any GPU is ${best} MiB)`;
  }
  if (request.gpus > 0) {
    let best = 0;
    let total = 0;
    for (const n of candidates) {
      const free = n.devices.filter(isFree).length;
      best = Math.max(best, free);
      total += free;
    }
    return `waiting for ${request.gpus} free GPU${request.gpus === 1 ? '' : 's'} on one node (${total} free in all, at most ${best} on one node)`;
  }
  return 'waiting for a node';
}
