/**
 * How long `LocalExecutor.start()` takes to report `started`, for the scheduler's budget
 * (submit → running p99 ≤ 1 s). Starts `/bin/true` N times, one after the other:
 *
 *   node --import tsx core/src/scheduler/local/measure-start-latency.ts [count=30]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalExecutor } from './local-executor.js';

const count = Number(process.argv[2] ?? 30);
const runsDir = await mkdtemp(join(tmpdir(), 'aiplat-start-latency-'));
const executor = new LocalExecutor({ runsDir });
const samples: number[] = [];

try {
  for (let i = 0; i < count; i++) {
    const begun = performance.now();
    let startedAfter = 0;
    let ended!: () => void;
    const done = new Promise<void>((resolve) => (ended = resolve));
    await executor.start(
      { workloadId: `latency-${i}`, replica: 0, epoch: 1, nodeId: 'local', spec: { name: 'latency', kind: 'job', command: ['/bin/true'] }, env: {}, ports: {}, devices: [], simulated: false, nodeLabels: {} },
      {
        started: () => (startedAfter = performance.now() - begun),
        output: () => undefined,
        exited: () => ended(),
        lost: (reason) => {
          console.error(`lost: ${reason}`);
          ended();
        },
      },
    );
    samples.push(startedAfter);
    // One at a time: the number is a single start's, not a queue's.
    await done;
  }
} finally {
  executor.close();
  await rm(runsDir, { recursive: true, force: true });
}

samples.sort((a, b) => a - b);
const at = (p: number) => samples[Math.min(samples.length - 1, Math.ceil((p / 100) * samples.length) - 1)]!.toFixed(1);
console.log(`start() → started over ${count} starts of /bin/true: p50 ${at(50)} ms, p99 ${at(99)} ms, max ${samples.at(-1)!.toFixed(1)} ms`);
