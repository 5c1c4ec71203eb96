/**
 * The GPU check's Node part, bundled by build.mjs into dist/check.mjs (with the SDK's nvidia-smi
 * readers and the core's local executor) so that it runs on a GPU machine without node_modules.
 * run.sh calls it; see README.md.
 *
 *   node dist/check.mjs fields                                  the --query-gpu fields of the fallback
 *   node dist/check.mjs inventory --fixtures <dir> --out <dir>  parse the saved outputs, query live, cross-check
 *   node dist/check.mjs job --out <dir> [--hold <s>]            one local-executor job on one reserved card
 *
 * Each check prints `PASS`, `FAIL`, `SKIP` or `INFO` lines; the exit code is 1 when any failed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DiscoveredDevice, ReplicaLaunch, ReplicaReporter, WorkloadSpec } from '@aiplat/plugin-sdk';
import {
  isSynthesizedMigUuid,
  parseNvidiaSmiCsv,
  parseNvidiaSmiList,
  parseNvidiaSmiXml,
  QUERY_COMPUTE_APPS_FIELDS,
  QUERY_GPU_FIELDS,
  queryNvidiaSmi,
  queryNvidiaSmiCsv,
  type NvidiaSmiReport,
} from '@aiplat/plugin-sdk/devices';
import { LocalExecutor } from '../../core/src/scheduler/local/local-executor.js';
import { foreignMemoryMiB, processGroup } from '../../core/src/scheduler/sampler.js';

/** The fields run.sh asks for with `--format=csv,noheader,nounits` (saved as query-gpu.noheader-nounits.csv). */
export const CHECK_FIELDS = ['index', 'uuid', 'name', 'memory.total', 'memory.used', 'utilization.gpu', 'temperature.gpu', 'power.draw'];

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DRY_RUN = process.env.AIPLAT_FAKE_NVIDIA_SMI_CAPTURE !== undefined;

type Verdict = 'PASS' | 'FAIL' | 'SKIP' | 'INFO';
const results: { verdict: Verdict; check: string; detail: string }[] = [];

function say(verdict: Verdict, check: string, detail = ''): void {
  results.push({ verdict, check, detail });
  console.log(`${verdict.padEnd(4)} ${check}${detail ? `: ${detail}` : ''}`);
}

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

function attempt<T>(what: string, run: () => T): T | undefined {
  try {
    return run();
  } catch (error) {
    say('FAIL', what, (error as Error).message);
    return undefined;
  }
}

const hex = (uuid: string) => uuid.replace(/^(GPU|MIG)-/, '').toLowerCase();
const isMig = (d: DiscoveredDevice) => typeof d.details?.migParent === 'string';

function table(report: NvidiaSmiReport): string {
  const rows = report.devices.map((d) => {
    const x = (d.details ?? {}) as Record<string, unknown>;
    const show = (v: unknown) => (v === null || v === undefined ? '-' : String(v));
    return [d.index, d.uuid, d.model, d.memoryMiB, show(x.memoryUsedMiB), show(x.utilizationPercent), show(x.temperatureC), show(x.powerDrawW), show(x.processes), show(x.migParent ?? x.migMode)].map(String);
  });
  const header = ['index', 'uuid', 'model', 'MiB', 'used', 'util%', 'temp', 'W', 'procs', 'MIG'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}

/** What both ways of reading nvidia-smi must agree on for one device (readings move between two runs). */
const stable = (d: DiscoveredDevice) => ({ index: d.index, uuid: d.uuid, model: d.model, memoryMiB: d.memoryMiB, pciBusId: d.details?.pciBusId ?? null, migMode: d.details?.migMode ?? null });

async function inventory(): Promise<void> {
  const fixtures = option('fixtures');
  const out = option('out');
  if (!fixtures || !out) throw new Error('usage: check.mjs inventory --fixtures <dir> --out <dir>');
  const read = (name: string) => (existsSync(path.join(fixtures, name)) ? readFileSync(path.join(fixtures, name), 'utf8') : undefined);
  const saved: Record<string, unknown> = {};
  if (DRY_RUN) say('INFO', 'dry run', `nvidia-smi is the fake replaying ${process.env.AIPLAT_FAKE_NVIDIA_SMI_CAPTURE}`);

  // (b) The saved raw outputs, through the SDK's parsers.
  const xmlText = read('nvidia-smi-q-x.xml');
  const xml = xmlText === undefined ? undefined : attempt('parse nvidia-smi -q -x (saved)', () => parseNvidiaSmiXml(xmlText));
  if (xml) {
    say('PASS', 'parse nvidia-smi -q -x (saved)', `${xml.devices.length} device(s), driver ${xml.driverVersion}, CUDA ${xml.cudaVersion}`);
    console.log(table(xml));
    saved.xml = xml;
  }
  const csvText = read('query-gpu.noheader-nounits.csv');
  const csv = csvText === undefined ? undefined : attempt('parse --query-gpu csv,noheader,nounits (saved)', () => parseNvidiaSmiCsv(csvText, { fields: CHECK_FIELDS }));
  if (csv) {
    say('PASS', 'parse --query-gpu csv,noheader,nounits (saved)', `${csv.devices.length} card(s)`);
    console.log(table(csv));
    saved.csv = csv;
  }
  const listText = read('list-gpus.txt');
  const listed = listText === undefined ? undefined : attempt('parse nvidia-smi -L (saved)', () => parseNvidiaSmiList(listText));
  if (listed) {
    say('PASS', 'parse nvidia-smi -L (saved)', listed.map((g) => `GPU ${g.index} ${g.uuid} (${g.migDevices.length} MIG)`).join('; '));
    saved.list = listed;
  }
  const fallbackText = read('query-gpu.fallback.csv');
  if (fallbackText !== undefined) {
    const parsed = attempt('parse --query-gpu as the fallback asks it (saved)', () => parseNvidiaSmiCsv(fallbackText, { fields: [...QUERY_GPU_FIELDS] }));
    if (parsed) say('PASS', 'parse --query-gpu as the fallback asks it (saved)', `${parsed.devices.length} card(s)`);
  }

  // Cross-checks between the saved outputs.
  if (xml && csv) {
    const cards = new Map<string, { index: number; model: string; memoryMiB: number }>();
    for (const d of xml.devices) {
      if (!isMig(d)) cards.set(d.uuid, { index: d.index, model: d.model, memoryMiB: d.memoryMiB });
      else if (!cards.has(String(d.details?.migParent))) cards.set(String(d.details?.migParent), { index: Number(d.details?.gpuIndex), model: '(MIG parent)', memoryMiB: -1 });
    }
    const mismatches = csv.devices.filter((c) => {
      const x = cards.get(c.uuid);
      return !x || x.index !== c.index || (x.memoryMiB >= 0 && (x.model !== c.model || x.memoryMiB !== c.memoryMiB));
    });
    if (mismatches.length === 0 && cards.size === csv.devices.length) say('PASS', '-q -x and --query-gpu name the same cards', `${cards.size} card(s): index, UUID, model, memory`);
    else say('FAIL', '-q -x and --query-gpu name the same cards', `XML ${JSON.stringify([...cards])} CSV ${JSON.stringify(csv.devices.map(stable))}`);
  }
  if (xml && listed) {
    const xmlCards = [...new Set(xml.devices.map((d) => (isMig(d) ? String(d.details?.migParent) : d.uuid)))].sort();
    const listCards = listed.map((g) => g.uuid ?? '').sort();
    if (JSON.stringify(xmlCards) === JSON.stringify(listCards)) say('PASS', '-q -x and -L name the same cards', `${listCards.length}`);
    else say('FAIL', '-q -x and -L name the same cards', `XML ${xmlCards.join(',')} -L ${listCards.join(',')}`);
    const xmlMig = xml.devices.filter(isMig).length;
    const listMig = listed.reduce((n, g) => n + g.migDevices.length, 0);
    say(xmlMig === listMig ? 'PASS' : 'FAIL', '-q -x and -L have as many MIG devices', `${xmlMig} / ${listMig}`);
  }

  // The same, run live through queryNvidiaSmi (exec path) and the --query-gpu fallback alone.
  try {
    const live = await queryNvidiaSmi();
    if (live === null) say('FAIL', 'queryNvidiaSmi (live)', 'nvidia-smi is not on the PATH');
    else {
      saved.live = live;
      const synthesized = live.devices.filter((d) => isMig(d) && isSynthesizedMigUuid(d.uuid));
      say(live.fallbackReason ? 'FAIL' : 'PASS', 'queryNvidiaSmi reads -q -x (live)', live.fallbackReason ?? `${live.devices.length} device(s)`);
      if (live.warnings) say('FAIL', 'queryNvidiaSmi warnings (live)', live.warnings.join('; '));
      if (live.devices.some(isMig)) say(synthesized.length === 0 ? 'PASS' : 'FAIL', 'MIG devices have their -L UUIDs (live)', synthesized.map((d) => d.uuid).join(', ') || 'all');
      const viaCsv = await queryNvidiaSmiCsv();
      if (viaCsv) {
        saved.liveCsv = viaCsv;
        if (viaCsv.warnings) say('FAIL', 'the --query-gpu fallback warns (live)', viaCsv.warnings.join('; '));
        // MIG devices read from the CSV are sized and named from their profile (-q -x names them by GPU instance id): compare the rest.
        const comparable = (d: DiscoveredDevice) => (isMig(d) ? { ...stable(d), memoryMiB: 0, model: String(d.details?.migParent) } : stable(d));
        const a = JSON.stringify(live.devices.map(comparable));
        const b = JSON.stringify(viaCsv.devices.map(comparable));
        say(a === b ? 'PASS' : 'FAIL', 'the --query-gpu fallback reads the same devices as -q -x (live)', a === b ? `${viaCsv.devices.length} device(s)` : `XML ${a} CSV ${b}`);
        const xmlProcs = live.devices.reduce((n, d) => n + Number(d.details?.processes ?? 0), 0);
        const csvProcs = viaCsv.devices.reduce((n, d) => n + Number(d.details?.processes ?? 0), 0);
        say('INFO', 'processes on the cards (live)', `-q -x ${xmlProcs}, --query-compute-apps ${csvProcs} (compute only)`);
      }
    }
  } catch (error) {
    say('FAIL', 'queryNvidiaSmi (live)', (error as Error).message);
  }

  writeFileSync(path.join(out, 'inventory.json'), `${JSON.stringify(saved, null, 2)}\n`);
  writeSourcesFragment(fixtures, xml ?? csv);
}

/** A draft of the SOURCES.md rows for the saved outputs, for copying them into the project's captures. */
function writeSourcesFragment(fixtures: string, report: NvidiaSmiReport | undefined): void {
  const commands = existsSync(path.join(fixtures, 'commands.tsv')) ? readFileSync(path.join(fixtures, 'commands.tsv'), 'utf8').trim().split('\n') : [];
  const models = [...new Set(report?.devices.map((d) => d.model) ?? [])].join(', ') || '?';
  const rows = commands.map((line) => {
    const [file, rc, command] = line.split('\t');
    return `| gpu-check/${file} | this project, scripts/gpu-check/run.sh on ${DRY_RUN ? 'the FAKE nvidia-smi (dry run)' : 'a lent GPU machine'}, ${new Date().toISOString().slice(0, 10)} | Apache-2.0 | ${models} | ${report?.driverVersion ?? '?'} / ${report?.cudaVersion ?? '?'} | \`${command}\` | exit ${rc} |`;
  });
  writeFileSync(path.join(fixtures, 'SOURCES.fragment.md'), `${rows.join('\n')}\n`);
}

async function job(): Promise<void> {
  const out = option('out');
  if (!out) throw new Error('usage: check.mjs job --out <dir> [--hold <seconds>]');
  const hold = Number(option('hold') ?? 8);
  if (DRY_RUN) say('INFO', 'dry run', `nvidia-smi is the fake replaying ${process.env.AIPLAT_FAKE_NVIDIA_SMI_CAPTURE}: no card exists, CUDA checks are skipped`);
  const report = await queryNvidiaSmi();
  if (!report || report.devices.length === 0) {
    say('SKIP', 'local job on one reserved card', 'no card found');
    return;
  }
  // The last whole card: a mix-up of indexes (PCI order against another order) cannot pass by luck on card 0.
  const whole = report.devices.filter((d) => !isMig(d));
  const reserved = (whole.length > 0 ? whole : report.devices).at(-1)!;
  say('INFO', 'reserved card', `index ${reserved.index}, ${reserved.uuid}, ${reserved.model} (of ${report.devices.length} device(s))`);

  let python: string | undefined;
  try {
    python = execFileSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    python = undefined;
  }
  const probe = path.join(HERE, 'cuda-probe.py');
  const command = python
    ? ['sh', '-c', 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER=$CUDA_DEVICE_ORDER"; nvidia-smi -L; exec "$0" "$1" --hold "$2"', python, probe, String(hold)]
    : ['sh', '-c', 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER=$CUDA_DEVICE_ORDER"; nvidia-smi -L'];
  if (!python) say('SKIP', 'CUDA enumeration inside the job', 'no python3 on this machine (the probe uses ctypes to call libcuda)');

  const runsDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-gpu-check-'));
  const executor = new LocalExecutor({ runsDir, graceSeconds: 2 });
  const lines: string[] = [];
  let ended: { exitCode: number | null; signal?: string | null } | { lost: string } | undefined;
  const reporter: ReplicaReporter = {
    started: () => {},
    output: (text) => lines.push(...text.split('\n').filter((l) => l.length > 0)),
    exited: (info) => (ended = info),
    lost: (reason) => (ended = { lost: reason }),
  };
  // As the agent launches a replica (core/src/scheduler/agent.ts): the reserved card's index, PCI order.
  const launch: ReplicaLaunch = {
    workloadId: 'gpu-check',
    replica: 0,
    epoch: 1,
    nodeId: 'gpu-check',
    spec: { name: 'gpu-check', kind: 'job', command, resources: { gpus: 1 } } as WorkloadSpec,
    env: {
      CUDA_VISIBLE_DEVICES: String(reserved.index),
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      AIPLAT_WORKLOAD_ID: 'gpu-check',
      AIPLAT_REPLICA: '0',
      AIPLAT_EPOCH: '1',
      WORLD_SIZE: '1',
      RANK: '0',
      // The dry run's fake nvidia-smi needs its capture inside the job too (the executor passes only PATH, HOME, LANG, TMPDIR).
      ...(DRY_RUN ? { AIPLAT_FAKE_NVIDIA_SMI_CAPTURE: process.env.AIPLAT_FAKE_NVIDIA_SMI_CAPTURE! } : {}),
    },
    ports: {},
    devices: [{ index: reserved.index, uuid: reserved.uuid }],
    simulated: DRY_RUN,
    nodeLabels: {},
  };
  const until = async (done: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  };
  const result: Record<string, unknown> = { reserved, command };
  try {
    const { handle } = await executor.start(launch, reporter);
    result.handle = handle;
    await until(() => ended !== undefined || lines.includes('HOLDING'), 60_000);

    if (lines.includes('HOLDING')) {
      // While the job holds 256 MiB on its card: where does nvidia-smi see it, and is it aiplat's?
      const during = await queryNvidiaSmi();
      const group = new Set([handle.pid]);
      const mine = (during?.devices ?? []).flatMap((d) => ((d.details?.processList ?? []) as { pid: number; usedMemoryMiB: number | null }[]).filter((p) => p.pid === handle.pid || processGroup(p.pid) === handle.pid).map((p) => ({ device: d, process: p })));
      result.processesDuringJob = during?.devices.map((d) => ({ index: d.index, uuid: d.uuid, processList: d.details?.processList }));
      if (mine.length === 0) {
        say('SKIP', "nvidia-smi shows the job's process on its card", `no process of group ${handle.pid} listed (pid namespace of a container? processes: ${JSON.stringify(result.processesDuringJob)})`);
      } else {
        const onReserved = mine.every(({ device }) => device.uuid === reserved.uuid);
        say(onReserved ? 'PASS' : 'FAIL', "nvidia-smi shows the job's process on its reserved card", mine.map(({ device, process }) => `pid ${process.pid} ${process.usedMemoryMiB} MiB on index ${device.index} ${device.uuid}`).join('; '));
        const card = during!.devices.find((d) => d.uuid === reserved.uuid);
        const processes = (card?.details?.processList ?? []) as { pid: number; name: string | null; usedMemoryMiB: number | null }[];
        const foreignWith = foreignMemoryMiB(processes, group);
        const foreignWithout = foreignMemoryMiB(processes, new Set());
        say(foreignWith < foreignWithout ? 'PASS' : 'FAIL', "the job's memory is aiplat's, not held outside it (process group)", `foreign ${foreignWith} MiB with the replica's group, ${foreignWithout} MiB without`);
      }
    }
    await until(() => ended !== undefined, 60_000);
  } finally {
    executor.close();
  }
  result.output = lines;
  result.ended = ended;
  console.log(lines.map((l) => `  | ${l}`).join('\n'));

  if (!ended || 'lost' in ended || ended.exitCode !== 0) say('FAIL', 'the job ran to completion', JSON.stringify(ended ?? 'still running after 60 s'));
  else say('PASS', 'the job ran to completion', 'exit 0');
  const env = lines.find((l) => l.startsWith('CUDA_VISIBLE_DEVICES='));
  say(env === `CUDA_VISIBLE_DEVICES=${reserved.index} CUDA_DEVICE_ORDER=PCI_BUS_ID` ? 'PASS' : 'FAIL', 'the job got CUDA_VISIBLE_DEVICES of its one card', env ?? 'not printed');
  const smiList = lines.filter((l) => /^GPU \d+: /.test(l));
  // nvidia-smi lists cards through NVML and ignores CUDA_VISIBLE_DEVICES: on a bare host it shows them all.
  say('INFO', 'nvidia-smi -L inside the job', `${smiList.length} card(s) listed (nvidia-smi does not honour CUDA_VISIBLE_DEVICES; CUDA does, see below)`);

  const probeLine = lines.find((l) => l.startsWith('PROBE '));
  if (python && !probeLine) say('FAIL', 'CUDA enumeration inside the job', 'the probe printed nothing');
  if (probeLine) {
    const seen = JSON.parse(probeLine.slice('PROBE '.length)) as { error?: string; devices?: { uuid: string; name: string; pciBusId: string }[] };
    result.probe = seen;
    if (seen.error && !seen.devices) say(DRY_RUN ? 'SKIP' : 'FAIL', 'CUDA enumeration inside the job', seen.error);
    else if (seen.devices?.length === 1 && seen.devices[0]!.uuid === hex(reserved.uuid)) say('PASS', 'CUDA inside the job sees exactly its reserved card', `${seen.devices[0]!.name} ${seen.devices[0]!.pciBusId} ${reserved.uuid}`);
    else say('FAIL', 'CUDA inside the job sees exactly its reserved card', `reserved ${reserved.uuid}, CUDA sees ${JSON.stringify(seen.devices)}${seen.error ? ` (${seen.error})` : ''}`);
  }
  writeFileSync(path.join(out, 'job.json'), `${JSON.stringify(result, null, 2)}\n`);
  rmSync(runsDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const command = process.argv[2];
  if (command === 'fields') {
    console.log(QUERY_GPU_FIELDS.join(','));
    console.log(QUERY_COMPUTE_APPS_FIELDS.join(','));
    return;
  }
  if (command === 'inventory') await inventory();
  else if (command === 'job') await job();
  else throw new Error('usage: check.mjs fields | inventory --fixtures <dir> --out <dir> | job --out <dir> [--hold <seconds>]');
  const failed = results.filter((r) => r.verdict === 'FAIL');
  console.log(`${command}: ${results.filter((r) => r.verdict === 'PASS').length} passed, ${failed.length} failed, ${results.filter((r) => r.verdict === 'SKIP').length} skipped`);
  process.exitCode = failed.length > 0 ? 1 : 0;
}

main().catch((error: Error) => {
  console.error(`FAIL ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
