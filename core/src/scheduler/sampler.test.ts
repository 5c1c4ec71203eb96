import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNvidiaSmiXml, samplesOf } from '@aiplat/plugin-sdk/devices';
import { SIMULATED_CAPTURES_DIR } from './devices/simulated.js';
import type { Executor, Logger } from '@aiplat/plugin-sdk';
import { foreignMemoryMiB, processGroup, processIdsOfReplicas } from './sampler.js';

const children: number[] = [];
afterAll(() => {
  for (const pid of children) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

describe('GPU samples from a real capture', () => {
  it('gives each card its readings and its processes with their memory', () => {
    const report = parseNvidiaSmiXml(readFileSync(path.join(SIMULATED_CAPTURES_DIR, 'datakit/gtx-8card.xml'), 'utf8'));
    const samples = samplesOf(report);
    expect(samples).toHaveLength(8);
    expect(samples[0]).toMatchObject({ index: 0, memoryTotalMiB: 32510, temperatureC: 66, powerW: 232.8 });
    expect(samples[0]!.processes).toEqual([{ pid: 37305, name: 'python', usedMemoryMiB: 31683 }]);
    expect(samples[1]!.processes[0]!.usedMemoryMiB).toBe(29539);
  });
});

describe('memory held outside aiplat', () => {
  it('reads the process group of a live process, and nothing for a gone one', async () => {
    const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    children.push(child.pid!);
    expect(processGroup(child.pid!)).toBe(child.pid);
    expect(processGroup(process.pid)).toBe(Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[2]));
    expect(processGroup(2 ** 22 + 12345)).toBeUndefined();
  });

  it("counts processes outside aiplat's replica groups, and not those inside", () => {
    const groups = new Map([
      [101, 100], // a worker in replica group 100
      [200, 200], // another program
    ]);
    const processes = [
      { pid: 100, name: 'python', usedMemoryMiB: 1000 }, // the replica's leader
      { pid: 101, name: 'python', usedMemoryMiB: 2000 },
      { pid: 200, name: 'jupyter', usedMemoryMiB: 3000 },
      { pid: 300, name: 'unknown', usedMemoryMiB: 500 }, // not visible here (another namespace): counted
      { pid: 400, name: 'no reading', usedMemoryMiB: null },
    ];
    expect(foreignMemoryMiB(processes, new Set([100]), (pid) => groups.get(pid))).toBe(3500);
    expect(foreignMemoryMiB(processes, new Set([100, 200]), (pid) => groups.get(pid))).toBe(500);
  });
});

describe("containers' processes are aiplat's (processIds of container executors)", () => {
  /**
   * A TEST DOUBLE of a container executor (no GPU and no container engine here): it "runs" nothing
   * and answers `processIds` from the handle, as the docker plugin answers from `docker top`.
   */
  function containerExecutorDouble(name: string, behaviour: (handle: Record<string, unknown>) => Promise<number[]>): Executor {
    return {
      name,
      start: async () => ({ handle: {} }),
      attach: async () => {},
      stop: async () => {},
      processIds: behaviour,
    };
  }

  it('asks each replica’s executor for its host pids, per node, and keeps only real pids', async () => {
    const docker = containerExecutorDouble('docker-double', async (handle) => handle.pids as number[]);
    const plain: Executor = { name: 'plain', start: async () => ({ handle: {} }), attach: async () => {}, stop: async () => {} };
    const pids = await processIdsOfReplicas(
      [
        { nodeId: 'gpu-1', executor: 'docker-double', handle: { pids: [4100, 4101] } },
        { nodeId: 'gpu-1', executor: 'docker-double', handle: { pids: [4200, -1, 0, 1.5, Number.NaN] } },
        { nodeId: 'gpu-2', executor: 'docker-double', handle: { pids: [4100] } },
        { nodeId: 'gpu-2', executor: 'plain', handle: { pid: 77 } }, // no processIds: not asked
        { nodeId: 'gpu-3', executor: 'gone', handle: {} }, // its plugin is disabled: not asked
      ],
      [docker, plain],
    );
    expect(pids).toEqual(
      new Map([
        ['gpu-1', new Set([4100, 4101, 4200])],
        ['gpu-2', new Set([4100])],
      ]),
    );
  });

  it('skips a replica whose executor fails or does not answer in time, and says so at debug level', async () => {
    const logged: unknown[] = [];
    const logger = { debug: (obj: unknown) => logged.push(obj) } as unknown as Logger;
    const flaky = containerExecutorDouble('flaky-double', async (handle) => {
      if (handle.fail) throw new Error('engine unreachable');
      if (handle.hang) return new Promise<number[]>(() => {});
      return [5000];
    });
    const started = Date.now();
    const pids = await processIdsOfReplicas(
      [
        { nodeId: 'n', executor: 'flaky-double', handle: { fail: true } },
        { nodeId: 'n', executor: 'flaky-double', handle: { hang: true } },
        { nodeId: 'n', executor: 'flaky-double', handle: {} },
      ],
      [flaky],
      { timeoutMs: 100, logger },
    );
    expect(Date.now() - started).toBeLessThan(2000);
    expect(pids).toEqual(new Map([['n', new Set([5000])]]));
    expect(logged).toEqual([
      { executor: 'flaky-double', node: 'n', err: 'engine unreachable' },
      { executor: 'flaky-double', node: 'n', err: 'no answer within 100 ms' },
    ]);
  });

  it("does not count a container's processes (host pids outside aiplat's process groups) as foreign once they are known", async () => {
    const docker = containerExecutorDouble('docker-double', async () => [4100, 4101]);
    const onCard = [
      { pid: 4100, name: 'python', usedMemoryMiB: 20000 }, // the container's main process
      { pid: 4101, name: 'python', usedMemoryMiB: 4000 }, // a worker in it
      { pid: 4300, name: 'python', usedMemoryMiB: 3000 }, // a worker forked inside, in the container's process group 4100
      { pid: 9000, name: 'jupyter', usedMemoryMiB: 1000 }, // someone else's
    ];
    const groupOf = (pid: number) => (pid === 4300 ? 4100 : pid);
    const localGroups = new Set([100]);
    // Before: the container's memory is counted twice, reserved and foreign.
    expect(foreignMemoryMiB(onCard, localGroups, groupOf)).toBe(28000);
    const pids = await processIdsOfReplicas([{ nodeId: 'gpu-1', executor: 'docker-double', handle: {} }], [docker]);
    expect(foreignMemoryMiB(onCard, new Set([...localGroups, ...pids.get('gpu-1')!]), groupOf)).toBe(1000);
  });
});
