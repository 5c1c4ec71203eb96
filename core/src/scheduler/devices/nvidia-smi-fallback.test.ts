// The `--query-gpu` fallback and `nvidia-smi -L`: parsers on every real CSV and `-L` output of the
// captures (sections of core/simulated/nvidia-smi/captures/nvidia_gpu_exporter/*, see SOURCES.md),
// and queryNvidiaSmi end to end through the fake nvidia-smi (real processes; no GPU here).
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attachComputeApps,
  expandMigFromList,
  fillMigUuids,
  parseComputeAppsCsv,
  parseNvidiaSmiCsv,
  parseNvidiaSmiList,
  parseNvidiaSmiXml,
  queryNvidiaSmi,
  queryNvidiaSmiCsv,
  QUERY_GPU_FIELDS,
  samplesOf,
  type NvidiaSmiReport,
} from '@aiplat/plugin-sdk/devices';
import { FAKE_NVIDIA_SMI, SIMULATED_CAPTURES, SIMULATED_CAPTURES_DIR } from './simulated.js';

const capture = (path: string): string => readFileSync(resolve(SIMULATED_CAPTURES_DIR, path), 'utf8');
const fakeEnv = (path: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, AIPLAT_FAKE_NVIDIA_SMI_CAPTURE: path, ...extra });

/** The output under `# <phase> :: ...` / `# $ nvidia-smi <args starting with prefix>` in a sectioned capture. */
function section(path: string, phase: string, prefix: string): string {
  const lines = capture(path).split('\n');
  for (let i = 1; i + 1 < lines.length; i++) {
    if (!lines[i - 1]!.startsWith(`# ${phase} :: `) || !lines[i]!.startsWith(`# $ nvidia-smi ${prefix}`) || !/^#{20,}/.test(lines[i + 1]!)) continue;
    let end = i + 2;
    while (end < lines.length && !/^#{20,}/.test(lines[end]!)) end++;
    return `${lines.slice(i + 2, end).join('\n').trimEnd()}\n`;
  }
  throw new Error(`no ${phase} "${prefix}" section in ${path}`);
}

const EXPORTER = readdirSync(resolve(SIMULATED_CAPTURES_DIR, 'nvidia_gpu_exporter')).map((file) => `nvidia_gpu_exporter/${file}`);
const H100 = 'nvidia_gpu_exporter/linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt';
const H100_MIG = 'nvidia_gpu_exporter/linux-x86_64__nvidia-h100-mig__590.48.01.txt';
const L40S = 'nvidia_gpu_exporter/linux-x86_64__nvidia-l40s__595.80.txt';
const MASKED = 'GPU-00000000-0000-0000-0000-000000000000';

describe('parseNvidiaSmiCsv on the real --query-gpu captures', () => {
  it('finds every CSV capture there is (3 captures × idle and load)', () => {
    expect(EXPORTER.sort()).toEqual([H100, H100_MIG, L40S].sort());
    for (const file of EXPORTER) for (const phase of ['idle', 'load']) expect(section(file, phase, '--query-gpu=')).toMatch(/^timestamp, driver_version, /);
  });

  it('reads an H100 (driver 590) idle and under load from its 212-field CSV with units', () => {
    const idle = parseNvidiaSmiCsv(section(H100, 'idle', '--query-gpu='));
    expect(idle).toEqual({
      driverVersion: '590.48.01',
      cudaVersion: null,
      devices: [
        {
          index: 0,
          uuid: MASKED,
          model: 'NVIDIA H100 80GB HBM3',
          memoryMiB: 81559,
          details: {
            pciBusId: '00000000:00:09.0',
            driverVersion: '590.48.01',
            cudaVersion: null,
            memoryUsedMiB: 0,
            utilizationPercent: 0,
            temperatureC: 41,
            powerDrawW: 69.85,
            migMode: 'Disabled',
            minorNumber: null,
            processes: 0,
            processList: [],
          },
        },
      ],
    });
    const load = parseNvidiaSmiCsv(section(H100, 'load', '--query-gpu='));
    expect(load.devices[0]?.details).toMatchObject({ memoryUsedMiB: 19818, utilizationPercent: 100, temperatureC: 59, powerDrawW: 631.95 });
  });

  it('reads a card in MIG mode, whose utilisation is [N/A], as one card in MIG mode', () => {
    for (const [phase, used, power] of [['idle', 59, 71.15], ['load', 11125, 433.78]] as const) {
      const parsed = parseNvidiaSmiCsv(section(H100_MIG, phase, '--query-gpu='));
      expect(parsed.devices).toHaveLength(1);
      expect(parsed.devices[0]).toMatchObject({ index: 0, uuid: MASKED, memoryMiB: 81559 });
      expect(parsed.devices[0]?.details).toMatchObject({ migMode: 'Enabled', utilizationPercent: null, memoryUsedMiB: used, powerDrawW: power });
    }
  });

  it('reads an L40S from driver 595, whose field list differs (202 fields, kmd_version, no MIG: [N/A])', () => {
    const idle = parseNvidiaSmiCsv(section(L40S, 'idle', '--query-gpu='));
    expect(idle.driverVersion).toBe('595.80');
    expect(idle.devices).toEqual([
      expect.objectContaining({ index: 0, uuid: MASKED, model: 'NVIDIA L40S', memoryMiB: 46068 }),
    ]);
    expect(idle.devices[0]?.details).toMatchObject({ pciBusId: '00000000:01:00.0', memoryUsedMiB: 0, utilizationPercent: 100, temperatureC: 63, powerDrawW: 144.97, migMode: null });
    expect(parseNvidiaSmiCsv(section(L40S, 'load', '--query-gpu=')).devices[0]?.details).toMatchObject({ memoryUsedMiB: 1235, utilizationPercent: 9, powerDrawW: 110.23 });
  });

  it('reads the processes of --query-compute-apps and gives them to their card', () => {
    expect(parseComputeAppsCsv(section(H100, 'idle', '--query-compute-apps='))).toEqual([]);
    const apps = parseComputeAppsCsv(section(H100, 'load', '--query-compute-apps='));
    expect(apps).toEqual([
      { gpuUuid: MASKED, pid: 11327, name: '/root/tools/memhog', usedMemoryMiB: 2566 },
      { gpuUuid: MASKED, pid: 11328, name: '/root/tools/memhog', usedMemoryMiB: 1542 },
      { gpuUuid: MASKED, pid: 11345, name: './gpu_burn', usedMemoryMiB: 15690 },
    ]);
    const [card] = attachComputeApps(parseNvidiaSmiCsv(section(H100, 'load', '--query-gpu=')).devices, apps);
    expect(card?.details).toMatchObject({ processes: 3, processList: apps.map(({ pid, name, usedMemoryMiB }) => ({ pid, name, usedMemoryMiB })) });
    expect(parseComputeAppsCsv(section(L40S, 'load', '--query-compute-apps=')).map((a) => [a.pid, a.name, a.usedMemoryMiB])).toEqual([
      [20037, 'ffmpeg', 538],
      [20038, 'ffmpeg', 681],
    ]);
  });
});

describe('parseNvidiaSmiCsv edge cases (hand-written lines in nvidia-smi’s format)', () => {
  it('reads noheader,nounits with the field list, and every no-value marker as null', () => {
    const fields = ['index', 'uuid', 'name', 'memory.total', 'memory.used', 'utilization.gpu', 'temperature.gpu', 'power.draw'];
    const parsed = parseNvidiaSmiCsv(
      [
        '0, GPU-a, NVIDIA H100 80GB HBM3, 81559, 0, 0, 41, 69.85',
        '1, GPU-b, NVIDIA H100 80GB HBM3, 81559, [N/A], [Not Supported], N/A, [Requested functionality has been deprecated]',
        '2, [N/A], Some GPU, [Unknown Error], [Insufficient Permissions], [GPU is lost], [N/A], [N/A]',
      ].join('\n'),
      { fields },
    );
    expect(parsed.devices.map((d) => [d.index, d.uuid, d.model, d.memoryMiB, d.details?.memoryUsedMiB, d.details?.utilizationPercent, d.details?.temperatureC, d.details?.powerDrawW])).toEqual([
      [0, 'GPU-a', 'NVIDIA H100 80GB HBM3', 81559, 0, 0, 41, 69.85],
      [1, 'GPU-b', 'NVIDIA H100 80GB HBM3', 81559, null, null, null, null],
      [2, 'nvidia-pci-2', 'Some GPU', 0, null, null, null, null],
    ]);
  });

  it('takes fields in any order and under their aliases, and average power where power.draw is gone', () => {
    const parsed = parseNvidiaSmiCsv('gpu_name, memory.total [MiB], gpu_uuid, power.draw [W], power.draw.average [W]\nNVIDIA B200, 183359 MiB, GPU-x, [Requested functionality has been deprecated], 140.50 W\n');
    expect(parsed.devices).toEqual([expect.objectContaining({ index: 0, uuid: 'GPU-x', model: 'NVIDIA B200', memoryMiB: 183359 })]);
    expect(parsed.devices[0]?.details).toMatchObject({ powerDrawW: 140.5, migMode: null, pciBusId: null, driverVersion: null });
  });

  it('gives a comma inside a name to the name', () => {
    const parsed = parseNvidiaSmiCsv('0, GPU-a, Odd, Name, 1024\n', { fields: ['index', 'uuid', 'name', 'memory.total'] });
    expect(parsed.devices[0]).toMatchObject({ model: 'Odd, Name', memoryMiB: 1024 });
  });

  it('refuses what is not its CSV, saying why', () => {
    const fields = ['index', 'uuid', 'name', 'memory.total'];
    expect(() => parseNvidiaSmiCsv('', { fields })).toThrow('nvidia-smi --query-gpu output is empty: expected CSV');
    expect(() => parseNvidiaSmiCsv('0, GPU-a, H100\n', { fields })).toThrow('nvidia-smi --query-gpu output line 1 has 3 values for 4 fields: "0, GPU-a, H100"');
    expect(() => parseNvidiaSmiCsv('index, uuid\n0, GPU-a\n', { fields })).toThrow('nvidia-smi --query-gpu output has the header "index, uuid", not the fields asked for (index, uuid, name, memory.total)');
    expect(() => parseNvidiaSmiCsv('0, GPU-a, H100, 80\n')).toThrow(/has no header line and no field list was given/);
    expect(() => parseNvidiaSmiCsv('index, uuid\n0, GPU-a\n')).toThrow('nvidia-smi --query-gpu output lacks memory.total or any of uuid, pci.bus_id, index (it has index, uuid)');
    expect(() => parseNvidiaSmiCsv('x, GPU-a, H100, 80\n', { fields })).toThrow('nvidia-smi --query-gpu output row 1: index is "x", not a whole number');
    expect(() => parseNvidiaSmiCsv('0, GPU-a, H100, lots\n', { fields })).toThrow('nvidia-smi --query-gpu output row 1: memory.total is "lots", not a size');
    expect(() => parseNvidiaSmiCsv('NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver.\n', { fields })).toThrow(/values for 4 fields/);
    expect(() => parseComputeAppsCsv('gpu_uuid, pid\nGPU-a, abc\n')).toThrow('nvidia-smi --query-compute-apps output row 1: pid is "abc", not a whole number');
  });
});

describe('parseNvidiaSmiList on the real -L captures', () => {
  it('reads a card per line', () => {
    expect(parseNvidiaSmiList(section(H100, 'capabilities', '-L'))).toEqual([{ index: 0, model: 'NVIDIA H100 80GB HBM3', uuid: MASKED, migDevices: [] }]);
    expect(parseNvidiaSmiList(section(L40S, 'capabilities', '-L'))).toEqual([{ index: 0, model: 'NVIDIA L40S', uuid: MASKED, migDevices: [] }]);
  });

  it('reads the MIG devices under a card in MIG mode', () => {
    expect(parseNvidiaSmiList(section(H100_MIG, 'capabilities', '-L'))).toEqual([
      {
        index: 0,
        model: 'NVIDIA H100 80GB HBM3',
        uuid: MASKED,
        migDevices: [
          { profile: '3g.40gb', index: 0, uuid: 'MIG-00000000-0000-0000-0000-000000000000', gpuInstanceId: null, computeInstanceId: null },
          { profile: '2g.20gb', index: 1, uuid: 'MIG-00000001-0000-0000-0000-000000000001', gpuInstanceId: null, computeInstanceId: null },
          { profile: '1g.10gb', index: 2, uuid: 'MIG-00000002-0000-0000-0000-000000000002', gpuInstanceId: null, computeInstanceId: null },
          { profile: '1g.10gb', index: 3, uuid: 'MIG-00000003-0000-0000-0000-000000000003', gpuInstanceId: null, computeInstanceId: null },
        ],
      },
    ]);
  });

  it('reads the older MIG UUIDs (hand-written from NVIDIA’s MIG user guide: MIG-GPU-<uuid>/<gi>/<ci>, drivers before R470) and compute-instance profiles', () => {
    // HAND-WRITTEN in the documented format, not a capture.
    const listed = parseNvidiaSmiList(
      [
        'GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)',
        '  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0)',
        '  MIG 1c.3g.20gb Device 1: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/2/1)',
        'GPU 1: A100-SXM4-40GB (UUID: GPU-00000000-1111-2222-3333-444444444444)',
        '',
      ].join('\n'),
    );
    expect(listed.map((g) => [g.index, g.uuid, g.migDevices.map((m) => [m.profile, m.index, m.gpuInstanceId, m.computeInstanceId])])).toEqual([
      [0, 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77', [['1g.5gb', 0, 7, 0], ['1c.3g.20gb', 1, 2, 1]]],
      [1, 'GPU-00000000-1111-2222-3333-444444444444', []],
    ]);
  });

  it('refuses output without a card line, and a MIG line before any card', () => {
    expect(parseNvidiaSmiList('')).toEqual([]);
    expect(() => parseNvidiaSmiList('No devices were found\n')).toThrow('not nvidia-smi -L output: no "GPU <n>: <name> (UUID: ...)" line; it begins "No devices were found"');
    expect(() => parseNvidiaSmiList('  MIG 1g.5gb Device 0: (UUID: MIG-x)\n')).toThrow(/a MIG device before any GPU line/);
  });
});

describe('MIG devices: UUIDs from -L', () => {
  const a100 = () => parseNvidiaSmiXml(capture(SIMULATED_CAPTURES['a100-mig']!));

  it('puts the -L UUIDs on the MIG devices of -q -x (matched by card and MIG device index)', () => {
    const filled = fillMigUuids(a100().devices, parseNvidiaSmiList(capture('telegraf/a100-sxm4-v12.xml.L')));
    expect(filled.map((d) => [d.index, d.uuid, d.details?.gpuInstanceId, d.details?.migProfile])).toEqual([
      [1, 'MIG-a1000000-0000-4000-8000-000000000003', 3, '1g.20gb'],
      [2, 'MIG-a1000000-0000-4000-8000-000000000004', 4, '1g.20gb'],
      [3, 'MIG-a1000000-0000-4000-8000-000000000005', 5, '1g.20gb'],
      [4, 'MIG-a1000000-0000-4000-8000-000000000006', 6, '1g.20gb'],
    ]);
  });

  it('matches by GPU instance id where -L has one, and leaves devices of another card alone', () => {
    const parent = 'GPU-513536b6-7d19-9063-b049-1e69664bb298';
    // HAND-WRITTEN, the pre-R470 form: the devices listed in another order than -q -x's.
    const old = parseNvidiaSmiList(`GPU 0: A100 (UUID: ${parent})\n  MIG 1g.20gb Device 0: (UUID: MIG-GPU-${parent}/6/0)\n  MIG 1g.20gb Device 1: (UUID: MIG-GPU-${parent}/3/0)\n`);
    const filled = fillMigUuids(a100().devices, old);
    expect(filled.map((d) => d.uuid)).toEqual([`MIG-GPU-${parent}/3/0`, `${parent}/mig-4`, `${parent}/mig-5`, `MIG-GPU-${parent}/6/0`]);
    const other = parseNvidiaSmiList('GPU 0: A100 (UUID: GPU-another-card)\n  MIG 1g.20gb Device 0: (UUID: MIG-x)\n');
    expect(fillMigUuids(a100().devices, other)).toEqual(a100().devices);
  });

  it('turns a CSV card in MIG mode into the MIG devices -L lists, sized from the profile name (under it, to be safe)', () => {
    const report = expandMigFromList(parseNvidiaSmiCsv(section(H100_MIG, 'load', '--query-gpu=')), parseNvidiaSmiList(section(H100_MIG, 'capabilities', '-L')));
    expect(report.devices.map((d) => [d.index, d.uuid, d.model, d.memoryMiB])).toEqual([
      [1, 'MIG-00000000-0000-0000-0000-000000000000', 'NVIDIA H100 80GB HBM3 MIG 3g.40gb', 36864],
      [2, 'MIG-00000001-0000-0000-0000-000000000001', 'NVIDIA H100 80GB HBM3 MIG 2g.20gb', 18432],
      [3, 'MIG-00000002-0000-0000-0000-000000000002', 'NVIDIA H100 80GB HBM3 MIG 1g.10gb', 9216],
      [4, 'MIG-00000003-0000-0000-0000-000000000003', 'NVIDIA H100 80GB HBM3 MIG 1g.10gb', 9216],
    ]);
    // The measured sizes of these instances (the capture's table: 40448, 20096, 9984 MiB) are above the estimate.
    expect(report.devices.map((d) => d.memoryMiB)).toEqual([36864, 18432, 9216, 9216].map((mib, i) => Math.min(mib, [40448, 20096, 9984, 9984][i]!)));
    expect(report.devices[0]?.details).toMatchObject({ migParent: MASKED, gpuIndex: 0, migIndex: 0, migProfile: '3g.40gb', memoryEstimated: true, memoryUsedMiB: null, processList: [] });
  });
});

describe('queryNvidiaSmi falls back to --query-gpu (real processes, the fake nvidia-smi)', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(os.tmpdir(), 'aiplat-nvidia-smi-fallback-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  /** A script in front of the fake nvidia-smi that answers some argument lists itself. */
  async function wrapper(name: string, body: string): Promise<string> {
    const script = join(scratch, name);
    await writeFile(script, `#!/bin/sh\n${body}\nexec "${FAKE_NVIDIA_SMI}" "$@"\n`);
    await chmod(script, 0o755);
    return script;
  }

  /** What a card is in any report, whichever way it was read: what both paths can tell. */
  const essentials = (report: NvidiaSmiReport | null): Record<string, any>[] | undefined =>
    report?.devices.map((d) => ({
      index: d.index,
      uuid: d.uuid,
      model: d.model,
      memoryMiB: d.memoryMiB,
      ...Object.fromEntries(['pciBusId', 'driverVersion', 'memoryUsedMiB', 'utilizationPercent', 'temperatureC', 'powerDrawW', 'migMode', 'processList'].map((k) => [k, d.details?.[k]])),
    }));

  it('reads each sectioned capture (no -q -x there) from its CSV, processes and -L, saying why', async () => {
    for (const file of EXPORTER) {
      for (const phase of ['idle', 'load']) {
        const queried = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(file, { AIPLAT_FAKE_NVIDIA_SMI_PHASE: phase }) });
        expect(queried?.fallbackReason, file).toMatch(new RegExp(`^${FAKE_NVIDIA_SMI.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} -q -x exited with code 6: the fake nvidia-smi's capture .* holds no "nvidia-smi -q -x" output`));
        expect(queried?.warnings).toBeUndefined();
        const parsed = parseNvidiaSmiCsv(section(file, phase, '--query-gpu='));
        const withApps = { ...parsed, devices: attachComputeApps(parsed.devices, parseComputeAppsCsv(section(file, phase, '--query-compute-apps='))) };
        const expected = expandMigFromList(withApps, parseNvidiaSmiList(section(file, 'capabilities', '-L')));
        expect(queried?.devices, `${file} ${phase}`).toEqual(expected.devices);
      }
    }
    const load = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(H100, { AIPLAT_FAKE_NVIDIA_SMI_PHASE: 'load' }) });
    expect(samplesOf(load!)[0]).toMatchObject({ index: 0, memoryUsedMiB: 19818, utilizationPercent: 100, powerW: 631.95, processes: [{ pid: 11327 }, { pid: 11328 }, { pid: 11345 }] });
    const mig = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(H100_MIG) });
    expect(mig?.devices.map((d) => d.uuid)).toEqual([0, 1, 2, 3].map((n) => `MIG-0000000${n}-0000-0000-0000-00000000000${n}`));
  });

  it('reads every -q -x capture the same through the fallback when -q -x fails or is cut off', async () => {
    for (const [name, file] of Object.entries(SIMULATED_CAPTURES)) {
      const viaXml = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(file) });
      expect(viaXml?.fallbackReason).toBeUndefined();
      for (const mode of ['fail', 'truncated']) {
        const viaCsv = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(file, { AIPLAT_FAKE_NVIDIA_SMI_XML: mode }) });
        expect(viaCsv?.fallbackReason, `${name} ${mode}`).toMatch(mode === 'fail' ? /-q -x exited with code 15: Unable to determine the device handle/ : /-q -x printed no usable report: nvidia-smi output is not well-formed XML/);
        expect(viaCsv?.driverVersion).toBe(viaXml?.driverVersion);
        if (name === 'a100-mig') {
          // MIG: the same devices (UUIDs from -L, indexes), sized from the profile name instead of measured.
          expect(viaCsv?.devices.map((d) => [d.index, d.uuid, d.memoryMiB])).toEqual(viaXml?.devices.map((d) => [d.index, d.uuid, Math.floor(20 * 1024 * 0.9)]));
        } else {
          // --query-compute-apps lists compute processes only: the T4's Xorg (type G, 22 MiB) is not there.
          const computeOnly = essentials(viaXml)?.map((d) => ({ ...d, processList: (d.processList as { pid: number }[]).filter((p) => !(name === 't4' && p.pid === 675)) }));
          expect(essentials(viaCsv), `${name} ${mode}`).toEqual(computeOnly);
        }
      }
    }
  });

  it('gives the MIG devices of -q -x their -L UUIDs, and keeps made-up ones with a warning where -L fails', async () => {
    const queried = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(SIMULATED_CAPTURES['a100-mig']!) });
    expect(queried?.devices.map((d) => d.uuid)).toEqual([3, 4, 5, 6].map((gi) => `MIG-a1000000-0000-4000-8000-00000000000${gi}`));
    expect(queried?.warnings).toBeUndefined();
    const noList = await wrapper('no-list', '[ "$1" = "-L" ] && { echo "Failed to initialize NVML: Unknown Error"; exit 255; }');
    const degraded = await queryNvidiaSmi({ binary: noList, env: fakeEnv(SIMULATED_CAPTURES['a100-mig']!) });
    expect(degraded?.devices.map((d) => d.uuid)).toEqual([3, 4, 5, 6].map((gi) => `GPU-513536b6-7d19-9063-b049-1e69664bb298/mig-${gi}`));
    expect(degraded?.warnings).toEqual([`MIG devices keep made-up UUIDs (CUDA_VISIBLE_DEVICES cannot name them): ${noList} -L exited with code 255: Failed to initialize NVML: Unknown Error`]);
    // Not asked for -L: no -L run, no warning.
    expect((await queryNvidiaSmi({ binary: noList, env: fakeEnv(SIMULATED_CAPTURES['a100-mig']!), listMig: false }))?.warnings).toBeUndefined();
  });

  it('asks again without a field the driver does not know, but not without a required one', async () => {
    const old = await wrapper('old-driver', 'case "$*" in *mig.mode.current*) echo \'Field "mig.mode.current" is not a valid field to query.\'; echo; exit 2;; esac');
    const queried = await queryNvidiaSmiCsv({ binary: old, env: fakeEnv('telegraf/tesla-t4.xml') });
    expect(queried?.devices).toEqual([expect.objectContaining({ uuid: 'GPU-d37e67a5-91dd-3774-a5cb-99096249601a', memoryMiB: 15360 })]);
    expect(queried?.devices[0]?.details).toMatchObject({ migMode: null, processList: [{ pid: 5762, name: 'python', usedMemoryMiB: 1005 }] });
    const noUuid = await wrapper('no-uuid', 'case "$*" in *--query-gpu=index,uuid,*) echo \'Field "uuid" is not a valid field to query.\'; exit 2;; esac');
    await expect(queryNvidiaSmiCsv({ binary: noUuid, env: fakeEnv('telegraf/tesla-t4.xml') })).rejects.toThrow(`${noUuid} --query-gpu exited with code 2: Field "uuid" is not a valid field to query.`);
    // The field list the fallback asks for, as the fake answers it.
    expect(QUERY_GPU_FIELDS).toContain('mig.mode.current');
  });

  it('lists no processes, with a warning, where --query-compute-apps fails', async () => {
    const noApps = await wrapper('no-apps', 'case "$1" in --query-compute-apps=*) echo "Insufficient Permissions"; exit 4;; esac');
    const queried = await queryNvidiaSmiCsv({ binary: noApps, env: fakeEnv('telegraf/tesla-t4.xml') });
    expect(queried?.devices[0]?.details).toMatchObject({ processes: 0, processList: [] });
    expect(queried?.warnings).toEqual([`processes on the cards are unknown (none listed): ${noApps} --query-compute-apps exited with code 4: Insufficient Permissions`]);
  });

  it('rejects with both reasons when the fallback fails too, and falls back on nothing when told not to', async () => {
    const broken = queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv('gpud/nvidia-smi.550.90.07.out.0.valid') });
    await expect(broken).rejects.toThrow(`${FAKE_NVIDIA_SMI} -q -x printed no usable report: nvidia-smi output is not well-formed XML`);
    await expect(broken).rejects.toThrow(`; the --query-gpu fallback failed too: ${FAKE_NVIDIA_SMI} --query-gpu exited with code 6: the fake nvidia-smi's capture gpud/nvidia-smi.550.90.07.out.0.valid is neither -q -x XML nor a sectioned capture`);
    await expect(queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(H100), fallback: false })).rejects.toThrow(/^\S+ -q -x exited with code 6: [^;]*$/);
  });

  it('does not ask again where -q -x hangs: one timeout, not two', async () => {
    const hangs = join(scratch, 'hangs');
    await writeFile(hangs, `#!/bin/sh\necho "$*" >> "${join(scratch, 'hangs.calls')}"\nexec sleep 30\n`);
    await chmod(hangs, 0o755);
    await expect(queryNvidiaSmi({ binary: hangs, timeoutMs: 200 })).rejects.toThrow(new RegExp(`^${hangs.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} -q -x timed out after 200 ms$`));
    expect(readFileSync(join(scratch, 'hangs.calls'), 'utf8')).toBe('-q -x\n');
  });

  it('serves noheader,nounits as the GPU check asks it, from XML and from a sectioned capture', async () => {
    const { execFileSync } = await import('node:child_process');
    const ask = ['--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw', '--format=csv,noheader,nounits'];
    const fields = ask[0]!.slice('--query-gpu='.length).split(',');
    const fromXml = execFileSync(FAKE_NVIDIA_SMI, ask, { env: fakeEnv('datakit/gtx-8card.xml'), encoding: 'utf8' });
    expect(fromXml.split('\n')[0]).toBe('0, GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e, Tesla V100S-PCIE-32GB, 32510, 31689, 97, 66, 232.80');
    expect(essentials(parseNvidiaSmiCsv(fromXml, { fields }))?.map((d) => [d.index, d.uuid, d.memoryMiB, d.memoryUsedMiB, d.powerDrawW])).toEqual(
      essentials(parseNvidiaSmiXml(capture('datakit/gtx-8card.xml')))?.map((d) => [d.index, d.uuid, d.memoryMiB, d.memoryUsedMiB, d.powerDrawW]),
    );
    const fromSections = execFileSync(FAKE_NVIDIA_SMI, ask, { env: fakeEnv(L40S, { AIPLAT_FAKE_NVIDIA_SMI_PHASE: 'load' }), encoding: 'utf8' });
    expect(fromSections).toBe(`0, ${MASKED}, NVIDIA L40S, 46068, 1235, 9, 54, 110.23\n`);
  });
});
