/**
 * Reads `nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]` and
 * `--query-compute-apps=...`: the fallback where `-q -x` fails or prints no usable XML (seen in some
 * containers and drivers). The CSV is poorer than the XML: no CUDA version, no minor number, MIG
 * instances not at all (they come from `nvidia-smi -L`, with their size read from the profile name),
 * and processes only by the card's UUID (so a MIG instance's processes cannot be told apart) and
 * only compute ones (`--query-compute-apps` leaves out graphics processes such as Xorg).
 *
 * Format (see core/simulated/nvidia-smi/captures/SOURCES.md): values separated by `, `; a header
 * line unless `noheader`, whose names keep their unit even with `nounits` (`memory.total [MiB]`);
 * values carry their unit unless `nounits` (`81559 MiB`); missing values are bracketed (`[N/A]`,
 * `[Not Supported]`, `[Requested functionality has been deprecated]`), a few bare (`N/A`). The
 * field list differs by driver: a field the driver does not know fails the whole query
 * (`Field "x" is not a valid field to query.`, exit code 2), and 590+ answers some with
 * `[Requested functionality has been deprecated]`.
 */
import type { DeviceProcess, DiscoveredDevice } from '../workloads.js';
import { migProfileGigabytes, type ListedGpu } from './nvidia-smi-list.js';
import type { NvidiaSmiReport } from './nvidia-smi.js';
import { integer, mebibytes, migModeOf, quantity, valueText } from './values.js';

/**
 * The fields the fallback asks for, in this order. All exist since driver 450 (`mig.mode.current`
 * came with MIG); a driver that refuses one of the optional ones is asked again without it.
 */
export const QUERY_GPU_FIELDS = [
  'index',
  'uuid',
  'name',
  'pci.bus_id',
  'driver_version',
  'memory.total',
  'memory.used',
  'utilization.gpu',
  'temperature.gpu',
  'power.draw',
  'mig.mode.current',
] as const;

/** Without these a card cannot be offered: the fallback fails rather than drop them. */
export const REQUIRED_QUERY_GPU_FIELDS: readonly string[] = ['index', 'uuid', 'name', 'memory.total'];

/** The fields the fallback asks `--query-compute-apps` for; the free-text name last, so a comma in it cannot shift the others. */
export const QUERY_COMPUTE_APPS_FIELDS = ['gpu_uuid', 'pid', 'used_gpu_memory', 'process_name'] as const;

/** Alternative names nvidia-smi accepts for one field (`--help-query-gpu`): read as the first. */
const ALIASES: Record<string, string> = {
  gpu_name: 'name',
  gpu_uuid: 'uuid',
  gpu_bus_id: 'pci.bus_id',
  gpu_serial: 'serial',
  used_memory: 'used_gpu_memory',
};

/** Fields whose values are free text that may hold a comma (a product or process name). */
const FREE_TEXT = new Set(['name', 'process_name']);

/** A header cell: a field name, with nvidia-smi's unit after it (`memory.total [MiB]`). */
const HEADER_CELL = /^[A-Za-z_][\w.]*(?: \[[^\]]+\])?$/;

/** A field's canonical name: its unit dropped, an alias replaced by the name the query tables use. */
export function canonicalField(name: string): string {
  const bare = name.trim().replace(/\s*\[[^\]]*\]$/, '');
  return ALIASES[bare] ?? bare;
}

export interface NvidiaSmiCsvTable {
  /** Canonical field names, in column order. */
  fields: string[];
  /** One record per data line, by canonical field name; values trimmed, unparsed. */
  rows: Record<string, string>[];
}

export interface ParseNvidiaSmiCsvOptions {
  /**
   * The fields the query asked for, in order. Needed for `noheader` output; with a header it is
   * checked against it. Without it the output must have a header.
   */
  fields?: readonly string[];
}

/**
 * Splits nvidia-smi's CSV into records. Throws when a line has the wrong number of values, when a
 * header names other fields than asked for, or when there is no header and no field list.
 */
export function parseNvidiaSmiCsvTable(text: string, options: ParseNvidiaSmiCsvOptions = {}, what = 'nvidia-smi --query-gpu'): NvidiaSmiCsvTable {
  const lines = text.split(/\r?\n/).map((line, i) => ({ line, number: i + 1 })).filter(({ line }) => line.trim() !== '');
  if (lines.length === 0) throw new Error(`${what} output is empty: expected CSV`);
  const asked = options.fields?.map(canonicalField);
  const firstCells = lines[0]!.line.split(',').map((cell) => cell.trim());
  const headerLike = firstCells.every((cell) => HEADER_CELL.test(cell));
  let fields: string[];
  if (headerLike) {
    const named = firstCells.map(canonicalField);
    if (asked && named.join(',') !== asked.join(',')) {
      throw new Error(`${what} output has the header "${firstCells.join(', ')}", not the fields asked for (${asked.join(', ')})`);
    }
    fields = named;
    lines.shift();
  } else if (asked) {
    fields = asked;
  } else {
    throw new Error(`${what} output has no header line and no field list was given: it begins "${lines[0]!.line.trim().slice(0, 200)}"`);
  }

  const freeText = fields.findIndex((field) => FREE_TEXT.has(field));
  const rows = lines.map(({ line, number }) => {
    let cells = line.split(',');
    if (cells.length > fields.length && freeText >= 0) {
      // A comma inside the free-text value: give that value the surplus.
      const extra = cells.length - fields.length;
      cells = [...cells.slice(0, freeText), cells.slice(freeText, freeText + extra + 1).join(','), ...cells.slice(freeText + extra + 1)];
    }
    if (cells.length !== fields.length) {
      throw new Error(`${what} output line ${number} has ${cells.length} values for ${fields.length} fields: "${line.trim().slice(0, 200)}"`);
    }
    return Object.fromEntries(fields.map((field, i) => [field, cells[i]!.trim()]));
  });
  return { fields, rows };
}

/**
 * Parses `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]` into the same report as
 * `parseNvidiaSmiXml`, with the same `details` keys (those the CSV cannot tell are null). Fields
 * may come in any order and any number; `memory.total` and one of `uuid`, `pci.bus_id`, `index`
 * are needed. Reads `power.draw`, else `power.draw.average`, else `power.draw.instant`. Cards in
 * MIG mode stay whole cards here: `expandMigFromList` turns them into their MIG devices.
 */
export function parseNvidiaSmiCsv(text: string, options: ParseNvidiaSmiCsvOptions = {}): NvidiaSmiReport {
  const { fields, rows } = parseNvidiaSmiCsvTable(text, options);
  if (!fields.includes('memory.total') || !['uuid', 'pci.bus_id', 'index'].some((f) => fields.includes(f))) {
    throw new Error(`nvidia-smi --query-gpu output lacks memory.total or any of uuid, pci.bus_id, index (it has ${fields.join(', ')})`);
  }
  const driverVersion = rows.map((row) => valueText(row.driver_version)).find((v) => v !== null) ?? null;
  rows.forEach((row, position) => {
    // Checked so that another program's output (or a shifted line) is refused, not read as a card.
    const line = `nvidia-smi --query-gpu output row ${position + 1}`;
    if (row.index !== undefined && integer(row.index) === null) throw new Error(`${line}: index is "${row.index.slice(0, 100)}", not a whole number`);
    if (valueText(row['memory.total']) !== null && mebibytes(row['memory.total']) === null) throw new Error(`${line}: memory.total is "${row['memory.total']!.slice(0, 100)}", not a size`);
  });
  const devices: DiscoveredDevice[] = rows.map((row, position) => {
    const pciBusId = valueText(row['pci.bus_id']);
    return {
      index: integer(row.index) ?? position,
      uuid: valueText(row.uuid) ?? `nvidia-pci-${pciBusId ?? position}`,
      model: valueText(row.name) ?? 'Unknown NVIDIA GPU',
      memoryMiB: mebibytes(row['memory.total']) ?? 0,
      details: {
        pciBusId,
        driverVersion: valueText(row.driver_version) ?? driverVersion,
        cudaVersion: null,
        memoryUsedMiB: mebibytes(row['memory.used']),
        utilizationPercent: quantity(row['utilization.gpu']),
        temperatureC: quantity(row['temperature.gpu']),
        powerDrawW: quantity(row['power.draw']) ?? quantity(row['power.draw.average']) ?? quantity(row['power.draw.instant']),
        migMode: migModeOf(row['mig.mode.current']),
        minorNumber: null,
        processes: 0,
        processList: [],
      },
    };
  });
  return { driverVersion, cudaVersion: null, devices };
}

/** A process from `--query-compute-apps`, with the UUID of the card it runs on. */
export interface ComputeApp extends DeviceProcess {
  gpuUuid: string | null;
}

/** Parses `nvidia-smi --query-compute-apps=... --format=csv[,noheader][,nounits]`; needs `pid`. */
export function parseComputeAppsCsv(text: string, options: ParseNvidiaSmiCsvOptions = {}): ComputeApp[] {
  const { fields, rows } = parseNvidiaSmiCsvTable(text, options, 'nvidia-smi --query-compute-apps');
  if (!fields.includes('pid')) throw new Error(`nvidia-smi --query-compute-apps output lacks pid (it has ${fields.join(', ')})`);
  rows.forEach((row, position) => {
    if (integer(row.pid) === null) throw new Error(`nvidia-smi --query-compute-apps output row ${position + 1}: pid is "${(row.pid ?? '').slice(0, 100)}", not a whole number`);
  });
  return rows.map((row) => ({
    gpuUuid: valueText(row.uuid),
    pid: integer(row.pid) ?? 0,
    name: valueText(row.process_name),
    usedMemoryMiB: mebibytes(row.used_gpu_memory),
  }));
}

/**
 * Gives each whole card the processes that run on it (matched by card UUID). MIG devices get none:
 * `--query-compute-apps` names only the card, not the instance. Returns new objects.
 */
export function attachComputeApps(devices: DiscoveredDevice[], apps: ComputeApp[]): DiscoveredDevice[] {
  return devices.map((device) => {
    if (typeof device.details?.migParent === 'string') return device;
    const processList: DeviceProcess[] = apps.filter((app) => app.gpuUuid === device.uuid).map(({ pid, name, usedMemoryMiB }) => ({ pid, name, usedMemoryMiB }));
    return { ...device, details: { ...device.details, processes: processList.length, processList } };
  });
}

/**
 * How much of its profile's nominal size a MIG device is taken to have when only the profile name
 * is known. Measured sizes sit 1–5 % under the nominal GiB (A100 80GB 1g.10gb: 9728 MiB; H100
 * 3g.40gb: 40448 MiB, 1g.10gb: 9984 MiB); 10 % under keeps the ledger from promising memory an
 * instance does not have.
 */
export const MIG_PROFILE_MEMORY_FACTOR = 0.9;

/**
 * Replaces each card in MIG mode by the MIG devices `nvidia-smi -L` lists under it (matched by card
 * UUID, else by index), numbered after the last card as `parseNvidiaSmiXml` numbers them. Their
 * size comes from the profile name (`3g.40gb`: 40 GiB × MIG_PROFILE_MEMORY_FACTOR), marked
 * `memoryEstimated`; their use, utilisation and processes are unknown (null, none). A card in MIG
 * mode that `-L` lists no devices for stays a whole card, as in the XML reader.
 */
export function expandMigFromList(report: NvidiaSmiReport, listed: ListedGpu[]): NvidiaSmiReport {
  const cards = report.devices.filter((d) => typeof d.details?.migParent !== 'string');
  let nextMigIndex = Math.max(cards.length, ...report.devices.map((d) => d.index + 1));
  const devices: DiscoveredDevice[] = [];
  for (const card of report.devices) {
    const details = card.details ?? {};
    const listedCard = details.migMode === 'Enabled' ? (listed.find((g) => g.uuid !== null && g.uuid === card.uuid) ?? listed.find((g) => g.index === card.index && (g.uuid === null || card.uuid.startsWith('nvidia-pci-')))) : undefined;
    if (!listedCard || listedCard.migDevices.length === 0) {
      devices.push(card);
      continue;
    }
    for (const mig of listedCard.migDevices) {
      const gigabytes = migProfileGigabytes(mig.profile);
      devices.push({
        index: nextMigIndex++,
        uuid: mig.uuid,
        model: `${card.model} MIG ${mig.profile}`,
        memoryMiB: gigabytes === null ? 0 : Math.floor(gigabytes * 1024 * MIG_PROFILE_MEMORY_FACTOR),
        details: {
          pciBusId: details.pciBusId ?? null,
          driverVersion: details.driverVersion ?? null,
          cudaVersion: details.cudaVersion ?? null,
          memoryUsedMiB: null,
          utilizationPercent: null,
          temperatureC: details.temperatureC ?? null,
          powerDrawW: details.powerDrawW ?? null,
          migMode: 'Enabled',
          minorNumber: details.minorNumber ?? null,
          processes: 0,
          processList: [],
          migParent: card.uuid,
          gpuIndex: card.index,
          migIndex: mig.index,
          gpuInstanceId: mig.gpuInstanceId,
          computeInstanceId: mig.computeInstanceId,
          multiprocessors: null,
          migProfile: mig.profile,
          memoryEstimated: true,
        },
      });
    }
  }
  return { ...report, devices };
}
