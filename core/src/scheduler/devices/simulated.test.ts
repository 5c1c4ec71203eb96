import os from 'node:os';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAKE_NVIDIA_SMI, SIMULATED_CAPTURES, SIMULATED_CAPTURES_DIR, localNodeProvider, simulatedProvider } from './simulated.js';

describe('simulatedProvider', () => {
  it('makes up 100 nodes of 8 V100S each from one capture', async () => {
    const provider = simulatedProvider({ capture: 'v100s-8', nodes: 100 });
    expect(provider.name).toBe('simulated');
    const nodes = await provider.discover();
    expect(nodes).toHaveLength(100);
    expect(nodes.map((n) => n.id)).toEqual(Array.from({ length: 100 }, (_, i) => `sim-${String(i + 1).padStart(3, '0')}`));
    expect(nodes[0]?.id).toBe('sim-001');
    expect(nodes[99]?.id).toBe('sim-100');
    expect(nodes[41]?.name).toBe('simulated-042');
    for (const node of nodes) {
      expect(node.address).toBe('127.0.0.1');
      expect(node.simulated).toBe(true);
      expect(node.executors).toEqual(['local']);
      expect(node.labels).toEqual({ 'aiplat.io/simulated': 'true', 'aiplat.io/gpu-model': 'Tesla V100S-PCIE-32GB' });
      expect(node.devices).toHaveLength(8);
      expect(node.devices.map((d) => d.memoryMiB)).toEqual(Array(8).fill(32510));
    }
  });

  it('gives every node its own copy of the devices', async () => {
    const [first, second] = await simulatedProvider({ capture: 't4', nodes: 2 }).discover();
    first!.devices[0]!.memoryMiB = 1;
    first!.devices[0]!.details!.processes = 99;
    first!.labels!.extra = 'x';
    expect(second!.devices[0]!.memoryMiB).toBe(15360);
    expect(second!.devices[0]!.details!.processes).toBe(2);
    expect(second!.labels).not.toHaveProperty('extra');
  });

  it('discovers every named capture', async () => {
    const counts: Record<string, number> = {};
    for (const name of Object.keys(SIMULATED_CAPTURES)) {
      const [node] = await simulatedProvider({ capture: name, nodes: 1 }).discover();
      counts[name] = node!.devices.length;
    }
    expect(counts).toEqual({ 'v100s-8': 8, 'a100-mig': 4, t4: 1, 'a5000-2': 2 });
  });

  it('offers MIG instances of the A100 as the devices, and the given executors', async () => {
    const [node] = await simulatedProvider({ capture: 'a100-mig', nodes: 1, executors: ['local', 'docker'] }).discover();
    expect(node!.executors).toEqual(['local', 'docker']);
    expect(node!.devices.map((d) => d.details?.gpuInstanceId)).toEqual([3, 4, 5, 6]);
    expect(node!.labels?.['aiplat.io/gpu-model']).toBe('NVIDIA A100-SXM4-80GB MIG 3');
  });

  it('takes a capture path, relative to the captures folder or absolute', async () => {
    const [relative] = await simulatedProvider({ capture: 'telegraf/dual_a5000-v13.xml', nodes: 1 }).discover();
    const [absolute] = await simulatedProvider({ capture: resolve(SIMULATED_CAPTURES_DIR, 'telegraf/dual_a5000-v13.xml'), nodes: 1 }).discover();
    expect(relative!.devices.map((d) => d.model)).toEqual(['NVIDIA RTX A5000', 'NVIDIA RTX A5000']);
    expect(absolute!.devices).toEqual(relative!.devices);
  });

  it('refuses an unknown capture, listing the known names', () => {
    for (const capture of ['h100-8', 'toString', 'telegraf/missing.xml']) {
      expect(() => simulatedProvider({ capture, nodes: 1 })).toThrow(`unknown simulated GPU capture "${capture}": use one of v100s-8, a100-mig, t4, a5000-2, or the path of an nvidia-smi -q -x capture`);
    }
  });

  it('refuses a node count that is not a whole number, and makes none for 0', async () => {
    expect(() => simulatedProvider({ capture: 't4', nodes: -1 })).toThrow('simulated node count must be a whole number of 0 or more, got -1');
    expect(() => simulatedProvider({ capture: 't4', nodes: 1.5 })).toThrow(/got 1\.5/);
    await expect(simulatedProvider({ capture: 't4', nodes: 0 }).discover()).resolves.toEqual([]);
  });

  it('rejects with the fake binary message when a capture is not an nvidia-smi report', async () => {
    const provider = simulatedProvider({ capture: 'gpud/nvidia-smi.550.90.07.out.0.valid', nodes: 1 });
    await expect(provider.discover()).rejects.toThrow(`${FAKE_NVIDIA_SMI} -q -x printed no usable report`);
  });
});

describe('localNodeProvider', () => {
  it('reports this machine with no cards where nvidia-smi is absent', async () => {
    const provider = localNodeProvider({ nodeId: 'core-1', name: 'core', binary: '/nonexistent/nvidia-smi' });
    expect(provider.name).toBe('local');
    expect(await provider.discover()).toEqual([
      {
        id: 'core-1',
        name: 'core',
        address: '127.0.0.1',
        labels: { 'aiplat.io/hostname': os.hostname() },
        executors: ['local'],
        devices: [],
        cpu: os.availableParallelism(),
        memoryMiB: Math.floor(os.totalmem() / 1024 / 1024),
      },
    ]);
  });

  it('uses the given address', async () => {
    const [node] = await localNodeProvider({ nodeId: 'n', name: 'n', address: '10.0.0.5', binary: '/nonexistent/nvidia-smi' }).discover();
    expect(node!.address).toBe('10.0.0.5');
  });

  it('rejects when nvidia-smi exists but fails, rather than reporting no cards', async () => {
    await expect(localNodeProvider({ nodeId: 'n', name: 'n', binary: '/bin/echo' }).discover()).rejects.toThrow(/printed no usable report/);
  });
});
