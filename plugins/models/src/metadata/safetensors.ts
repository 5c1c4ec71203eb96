import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelMetadataError, elementCount, resolveInside } from './errors.js';

/** Bits per element of each dtype the safetensors format defines. */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
});

/** The most header a safetensors file may declare before it is refused (the format's own reader uses the same cap). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor as the header describes it. */
export interface SafetensorsTensor {
  name: string;
  /** The safetensors dtype, e.g. `F32`, `BF16`, `I64`. */
  dtype: string;
  /** Shape in PyTorch order (outermost first); `[]` for a scalar. */
  shape: number[];
  /** `[begin, end)` byte offsets relative to the start of the data section (after the header). */
  dataOffsets: [number, number];
  /** Number of elements (the shape's product). */
  parameters: number;
  /** `end - begin`. */
  bytes: number;
}

/** Per-dtype totals: how many tensors, elements and bytes carry that dtype. */
export interface DtypeTotals {
  tensors: number;
  parameters: number;
  bytes: number;
}

/** What {@link readSafetensorsHeader} reads from one `.safetensors` file. */
export interface SafetensorsInfo {
  path: string;
  /** Size of the file in bytes. */
  fileSize: number;
  /** N, the header's length as the first 8 bytes declare it. */
  headerLength: number;
  /** Offset of the data section in the file: `8 + headerLength`. */
  dataStart: number;
  /** The header's `__metadata__` (string to string), or `null` where there is none. */
  metadata: Record<string, string> | null;
  /** Tensors in header order. */
  tensors: SafetensorsTensor[];
  /** Sum of the tensors' element counts. */
  parameters: number;
  /** Per-dtype totals. */
  dtypes: Record<string, DtypeTotals>;
  /** The dtype holding the most parameters, or `null` for a file with no tensors. */
  dtype: string | null;
  /** Bytes of tensor data (the data section's length). */
  tensorBytes: number;
}

function fail(file: string, message: string): never {
  throw new ModelMetadataError(`${file}: ${message}`, file);
}

/**
 * Reads the header of a `.safetensors` file: only its first 8 + N bytes are read (N being the
 * header length the file declares), never the tensor data. Validates the header: N at most
 * {@link SAFETENSORS_MAX_HEADER_BYTES} and inside the file, valid JSON, every dtype known, every shape
 * a list of non-negative integers, every tensor's byte range matching its shape and dtype, lying
 * inside the file, and the ranges together covering the data section without gap or overlap.
 *
 * @throws {@link ModelMetadataError} with a message naming the file and the fault.
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsInfo> {
  const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) =>
    fail(file, `cannot open the file (${err.code ?? err.message})`),
  );
  try {
    const { size: fileSize } = await handle.stat();
    if (fileSize < 8) fail(file, `is ${fileSize} bytes long: a safetensors file starts with an 8-byte header length, so it is truncated or not safetensors`);
    const lenBuf = Buffer.alloc(8);
    await handle.read(lenBuf, 0, 8, 0);
    const declared = lenBuf.readBigUInt64LE(0);
    if (declared > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
      fail(file, `declares a header of ${declared} bytes, more than the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit: not a safetensors file, or a corrupt one`);
    }
    const headerLength = Number(declared);
    if (headerLength < 2) fail(file, `declares a header of ${headerLength} bytes: too short for a JSON object`);
    if (8 + headerLength > fileSize) {
      fail(file, `declares a header of ${headerLength} bytes but the file holds only ${fileSize - 8} after the length: the file is truncated`);
    }
    const headerBuf = Buffer.alloc(headerLength);
    const { bytesRead } = await handle.read(headerBuf, 0, headerLength, 8);
    if (bytesRead !== headerLength) fail(file, `could read only ${bytesRead} of the ${headerLength} header bytes: the file is truncated`);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (err) {
      fail(file, `the header is not valid JSON (${(err as Error).message})`);
    }
    return parseSafetensorsHeader(file, header, fileSize, headerLength);
  } finally {
    await handle.close();
  }
}

function parseSafetensorsHeader(file: string, header: unknown, fileSize: number, headerLength: number): SafetensorsInfo {
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(file, 'the header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensor[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(file, '__metadata__ is not an object');
      metadata = {};
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null) fail(file, `tensor ${JSON.stringify(name)} is not an object`);
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t.dtype !== 'string' || !(t.dtype in SAFETENSORS_DTYPE_BITS)) {
      fail(file, `tensor ${JSON.stringify(name)} has dtype ${JSON.stringify(t.dtype)}, which is not a safetensors dtype (known: ${Object.keys(SAFETENSORS_DTYPE_BITS).join(', ')})`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(file, `tensor ${JSON.stringify(name)} has shape ${JSON.stringify(t.shape)}: not a list of non-negative integers`);
    }
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      fail(file, `tensor ${JSON.stringify(name)} has data_offsets ${JSON.stringify(off)}: not two non-negative integers`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) fail(file, `tensor ${JSON.stringify(name)} has data_offsets [${begin}, ${end}]: the end is before the beginning`);
    if (end > dataSize) {
      fail(file, `tensor ${JSON.stringify(name)} has data_offsets [${begin}, ${end}], outside the file's ${dataSize}-byte data section (the file is truncated or the header wrong)`);
    }
    const shape = t.shape as number[];
    const parameters = elementCount(shape, file, name);
    const expected = Math.ceil((parameters * SAFETENSORS_DTYPE_BITS[t.dtype]!) / 8);
    if (end - begin !== expected) {
      fail(file, `tensor ${JSON.stringify(name)} (${t.dtype}, shape [${shape.join(', ')}]) should hold ${expected} bytes but its data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    tensors.push({ name, dtype: t.dtype, shape, dataOffsets: [begin, end], parameters, bytes: end - begin });
  }
  // The tensors' ranges must tile the data section: sorted by start, each begins where the last ended.
  const sorted = [...tensors].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  for (const t of sorted) {
    if (t.dataOffsets[0] !== cursor) {
      fail(file, t.dataOffsets[0] < cursor
        ? `tensor ${JSON.stringify(t.name)} overlaps the tensor before it (it starts at byte ${t.dataOffsets[0]}, the one before ends at ${cursor})`
        : `there is a gap in the data section before tensor ${JSON.stringify(t.name)} (bytes ${cursor} to ${t.dataOffsets[0]} belong to no tensor)`);
    }
    cursor = t.dataOffsets[1];
  }
  if (cursor !== dataSize) {
    fail(file, `the tensors cover ${cursor} bytes of data but the file holds ${dataSize} after the header: trailing bytes belong to no tensor`);
  }
  const dtypes = dtypeTotals(tensors);
  return {
    path: file,
    fileSize,
    headerLength,
    dataStart,
    metadata,
    tensors,
    parameters: tensors.reduce((n, t) => n + t.parameters, 0),
    dtypes,
    dtype: dominantDtype(dtypes),
    tensorBytes: dataSize,
  };
}

/** Sums tensors per dtype. */
export function dtypeTotals(tensors: Iterable<{ dtype: string; parameters: number; bytes: number }>): Record<string, DtypeTotals> {
  const out: Record<string, DtypeTotals> = {};
  for (const t of tensors) {
    const d = (out[t.dtype] ??= { tensors: 0, parameters: 0, bytes: 0 });
    d.tensors += 1;
    d.parameters += t.parameters;
    d.bytes += t.bytes;
  }
  return out;
}

/** The dtype holding the most parameters (ties: the name first in alphabetical order), or `null`. */
export function dominantDtype(dtypes: Record<string, DtypeTotals>): string | null {
  let best: string | null = null;
  for (const [name, d] of Object.entries(dtypes).sort(([a], [b]) => a.localeCompare(b))) {
    if (best === null || d.parameters > dtypes[best]!.parameters) best = name;
  }
  return best;
}

/** What {@link readSafetensorsIndex} reads from a sharded model. */
export interface ShardedSafetensorsInfo {
  /** Path of the `*.safetensors.index.json`. */
  path: string;
  /** The index's `metadata` object (e.g. `total_size`), or `null`. */
  metadata: Record<string, unknown> | null;
  /** `metadata.total_size` where it is a number, else `null`. */
  declaredTotalSize: number | null;
  /** `metadata.total_parameters` (newer transformers write it) where it is a number, else `null`. */
  declaredTotalParameters: number | null;
  /** Tensor name to shard file name, as in the index. */
  weightMap: Record<string, string>;
  /** Each shard's header, in the order of first appearance in the weight map. */
  shards: SafetensorsInfo[];
  /** Sum over the shards of their tensors' element counts. */
  parameters: number;
  dtypes: Record<string, DtypeTotals>;
  dtype: string | null;
  /** Sum over the shards of their tensor data bytes. */
  tensorBytes: number;
  /** Sum over the shards of their file sizes. */
  fileBytes: number;
  /** Things that are odd but not fatal (total_size differing from the shards' data, tensors present but not mapped). */
  warnings: string[];
}

/**
 * Reads a sharded model's `model.safetensors.index.json` and the header of every shard its
 * `weight_map` names (shard names must be plain relative paths inside the index's folder), and sums
 * them. Every tensor the index names must be in the shard it names.
 *
 * @throws {@link ModelMetadataError} for a missing or malformed index, a shard outside the folder, a
 * missing shard, or a tensor missing from its shard.
 */
export async function readSafetensorsIndex(indexFile: string): Promise<ShardedSafetensorsInfo> {
  const dir = path.dirname(indexFile);
  const base = path.basename(indexFile);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    fail(indexFile, e.code ? `cannot read the index (${e.code})` : `the index is not valid JSON (${e.message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(indexFile, 'the index is not a JSON object');
  const { weight_map: wm, metadata } = raw as { weight_map?: unknown; metadata?: unknown };
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) fail(indexFile, 'the index has no weight_map object');
  const weightMap: Record<string, string> = {};
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string') fail(indexFile, `weight_map[${JSON.stringify(tensor)}] is not a file name`);
    resolveInside(dir, shard, base);
    weightMap[tensor] = shard;
    const list = byShard.get(shard) ?? [];
    list.push(tensor);
    byShard.set(shard, list);
  }
  const shards: SafetensorsInfo[] = [];
  const warnings: string[] = [];
  for (const [shard, names] of byShard) {
    const shardPath = resolveInside(dir, shard, base);
    await stat(shardPath).catch(() => fail(indexFile, `names the shard ${shard}, which is not there`));
    const info = await readSafetensorsHeader(shardPath);
    const present = new Set(info.tensors.map((t) => t.name));
    const missing = names.filter((n) => !present.has(n));
    if (missing.length > 0) fail(indexFile, `maps ${missing.length} tensor(s) to ${shard} that it does not hold, e.g. ${JSON.stringify(missing[0])}`);
    const mapped = new Set(names);
    const extra = info.tensors.filter((t) => !mapped.has(t.name));
    if (extra.length > 0) warnings.push(`${shard} holds ${extra.length} tensor(s) the index does not map, e.g. ${JSON.stringify(extra[0]!.name)}`);
    shards.push(info);
  }
  const dtypes = dtypeTotals(shards.flatMap((s) => s.tensors));
  const tensorBytes = shards.reduce((n, s) => n + s.tensorBytes, 0);
  const meta = typeof metadata === 'object' && metadata !== null && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : null;
  const total = meta?.['total_size'];
  const declaredTotalSize = typeof total === 'number' ? total : null;
  if (declaredTotalSize !== null && declaredTotalSize !== tensorBytes) {
    warnings.push(`${base} declares total_size ${declaredTotalSize} but the shards hold ${tensorBytes} bytes of tensor data`);
  }
  const params = meta?.['total_parameters'];
  const declaredTotalParameters = typeof params === 'number' ? params : null;
  const parameters = shards.reduce((n, s) => n + s.parameters, 0);
  if (declaredTotalParameters !== null && declaredTotalParameters !== parameters) {
    warnings.push(`${base} declares total_parameters ${declaredTotalParameters} but the shards hold ${parameters}`);
  }
  return {
    path: indexFile,
    metadata: meta,
    declaredTotalSize,
    declaredTotalParameters,
    weightMap,
    shards,
    parameters,
    dtypes,
    dtype: dominantDtype(dtypes),
    tensorBytes,
    fileBytes: shards.reduce((n, s) => n + s.fileSize, 0),
    warnings,
  };
}
