/**
 * Reads NVIDIA GPUs from `nvidia-smi -q -x`, the one interface every NVIDIA driver since the
 * early 2010s ships. The XML output is read first rather than the CSV of `--query-gpu` because its
 * field list is stable across drivers, while `--query-gpu` fields come and go (590+ answers some
 * with `[Requested functionality has been deprecated]`). Where `-q -x` fails or prints no usable
 * XML (some containers and drivers), `queryNvidiaSmi` falls back to `--query-gpu`
 * (nvidia-smi-csv.ts); MIG devices get their UUIDs from `nvidia-smi -L` (nvidia-smi-list.ts).
 *
 * The schema changed twice in the drivers we meet (see core/simulated/nvidia-smi/captures/SOURCES.md):
 * v11 (≤ 516) `power_readings/power_draw`, v12 (525–570) `gpu_power_readings/power_draw`,
 * v13 (590+) only `gpu_power_readings/average_power_draw` and `instant_power_draw`.
 */
import { execFile } from 'node:child_process';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { DeviceProcess, DeviceSample, DiscoveredDevice } from '../workloads.js';
import { attachComputeApps, expandMigFromList, parseComputeAppsCsv, parseNvidiaSmiCsv, QUERY_COMPUTE_APPS_FIELDS, QUERY_GPU_FIELDS, REQUIRED_QUERY_GPU_FIELDS } from './nvidia-smi-csv.js';
import { fillMigUuids, isSynthesizedMigUuid, parseNvidiaSmiList } from './nvidia-smi-list.js';
import { integer, mebibytes, migModeOf, quantity, valueText as text } from './values.js';

export interface NvidiaSmiReport {
  driverVersion: string | null;
  cudaVersion: string | null;
  /** One per card, or one per MIG instance for cards in MIG mode that have instances. */
  devices: DiscoveredDevice[];
  /** Set by `queryNvidiaSmi` when it read `--query-gpu` instead: why `-q -x` could not be used. */
  fallbackReason?: string;
  /** Set by `queryNvidiaSmi` when a secondary query failed (`-L`, `--query-compute-apps`): what is missing and why. */
  warnings?: string[];
}

/** What a `<gpu>` element looks like once parsed: nested objects and strings, nothing typed. */
type XmlNode = Record<string, unknown>;

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

/** A repeated child element as a list: the parser gives one element as an object and `None`/empty as a string. */
function list(value: unknown): XmlNode[] {
  if (Array.isArray(value)) return value.filter((v): v is XmlNode => v !== null && typeof v === 'object');
  if (value !== null && typeof value === 'object') return [value as XmlNode];
  return [];
}

function migMode(gpu: XmlNode): 'Enabled' | 'Disabled' | null {
  return migModeOf(at(gpu, 'mig_mode', 'current_mig'));
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
  /** nvidia-smi hangs when the driver is wedged; give up after this long (10 s by default), per run. */
  timeoutMs?: number;
  /** Read `--query-gpu` where `-q -x` fails or prints no usable XML (true by default). */
  fallback?: boolean;
  /** Run `nvidia-smi -L` for the UUIDs of MIG devices (true by default; only where there are MIG devices). */
  listMig?: boolean;
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

/** Why a run of nvidia-smi gave no output to read. */
class NvidiaSmiRunError extends Error {
  constructor(
    message: string,
    readonly reason: 'missing' | 'timeout' | 'failed',
  ) {
    super(message);
  }
}

/** Runs nvidia-smi once (no shell); `label` names the run in errors (`-q -x`, `--query-gpu`). */
function runNvidiaSmi(args: string[], label: string, options: QueryNvidiaSmiOptions): Promise<{ stdout: string; stderr: string }> {
  const binary = options.binary ?? 'nvidia-smi';
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      args,
      { env: options.env ?? process.env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', windowsHide: true },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return reject(new NvidiaSmiRunError(`${binary} was not found`, 'missing'));
        // nvidia-smi itself writes "NVIDIA-SMI has failed because..." to stdout, so fall back to it.
        const said = firstLine(stderr) ?? firstLine(stdout);
        const how = describeFailure(error, timeoutMs);
        const timedOut = (error as { killed?: boolean }).killed === true && typeof code !== 'number';
        reject(new NvidiaSmiRunError(`${binary} ${label} ${how}${said ? `: ${said}` : ''}`, timedOut ? 'timeout' : 'failed'));
      },
    );
  });
}

/**
 * Runs `nvidia-smi -q -x` (no shell) and parses its report. Resolves null when the binary does
 * not exist, which is how a machine without the NVIDIA driver looks. Rejects when it exists but
 * fails, times out or prints something that is not a report: a machine whose driver is broken
 * must not look like a machine without GPUs.
 *
 * Where `-q -x` fails (but does not hang) or prints no usable XML, the same cards are read from
 * `--query-gpu` instead (`queryNvidiaSmiCsv`; `fallbackReason` then says why); only when that fails
 * too does it reject, with both reasons. MIG devices, which `-q -x` prints without a UUID, get
 * theirs from `nvidia-smi -L` (left made-up, with a `warnings` entry, where `-L` fails).
 */
export async function queryNvidiaSmi(options: QueryNvidiaSmiOptions = {}): Promise<NvidiaSmiReport | null> {
  const binary = options.binary ?? 'nvidia-smi';
  let problem: string;
  try {
    const { stdout, stderr } = await runNvidiaSmi(['-q', '-x'], '-q -x', options);
    try {
      const report = parseNvidiaSmiXml(stdout);
      return options.listMig === false ? report : await withMigUuids(report, options);
    } catch (parseError) {
      const said = firstLine(stderr);
      problem = `${binary} -q -x printed no usable report: ${(parseError as Error).message}${said ? ` (stderr: ${said})` : ''}`;
    }
  } catch (error) {
    if (!(error instanceof NvidiaSmiRunError)) throw error;
    if (error.reason === 'missing') return null;
    // A wedged driver hangs every query: asking again would only double the wait.
    if (error.reason === 'timeout' || options.fallback === false) throw new Error(error.message, { cause: error });
    problem = error.message;
  }
  if (options.fallback === false) throw new Error(problem);
  try {
    const report = await queryNvidiaSmiCsv(options);
    // The binary ran a moment ago; gone now (a driver being reinstalled) is a failure, not "no GPUs".
    if (report === null) throw new Error(`${binary} was not found`);
    return { ...report, fallbackReason: problem };
  } catch (fallbackError) {
    throw new Error(`${problem}; the --query-gpu fallback failed too: ${(fallbackError as Error).message}`, { cause: fallbackError });
  }
}

/** The report with the real UUIDs of its MIG devices from `nvidia-smi -L`, where it has MIG devices without one. */
async function withMigUuids(report: NvidiaSmiReport, options: QueryNvidiaSmiOptions): Promise<NvidiaSmiReport> {
  if (!report.devices.some((d) => typeof d.details?.migParent === 'string' && isSynthesizedMigUuid(d.uuid))) return report;
  try {
    const listed = parseNvidiaSmiList((await runNvidiaSmi(['-L'], '-L', options)).stdout);
    return { ...report, devices: fillMigUuids(report.devices, listed) };
  } catch (error) {
    return { ...report, warnings: [...(report.warnings ?? []), `MIG devices keep made-up UUIDs (CUDA_VISIBLE_DEVICES cannot name them): ${(error as Error).message}`] };
  }
}

/**
 * Reads the cards from `nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,nounits`, their
 * processes from `--query-compute-apps` and, for cards in MIG mode, their MIG devices from `-L`.
 * A field the driver does not know (`Field "x" is not a valid field to query.`) is dropped and the
 * query asked again, unless it is one of REQUIRED_QUERY_GPU_FIELDS. Resolves null where the binary
 * does not exist; rejects where the card query fails. A failed process or MIG query only adds a
 * `warnings` entry (processes unknown: none listed; MIG cards stay whole cards).
 */
export async function queryNvidiaSmiCsv(options: QueryNvidiaSmiOptions = {}): Promise<NvidiaSmiReport | null> {
  let fields: string[] = [...QUERY_GPU_FIELDS];
  let stdout: string;
  for (;;) {
    try {
      ({ stdout } = await runNvidiaSmi([`--query-gpu=${fields.join(',')}`, '--format=csv,nounits'], '--query-gpu', options));
      break;
    } catch (error) {
      if (error instanceof NvidiaSmiRunError && error.reason === 'missing') return null;
      const unknown = /Field "([^"]+)" is not a valid field to query/.exec((error as Error).message)?.[1];
      if (unknown === undefined || !fields.includes(unknown) || REQUIRED_QUERY_GPU_FIELDS.includes(unknown)) throw new Error((error as Error).message, { cause: error });
      fields = fields.filter((field) => field !== unknown);
    }
  }
  let report = parseNvidiaSmiCsv(stdout, { fields });
  const warnings: string[] = [];
  try {
    const apps = await runNvidiaSmi([`--query-compute-apps=${QUERY_COMPUTE_APPS_FIELDS.join(',')}`, '--format=csv,nounits'], '--query-compute-apps', options);
    report = { ...report, devices: attachComputeApps(report.devices, parseComputeAppsCsv(apps.stdout, { fields: QUERY_COMPUTE_APPS_FIELDS })) };
  } catch (error) {
    warnings.push(`processes on the cards are unknown (none listed): ${(error as Error).message}`);
  }
  if (options.listMig !== false && report.devices.some((d) => d.details?.migMode === 'Enabled')) {
    try {
      report = expandMigFromList(report, parseNvidiaSmiList((await runNvidiaSmi(['-L'], '-L', options)).stdout));
    } catch (error) {
      warnings.push(`cards in MIG mode are offered whole (their MIG devices are unknown): ${(error as Error).message}`);
    }
  }
  return warnings.length > 0 ? { ...report, warnings } : report;
}
