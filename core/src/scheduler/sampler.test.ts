import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNvidiaSmiXml, samplesOf } from '@aiplat/plugin-sdk/devices';
import { SIMULATED_CAPTURES_DIR } from './devices/simulated.js';
import { foreignMemoryMiB, processGroup } from './sampler.js';

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
