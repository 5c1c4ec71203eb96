/**
 * Reads NVIDIA GPUs from `nvidia-smi -q -x`, the one interface every NVIDIA driver since the
 * early 2010s ships. The XML output is parsed rather than the CSV of `--query-gpu` because its
 * field list is stable across drivers, while `--query-gpu` fields come and go (590+ answers some
 * with `[Requested functionality has been deprecated]`).
 *
 * The schema changed twice in the drivers we meet (see core/simulated/nvidia-smi/captures/SOURCES.md):
 * v11 (≤ 516) `power_readings/power_draw`, v12 (525–570) `gpu_power_readings/power_draw`,
 * v13 (590+) only `gpu_power_readings/average_power_draw` and `instant_power_draw`.
 */
import { execFile } from 'node:child_process';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { DeviceProcess, DeviceSample, DiscoveredDevice } from '../workloads.js';

export interface NvidiaSmiReport {
  driverVersion: string | null;
  cudaVersion: string | null;
  /** One per card, or one per MIG instance for cards in MIG mode that have instances. */
  devices: DiscoveredDevice[];
}

/** What a `<gpu>` element looks like once parsed: nested objects and strings, nothing typed. */
type XmlNode = Record<string, unknown>;

/**
 * What nvidia-smi prints where it has no value. `N/A` is the documented one; the others appear
 * for fields a driver or a board does not support, and mean "unknown" to us just the same.
 */
const NO_VALUE = new Set(['', 'N/A', '[N/A]', 'Not Supported', '[Not Supported]', 'Unknown Error', 'Insufficient Permissions', 'Requested functionality has been deprecated']);

const parser = new XMLParser({
  // Every value stays a string: "0000" bus numbers and "12.2" versions must not become numbers.
  parseTagValue: false,
  ignoreAttributes: true,
  trimValues: true,
  // The output declares no entities; refusing them keeps a hostile file from expanding.
  processEntities: false,
});

/** Follows `path` through nested elements; undefined as soon as a step is missing. */
function at(node: unknown, ...path: string[]): unknown {
  let current = node;
  for (const key of path) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    current = (current as XmlNode)[key];
  }
  return current;
}

/** An element's text, or null for a missing element, an element with children, or a no-value marker. */
function text(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const trimmed = value.trim();
  return NO_VALUE.has(trimmed) ? null : trimmed;
}

/** A repeated child element as a list: the parser gives one element as an object and `None`/empty as a string. */
function list(value: unknown): XmlNode[] {
  if (Array.isArray(value)) return value.filter((v): v is XmlNode => v !== null && typeof v === 'object');
  if (value !== null && typeof value === 'object') return [value as XmlNode];
  return [];
}

const QUANTITY = /^(-?\d+(?:\.\d+)?)\s*([A-Za-z%/]*)$/;

/** The number in a value that carries its unit inside (`68.32 W`, `0 %`, `27 C`); null when there is none. */
function quantity(value: unknown): number | null {
  const match = QUANTITY.exec(text(value) ?? '');
  return match ? Number(match[1]) : null;
}

const MIB_PER_UNIT: Record<string, number> = { KiB: 1 / 1024, MiB: 1, GiB: 1024, TiB: 1024 * 1024 };

/** A memory size in whole MiB. nvidia-smi prints MiB throughout; other binary units are converted to be safe. */
function mebibytes(value: unknown): number | null {
  const match = QUANTITY.exec(text(value) ?? '');
  if (!match) return null;
  const factor = MIB_PER_UNIT[match[2] || 'MiB'];
  return factor === undefined ? null : Math.floor(Number(match[1]) * factor);
}

function integer(value: unknown): number | null {
  const raw = text(value);
  return raw !== null && /^\d+$/.test(raw) ? Number(raw) : null;
}

function migMode(gpu: XmlNode): 'Enabled' | 'Disabled' | null {
  const mode = text(at(gpu, 'mig_mode', 'current_mig'));
  return mode === 'Enabled' || mode === 'Disabled' ? mode : null;
}

/** Board power: v11 `power_readings`, v12 `gpu_power_readings/power_draw`, v13 only the average (or instant) reading. */
function powerDraw(gpu: XmlNode): number | null {
  const readings = at(gpu, 'gpu_power_readings') ?? at(gpu, 'power_readings');
  return quantity(at(readings, 'power_draw')) ?? quantity(at(readings, 'average_power_draw')) ?? quantity(at(readings, 'instant_power_draw'));
}

/**
 * Parses the output of `nvidia-smi -q -x`. Throws when the text is not well-formed XML or is
 * not an nvidia-smi report, so that a broken driver or a wrong binary is never read as "no GPUs".
 *
 * Device indexes: a whole card gets its position in the report, which is nvidia-smi's own index
 * (the order of `nvidia-smi -L` and `-i N`). `<minor_number>` is deliberately not used: it is the
 * `/dev/nvidiaN` node, which need not follow that order (the dual A5000 capture has them reversed),
 * and it is kept in `details.minorNumber`. MIG instances are numbered after the last card so that
 * indexes stay unique per report without moving any whole card off its nvidia-smi index.
 */
export function parseNvidiaSmiXml(xml: string): NvidiaSmiReport {
  if (xml.trim() === '') throw new Error('nvidia-smi output is empty: expected the XML report of nvidia-smi -q -x');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    const where = [line !== undefined ? `line ${line}` : null, col !== undefined ? `column ${col}` : null].filter(Boolean).join(', ');
    throw new Error(`nvidia-smi output is not well-formed XML${where ? ` (${where})` : ''}: ${msg}`);
  }
  const document: unknown = parser.parse(xml);
  const log = at(document, 'nvidia_smi_log');
  if (log === undefined) {
    const roots = document && typeof document === 'object' ? Object.keys(document).filter((key) => !key.startsWith('?')) : [];
    throw new Error(`not an nvidia-smi -q -x report: expected the root element <nvidia_smi_log>, found ${roots.length ? roots.map((r) => `<${r}>`).join(', ') : 'none'}`);
  }

  const driverVersion = text(at(log, 'driver_version'));
  const cudaVersion = text(at(log, 'cuda_version'));
  const gpus = list(at(log, 'gpu'));
  const devices: DiscoveredDevice[] = [];
  let nextMigIndex = gpus.length;

  gpus.forEach((gpu, position) => {
    const uuid = text(at(gpu, 'uuid'));
    const model = text(at(gpu, 'product_name')) ?? 'Unknown NVIDIA GPU';
    const pciBusId = text(at(gpu, 'pci', 'pci_bus_id'));
    const processes = list(at(gpu, 'processes', 'process_info'));
    const mode = migMode(gpu);
    // A card without a UUID is not something work can be pinned to; the bus id is the next stable name.
    const cardUuid = uuid ?? `nvidia-pci-${pciBusId ?? position}`;
    const shared = {
      pciBusId,
      driverVersion,
      cudaVersion,
      temperatureC: quantity(at(gpu, 'temperature', 'gpu_temp')),
      powerDrawW: powerDraw(gpu),
      migMode: mode,
      minorNumber: integer(at(gpu, 'minor_number')),
    };

    const migDevices = mode === 'Enabled' ? list(at(gpu, 'mig_devices', 'mig_device')) : [];
    if (migDevices.length === 0) {
      devices.push({
        index: position,
        uuid: cardUuid,
        model,
        memoryMiB: mebibytes(at(gpu, 'fb_memory_usage', 'total')) ?? 0,
        details: {
          ...shared,
          memoryUsedMiB: mebibytes(at(gpu, 'fb_memory_usage', 'used')),
          utilizationPercent: quantity(at(gpu, 'utilization', 'gpu_util')),
          processes: processes.length,
          processList: processes.map(processOf),
        },
      });
      return;
    }

    for (const mig of migDevices) {
      const gi = integer(at(mig, 'gpu_instance_id'));
      const instance = gi ?? integer(at(mig, 'index')) ?? devices.length;
      devices.push({
        index: nextMigIndex++,
        // No driver so far prints a MIG UUID in the XML (only `nvidia-smi -L` does); keep one if it appears.
        uuid: text(at(mig, 'uuid')) ?? `${cardUuid}/mig-${instance}`,
        model: `${model} MIG ${instance}`,
        memoryMiB: mebibytes(at(mig, 'fb_memory_usage', 'total')) ?? 0,
        details: {
          ...shared,
          memoryUsedMiB: mebibytes(at(mig, 'fb_memory_usage', 'used')),
          // nvidia-smi does not measure utilisation per MIG instance; temperature and power are the card's.
          utilizationPercent: null,
          processes: processes.filter((p) => gi !== null && integer(at(p, 'gpu_instance_id')) === gi).length,
          processList: processes.filter((p) => gi !== null && integer(at(p, 'gpu_instance_id')) === gi).map(processOf),
          migParent: cardUuid,
          gpuIndex: position,
          migIndex: integer(at(mig, 'index')),
          gpuInstanceId: gi,
          computeInstanceId: integer(at(mig, 'compute_instance_id')),
          multiprocessors: integer(at(mig, 'device_attributes', 'shared', 'multiprocessor_count')),
        },
      });
    }
  });

  return { driverVersion, cudaVersion, devices };
}

/** A `<process_info>`: its pid, name and the card memory it uses. */
function processOf(p: unknown): DeviceProcess {
  return { pid: integer(at(p, 'pid')) ?? 0, name: text(at(p, 'process_name')), usedMemoryMiB: mebibytes(at(p, 'used_memory')) };
}

/** The live state of each device of a report, in the shape every vendor's provider gives. */
export function samplesOf(report: NvidiaSmiReport): DeviceSample[] {
  return report.devices.map((d) => {
    const details = (d.details ?? {}) as Record<string, unknown>;
    const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);
    return {
      index: d.index,
      utilizationPercent: num(details.utilizationPercent),
      memoryUsedMiB: num(details.memoryUsedMiB),
      memoryTotalMiB: d.memoryMiB,
      temperatureC: num(details.temperatureC),
      powerW: num(details.powerDrawW),
      processes: Array.isArray(details.processList) ? (details.processList as DeviceProcess[]) : [],
    };
  });
}

export interface QueryNvidiaSmiOptions {
  /** The executable to run; `nvidia-smi` on the PATH by default. */
  binary?: string;
  env?: NodeJS.ProcessEnv;
  /** nvidia-smi hangs when the driver is wedged; give up after this long (10 s by default). */
  timeoutMs?: number;
}

/** The first non-empty line of a stream, to quote in an error without flooding it. */
function firstLine(output: string): string | null {
  return output.split(/\r?\n/).map((line) => line.trim()).find((line) => line.length > 0) ?? null;
}

function describeFailure(error: Error & { code?: unknown; killed?: boolean; signal?: NodeJS.Signals | null }, timeoutMs: number): string {
  if (error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return 'printed more than 64 MiB';
  if (typeof error.code === 'number') return `exited with code ${error.code}`;
  if (error.killed) return `timed out after ${timeoutMs} ms`;
  if (error.signal) return `was killed by ${error.signal}`;
  return `could not be run (${typeof error.code === 'string' ? error.code : error.message})`;
}

/**
 * Runs `nvidia-smi -q -x` (no shell) and parses its report. Resolves null when the binary does
 * not exist, which is how a machine without the NVIDIA driver looks. Rejects when it exists but
 * fails, times out or prints something that is not a report: a machine whose driver is broken
 * must not look like a machine without GPUs.
 */
export function queryNvidiaSmi(options: QueryNvidiaSmiOptions = {}): Promise<NvidiaSmiReport | null> {
  const binary = options.binary ?? 'nvidia-smi';
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      ['-q', '-x'],
      { env: options.env ?? process.env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', windowsHide: true },
      (error, stdout, stderr) => {
        if (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return resolve(null);
          // nvidia-smi itself writes "NVIDIA-SMI has failed because..." to stdout, so fall back to it.
          const said = firstLine(stderr) ?? firstLine(stdout);
          const how = describeFailure(error, timeoutMs);
          return reject(new Error(`${binary} -q -x ${how}${said ? `: ${said}` : ''}`));
        }
        try {
          resolve(parseNvidiaSmiXml(stdout));
        } catch (parseError) {
          const said = firstLine(stderr);
          reject(new Error(`${binary} -q -x printed no usable report: ${(parseError as Error).message}${said ? ` (stderr: ${said})` : ''}`));
        }
      },
    );
  });
}
