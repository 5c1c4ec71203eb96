import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNvidiaSmiXml, queryNvidiaSmi } from '@aiplat/plugin-sdk/devices';
import { FAKE_NVIDIA_SMI, SIMULATED_CAPTURES_DIR } from './simulated.js';

const capture = (path: string): string => readFileSync(resolve(SIMULATED_CAPTURES_DIR, path), 'utf8');
const fakeEnv = (path: string): NodeJS.ProcessEnv => ({ ...process.env, AIPLAT_FAKE_NVIDIA_SMI_CAPTURE: path });

/** A minimal report around the given `<gpu>` bodies, for the cases no capture covers. */
const report = (...gpus: string[]): string =>
  `<?xml version="1.0" ?><nvidia_smi_log><driver_version>550.90.07</driver_version><cuda_version>N/A</cuda_version>${gpus.map((g) => `<gpu id="x">${g}</gpu>`).join('')}</nvidia_smi_log>`;

describe('parseNvidiaSmiXml on real captures', () => {
  it('reads 8 V100S cards from a driver 460 (schema v11) report', () => {
    const parsed = parseNvidiaSmiXml(capture('datakit/gtx-8card.xml'));
    expect(parsed.driverVersion).toBe('460.73.01');
    expect(parsed.cudaVersion).toBe('11.2');
    expect(parsed.devices).toHaveLength(8);
    expect(parsed.devices.map((d) => d.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(parsed.devices.map((d) => d.uuid)).size).toBe(8);
    for (const device of parsed.devices) {
      expect(device.model).toBe('Tesla V100S-PCIE-32GB');
      expect(device.memoryMiB).toBe(32510);
      // One running process per card; the 69 accounted (finished) processes are not counted.
      expect(device.details?.processes).toBe(1);
    }
    expect(parsed.devices[0]).toEqual({
      index: 0,
      uuid: 'GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e',
      model: 'Tesla V100S-PCIE-32GB',
      memoryMiB: 32510,
      details: {
        pciBusId: '00000000:00:0D.0',
        driverVersion: '460.73.01',
        cudaVersion: '11.2',
        memoryUsedMiB: 31689,
        utilizationPercent: 97,
        temperatureC: 66,
        powerDrawW: 232.8,
        migMode: null,
        minorNumber: 0,
        processes: 1,
        processList: [{ pid: 37305, name: 'python', usedMemoryMiB: 31683 }],
      },
    });
    expect(parsed.devices[7]?.uuid).toBe('GPU-1d955959-c95b-4f40-2cac-100d3006ffe2');
    expect(parsed.devices[7]?.details?.pciBusId).toBe('00000000:00:14.0');
  });

  it('reads a Tesla T4 (driver 515, schema v11) with its two processes', () => {
    const parsed = parseNvidiaSmiXml(capture('telegraf/tesla-t4.xml'));
    expect(parsed).toEqual({
      driverVersion: '515.105.01',
      cudaVersion: '11.7',
      devices: [
        {
          index: 0,
          uuid: 'GPU-d37e67a5-91dd-3774-a5cb-99096249601a',
          model: 'Tesla T4',
          memoryMiB: 15360,
          details: {
            pciBusId: '00000000:00:1E.0',
            driverVersion: '515.105.01',
            cudaVersion: '11.7',
            memoryUsedMiB: 1032,
            utilizationPercent: 0,
            temperatureC: 40,
            powerDrawW: 26.78,
            // The T4 has no MIG: current_mig is N/A.
            migMode: null,
            minorNumber: 0,
            processes: 2,
            processList: [
              { pid: 675, name: '/usr/lib/xorg/Xorg', usedMemoryMiB: 22 },
              { pid: 5762, name: 'python', usedMemoryMiB: 1005 },
            ],
          },
        },
      ],
    });
  });

  it('turns an A100 in MIG mode (driver 535, schema v12) into its 4 MIG instances', () => {
    const parsed = parseNvidiaSmiXml(capture('telegraf/a100-sxm4-v12.xml'));
    const parent = 'GPU-513536b6-7d19-9063-b049-1e69664bb298';
    expect(parsed.driverVersion).toBe('535.54.03');
    expect(parsed.cudaVersion).toBe('12.2');
    // The capture was trimmed to one <gpu> (attached_gpus still says 4): the card is replaced by its instances.
    expect(parsed.devices).toHaveLength(4);
    expect(parsed.devices.map((d) => d.uuid)).toEqual([3, 4, 5, 6].map((gi) => `${parent}/mig-${gi}`));
    expect(parsed.devices.map((d) => d.model)).toEqual([3, 4, 5, 6].map((gi) => `NVIDIA A100-SXM4-80GB MIG ${gi}`));
    expect(parsed.devices.map((d) => d.memoryMiB)).toEqual([19968, 19968, 19968, 19968]);
    // MIG instances are numbered after the last card, so they never take a whole card's nvidia-smi index.
    expect(parsed.devices.map((d) => d.index)).toEqual([1, 2, 3, 4]);
    expect(parsed.devices[0]?.details).toEqual({
      pciBusId: '00000000:01:00.0',
      driverVersion: '535.54.03',
      cudaVersion: '12.2',
      memoryUsedMiB: 12,
      utilizationPercent: null,
      temperatureC: 27,
      powerDrawW: 67.03,
      migMode: 'Enabled',
      minorNumber: 1,
      processes: 0,
      processList: [],
      migParent: parent,
      gpuIndex: 0,
      migIndex: 0,
      gpuInstanceId: 3,
      computeInstanceId: 0,
      multiprocessors: 14,
    });
    expect(parsed.devices.map((d) => d.details?.migIndex)).toEqual([0, 1, 2, 3]);
    expect(parsed.devices.every((d) => d.details?.migParent === parent)).toBe(true);
  });

  it('reads two RTX A5000 from a driver 590 (schema v13) report, where only average/instant power exist', () => {
    const parsed = parseNvidiaSmiXml(capture('telegraf/dual_a5000-v13.xml'));
    expect(parsed.driverVersion).toBe('590.44.01');
    expect(parsed.cudaVersion).toBe('13.1');
    expect(parsed.devices.map((d) => [d.index, d.uuid, d.model, d.memoryMiB])).toEqual([
      [0, 'GPU-12345678-aaaa-bbbb-cccc-0123456789ab', 'NVIDIA RTX A5000', 24564],
      [1, 'GPU-12345678-aaaa-bbbb-cccc-0123456789cd', 'NVIDIA RTX A5000', 24564],
    ]);
    // average_power_draw (6.41 W / 13.60 W), not instant_power_draw (6.52 W / 13.59 W).
    expect(parsed.devices.map((d) => d.details?.powerDrawW)).toEqual([6.41, 13.6]);
    expect(parsed.devices.map((d) => d.details?.memoryUsedMiB)).toEqual([22437, 17253]);
    expect(parsed.devices.map((d) => d.details?.temperatureC)).toEqual([13, 15]);
    expect(parsed.devices.map((d) => d.details?.processes)).toEqual([1, 1]);
    expect(parsed.devices.map((d) => d.details?.pciBusId)).toEqual(['00000000:81:00.0', '00000000:C1:00.0']);
    // /dev/nvidia1 is the first card in nvidia-smi's order: the minor number is not the index.
    expect(parsed.devices.map((d) => d.details?.minorNumber)).toEqual([1, 0]);
  });

  it('refuses the plain-table and text captures, which are not -q -x output', () => {
    for (const file of ['gpud/nvidia-smi.550.90.07.out.0.valid', 'nvidia-htop/FAKE_STDIN', 'nvidia_gpu_exporter/linux-x86_64__nvidia-l40s__595.80.txt']) {
      expect(() => parseNvidiaSmiXml(capture(file)), file).toThrow(/not well-formed XML|not an nvidia-smi -q -x report/);
    }
  });
});

describe('parseNvidiaSmiXml edge cases', () => {
  it('turns N/A into null and converts units', () => {
    const parsed = parseNvidiaSmiXml(
      report(
        '<product_name>Some GPU</product_name><uuid>GPU-1</uuid><minor_number>N/A</minor_number>' +
          '<fb_memory_usage><total>80 GiB</total><used>N/A</used></fb_memory_usage><utilization><gpu_util>N/A</gpu_util></utilization>' +
          '<temperature><gpu_temp>N/A</gpu_temp></temperature><power_readings><power_draw>[N/A]</power_draw></power_readings>' +
          '<mig_mode><current_mig>Disabled</current_mig></mig_mode><mig_devices>None</mig_devices><processes />',
      ),
    );
    expect(parsed.cudaVersion).toBeNull();
    expect(parsed.devices).toEqual([
      {
        index: 0,
        uuid: 'GPU-1',
        model: 'Some GPU',
        memoryMiB: 81920,
        details: {
          pciBusId: null,
          driverVersion: '550.90.07',
          cudaVersion: null,
          memoryUsedMiB: null,
          utilizationPercent: null,
          temperatureC: null,
          powerDrawW: null,
          migMode: 'Disabled',
          minorNumber: null,
          processes: 0,
          processList: [],
        },
      },
    ]);
  });

  it('keeps a card in MIG mode without instances, uses a MIG UUID when one is printed, and keeps indexes unique', () => {
    const mig = (gi: number, uuid = '') =>
      `<mig_device><index>${gi - 1}</index><gpu_instance_id>${gi}</gpu_instance_id>${uuid ? `<uuid>${uuid}</uuid>` : ''}<fb_memory_usage><total>10 MiB</total></fb_memory_usage></mig_device>`;
    const card = (uuid: string, migBody: string, mode = 'Enabled') =>
      `<product_name>H</product_name><uuid>${uuid}</uuid><mig_mode><current_mig>${mode}</current_mig></mig_mode><mig_devices>${migBody}</mig_devices><fb_memory_usage><total>80 MiB</total></fb_memory_usage>` +
      `<processes><process_info><gpu_instance_id>2</gpu_instance_id><pid>1</pid></process_info><process_info><gpu_instance_id>2</gpu_instance_id><pid>2</pid></process_info></processes>`;
    const parsed = parseNvidiaSmiXml(report(card('GPU-a', `${mig(1, 'MIG-one')}${mig(2)}`), card('GPU-b', 'None'), card('GPU-c', 'None', 'Disabled')));
    expect(parsed.devices.map((d) => [d.index, d.uuid, d.model, d.memoryMiB, d.details?.processes])).toEqual([
      [3, 'MIG-one', 'H MIG 1', 10, 0],
      [4, 'GPU-a/mig-2', 'H MIG 2', 10, 2],
      [1, 'GPU-b', 'H', 80, 2],
      [2, 'GPU-c', 'H', 80, 2],
    ]);
  });

  it('reports a machine with no cards as an empty list', () => {
    expect(parseNvidiaSmiXml(report()).devices).toEqual([]);
  });

  it('explains malformed XML with its position', () => {
    expect(() => parseNvidiaSmiXml('<nvidia_smi_log><gpu><uuid>GPU-1</gpu></nvidia_smi_log>')).toThrow(/^nvidia-smi output is not well-formed XML \(line 1, column \d+\): /);
    expect(() => parseNvidiaSmiXml(capture('telegraf/tesla-t4.xml').slice(0, 2000))).toThrow(/not well-formed XML/);
    expect(() => parseNvidiaSmiXml('  \n')).toThrow('nvidia-smi output is empty: expected the XML report of nvidia-smi -q -x');
    expect(() => parseNvidiaSmiXml('NVIDIA-SMI has failed')).toThrow('nvidia-smi output is not well-formed XML (line 1, column 1): ');
  });

  it('refuses XML that is not an nvidia-smi report, naming what it found', () => {
    expect(() => parseNvidiaSmiXml('<?xml version="1.0"?><rss><channel/></rss>')).toThrow('not an nvidia-smi -q -x report: expected the root element <nvidia_smi_log>, found <rss>');
  });
});

describe('queryNvidiaSmi (real processes)', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(os.tmpdir(), 'aiplat-nvidia-smi-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs the fake binary and parses what it replays, exactly as parsing the file', async () => {
    const queried = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv('telegraf/dual_a5000-v13.xml') });
    expect(queried).toEqual(parseNvidiaSmiXml(capture('telegraf/dual_a5000-v13.xml')));
  });

  it('takes an absolute capture path too', async () => {
    const queried = await queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv(resolve(SIMULATED_CAPTURES_DIR, 'datakit/gtx-8card.xml')) });
    expect(queried?.devices).toHaveLength(8);
  });

  it('answers null where there is no nvidia-smi (no NVIDIA driver)', async () => {
    await expect(queryNvidiaSmi({ binary: join(scratch, 'no-such-nvidia-smi') })).resolves.toBeNull();
    await expect(queryNvidiaSmi({ binary: 'aiplat-no-such-nvidia-smi-on-path' })).resolves.toBeNull();
  });

  it('rejects when nvidia-smi fails, quoting the binary, the exit code and its message', async () => {
    const failure = queryNvidiaSmi({ binary: FAKE_NVIDIA_SMI, env: fakeEnv('no-such-capture.xml') });
    await expect(failure).rejects.toThrow(`${FAKE_NVIDIA_SMI} -q -x exited with code 9: NVIDIA-SMI has failed because the fake nvidia-smi cannot read its capture`);
    await expect(failure).rejects.toThrow(/AIPLAT_FAKE_NVIDIA_SMI_CAPTURE=no-such-capture\.xml/);
  });

  it('quotes stdout when the failure is printed there, as the real nvidia-smi does', async () => {
    const script = join(scratch, 'driver-gone');
    await writeFile(script, "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n");
    await chmod(script, 0o755);
    await expect(queryNvidiaSmi({ binary: script })).rejects.toThrow(`${script} -q -x exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.`);
  });

  it('rejects output that is not a report', async () => {
    await expect(queryNvidiaSmi({ binary: '/bin/echo' })).rejects.toThrow(/^\/bin\/echo -q -x printed no usable report: /);
  });

  it('gives up on an nvidia-smi that hangs', async () => {
    const script = join(scratch, 'hangs');
    await writeFile(script, '#!/bin/sh\nexec sleep 30\n');
    await chmod(script, 0o755);
    await expect(queryNvidiaSmi({ binary: script, timeoutMs: 200 })).rejects.toThrow(`${script} -q -x timed out after 200 ms`);
  });
});
