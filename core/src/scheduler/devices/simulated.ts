/**
 * Device providers for the core itself: `simulated` makes up a cluster from a real nvidia-smi
 * capture (development, tests and demos on machines without GPUs), `local` reports the machine
 * the core runs on. Both read devices the same way, through `queryNvidiaSmi`, so the simulated
 * mode exercises the exec-and-parse path that real nodes use.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DeviceProvider, DiscoveredNode, NodeSample } from '@aiplat/plugin-sdk';
import { queryNvidiaSmi, samplesOf } from '@aiplat/plugin-sdk/devices';

const SIMULATED_DIR = fileURLToPath(new URL('../../../simulated/nvidia-smi/', import.meta.url));

/** Where the captures live (see SOURCES.md there for what each one is). */
export const SIMULATED_CAPTURES_DIR = resolve(SIMULATED_DIR, 'captures');

/** The fake nvidia-smi that replays a capture named by `AIPLAT_FAKE_NVIDIA_SMI_CAPTURE`. */
export const FAKE_NVIDIA_SMI = resolve(SIMULATED_DIR, 'bin/nvidia-smi');

/** Short names for the `-q -x` captures, relative to the captures folder. */
export const SIMULATED_CAPTURES: Record<string, string> = {
  /** 8× Tesla V100S-PCIE-32GB, driver 460 (schema v11); the file's name says GTX but the cards are V100S. */
  'v100s-8': 'datakit/gtx-8card.xml',
  /** One A100-SXM4-80GB in MIG mode with 4 instances of 19968 MiB, driver 535 (v12). */
  'a100-mig': 'telegraf/a100-sxm4-v12.xml',
  /** One Tesla T4, driver 515 (v11). */
  t4: 'telegraf/tesla-t4.xml',
  /** 2× RTX A5000, driver 590 (v13). */
  'a5000-2': 'telegraf/dual_a5000-v13.xml',
};

/** A short name or a path (absolute, or relative to the captures folder) to an existing capture file. */
function resolveCapture(capture: string): string {
  const known = Object.keys(SIMULATED_CAPTURES).join(', ');
  const relative = Object.hasOwn(SIMULATED_CAPTURES, capture) ? SIMULATED_CAPTURES[capture] : undefined;
  const file = relative !== undefined ? resolve(SIMULATED_CAPTURES_DIR, relative) : isAbsolute(capture) ? capture : resolve(SIMULATED_CAPTURES_DIR, capture);
  if (!existsSync(file)) {
    throw new Error(`unknown simulated GPU capture "${capture}": use one of ${known}, or the path of an nvidia-smi -q -x capture (no file at ${file})`);
  }
  return file;
}

export interface SimulatedProviderOptions {
  /** A key of SIMULATED_CAPTURES or a capture file path. */
  capture: string;
  /** How many identical nodes to make up. */
  nodes: number;
  /** The executors the nodes offer; `['local']` by default (work runs on this machine). */
  executors?: string[];
}

/**
 * Makes up `nodes` identical nodes whose cards come from one capture. The fake binary runs once
 * per `discover()` and every node gets its own copy of the devices, so hundreds of nodes cost one
 * process start.
 */
export function simulatedProvider(options: SimulatedProviderOptions): DeviceProvider {
  const capture = resolveCapture(options.capture);
  if (!Number.isInteger(options.nodes) || options.nodes < 0) {
    throw new Error(`simulated node count must be a whole number of 0 or more, got ${options.nodes}`);
  }
  const executors = options.executors ?? ['local'];

  const query = async () => {
    const report = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: { ...process.env, AIPLAT_FAKE_NVIDIA_SMI_CAPTURE: capture } });
    if (report === null) throw new Error(`the fake nvidia-smi is missing at ${FAKE_NVIDIA_SMI}; the simulated GPU mode needs it`);
    return report;
  };
  const ids = Array.from({ length: options.nodes }, (_, i) => String(i + 1).padStart(3, '0'));
  return {
    name: 'simulated',
    // The capture's readings, through the same exec-and-parse path (one run for every node).
    async sample(): Promise<NodeSample[]> {
      const samples = samplesOf(await query());
      return ids.map((number) => ({ nodeId: `sim-${number}`, devices: structuredClone(samples) }));
    },
    async discover(): Promise<DiscoveredNode[]> {
      const report = await query();
      const labels: Record<string, string> = { 'aiplat.io/simulated': 'true' };
      const model = report.devices[0]?.model;
      if (model !== undefined) labels['aiplat.io/gpu-model'] = model;

      return ids.map((number) => {
        return {
          id: `sim-${number}`,
          name: `simulated-${number}`,
          address: '127.0.0.1',
          simulated: true,
          labels: { ...labels },
          executors: [...executors],
          devices: structuredClone(report.devices),
        };
      });
    },
  };
}

export interface LocalNodeProviderOptions {
  nodeId: string;
  name: string;
  /** Where other replicas reach this machine; 127.0.0.1 by default (a one-machine cluster). */
  address?: string;
  /** The nvidia-smi to run; `nvidia-smi` on the PATH by default. */
  binary?: string;
}

/**
 * The core's own machine as one node: its cards from the real nvidia-smi (none where the driver
 * is not installed), its CPUs and memory. A driver that is installed but fails makes `discover()`
 * reject rather than report no cards.
 */
export function localNodeProvider(options: LocalNodeProviderOptions): DeviceProvider {
  return {
    name: 'local',
    async sample(): Promise<NodeSample[]> {
      const report = await queryNvidiaSmi(options.binary !== undefined ? { binary: options.binary } : {});
      return report ? [{ nodeId: options.nodeId, devices: samplesOf(report) }] : [];
    },
    async discover(): Promise<DiscoveredNode[]> {
      const report = await queryNvidiaSmi(options.binary !== undefined ? { binary: options.binary } : {});
      return [
        {
          id: options.nodeId,
          name: options.name,
          address: options.address ?? '127.0.0.1',
          labels: { 'aiplat.io/hostname': os.hostname() },
          executors: ['local'],
          devices: report?.devices ?? [],
          cpu: os.availableParallelism(),
          memoryMiB: Math.floor(os.totalmem() / (1024 * 1024)),
        },
      ];
    },
  };
}
