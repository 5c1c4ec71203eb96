import { open, type FileHandle } from 'node:fs/promises';
import { ModelMetadataError } from './errors.js';
import { dtypeTotals, type DtypeTotals } from './safetensors.js';

/** GGML tensor types by id, with their block size (elements) and block byte size, as llama.cpp's gguf-py defines them. */
export const GGML_TYPES: Readonly<Record<number, { name: string; blockSize: number; typeSize: number }>> = Object.freeze({
  0: { name: 'F32', blockSize: 1, typeSize: 4 },
  1: { name: 'F16', blockSize: 1, typeSize: 2 },
  2: { name: 'Q4_0', blockSize: 32, typeSize: 18 },
  3: { name: 'Q4_1', blockSize: 32, typeSize: 20 },
  6: { name: 'Q5_0', blockSize: 32, typeSize: 22 },
  7: { name: 'Q5_1', blockSize: 32, typeSize: 24 },
  8: { name: 'Q8_0', blockSize: 32, typeSize: 34 },
  9: { name: 'Q8_1', blockSize: 32, typeSize: 40 },
  10: { name: 'Q2_K', blockSize: 256, typeSize: 84 },
  11: { name: 'Q3_K', blockSize: 256, typeSize: 110 },
  12: { name: 'Q4_K', blockSize: 256, typeSize: 144 },
  13: { name: 'Q5_K', blockSize: 256, typeSize: 176 },
  14: { name: 'Q6_K', blockSize: 256, typeSize: 210 },
  15: { name: 'Q8_K', blockSize: 256, typeSize: 292 },
  16: { name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  17: { name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  18: { name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  19: { name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  20: { name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  21: { name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  22: { name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  23: { name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  24: { name: 'I8', blockSize: 1, typeSize: 1 },
  25: { name: 'I16', blockSize: 1, typeSize: 2 },
  26: { name: 'I32', blockSize: 1, typeSize: 4 },
  27: { name: 'I64', blockSize: 1, typeSize: 8 },
  28: { name: 'F64', blockSize: 1, typeSize: 8 },
  29: { name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  30: { name: 'BF16', blockSize: 1, typeSize: 2 },
  34: { name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  35: { name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  39: { name: 'MXFP4', blockSize: 32, typeSize: 17 },
  40: { name: 'NVFP4', blockSize: 64, typeSize: 36 },
  41: { name: 'Q1_0', blockSize: 128, typeSize: 18 },
});

/** `general.file_type` values (llama.cpp's `llama_ftype`) by id, named without the `MOSTLY_`/`ALL_` prefix. */
export const GGUF_FILE_TYPES: Readonly<Record<number, string>> = Object.freeze({
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 4: 'Q4_1_SOME_F16', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1',
  10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S',
  17: 'Q5_K_M', 18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS',
  24: 'IQ1_S', 25: 'IQ4_NL', 26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS',
  31: 'IQ1_M', 32: 'BF16', 36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE', 39: 'NVFP4', 40: 'Q1_0', 1024: 'GUESSED',
});

/** GGUF metadata value type names by id. */
export const GGUF_VALUE_TYPES = ['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'] as const;
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPES)[number];

/**
 * A metadata value. 64-bit integers come as `number` where they fit exactly (up to 2^53 - 1 in
 * magnitude) and as `bigint` beyond. Arrays come as arrays of their items.
 */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  name: string;
  /** Dimensions in GGML order, innermost first (`ne[0]`, `ne[1]`, …), as stored in the file. */
  dims: number[];
  /** The same dimensions in PyTorch/NumPy order (outermost first). */
  shape: number[];
  /** GGML type id and name (`Q4_K`, `F16`, …; `TYPE_<id>` for an id this reader does not know). */
  typeId: number;
  type: string;
  /** Offset of the tensor's data from the start of the data section. */
  offset: number;
  /** Offset of the tensor's data from the start of the file. */
  fileOffset: number;
  /** Element count (product of the dims). */
  parameters: number;
  /** Bytes of data, from the type's block size; `null` for an unknown type. */
  bytes: number | null;
}

/** What {@link readGgufHeader} reads. */
export interface GgufInfo {
  path: string;
  fileSize: number;
  version: number;
  tensorCount: number;
  /** Metadata key to value, in file order. */
  metadata: Record<string, GgufValue>;
  /** Metadata key to its type: `UINT32`, `STRING`, `ARRAY[STRING]`, … */
  metadataTypes: Record<string, string>;
  tensors: GgufTensorInfo[];
  /** `general.alignment` or 32. */
  alignment: number;
  /** Offset of the data section in the file. */
  dataStart: number;
  // Derived facts: null where the file does not say.
  /** `general.architecture`, e.g. `llama`. */
  architecture: string | null;
  /** `general.name`. */
  name: string | null;
  /** `<arch>.context_length`. */
  contextLength: number | null;
  /** `<arch>.embedding_length`. */
  embeddingLength: number | null;
  /** `<arch>.block_count` (layers). */
  blockCount: number | null;
  /** `<arch>.attention.head_count`. */
  headCount: number | null;
  /** `<arch>.attention.head_count_kv`. */
  headCountKv: number | null;
  /** `general.file_type` with its name (`Q4_K_M`, …), or `null`. */
  fileType: { id: number; name: string } | null;
  /**
   * The quantisation: the `general.file_type` name where present, else the type holding the most
   * elements among tensors of two or more dimensions (1-D tensors such as norms stay F32).
   */
  quantisation: string | null;
  /** Sum of the tensors' element counts. */
  parameters: number;
  /** Per GGML type: tensors, elements, bytes. */
  tensorTypes: Record<string, DtypeTotals>;
  /** Odd but not fatal findings. */
  warnings: string[];
}

/** Options for {@link readGgufHeader}. */
export interface ReadGgufOptions {
  /** Read buffer size in bytes (default 1 MiB). */
  chunkSize?: number;
}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian uint32

/** Reads a file forward through a buffer, a chunk at a time. */
class Cursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(
    private readonly handle: FileHandle,
    readonly fileSize: number,
    readonly file: string,
    private readonly chunkSize: number,
  ) {}

  fail(message: string): never {
    throw new ModelMetadataError(`${this.file}: ${message}`, this.file);
  }

  /** Ensures `n` bytes from `pos` are in the buffer, or fails saying what was being read. */
  async need(n: number, what: string): Promise<void> {
    if (this.pos + n > this.fileSize) {
      this.fail(`the file ends at byte ${this.fileSize} while reading ${what} (${n} bytes at offset ${this.pos}): it is truncated`);
    }
    const have = this.bufStart + this.buf.length;
    if (this.pos >= this.bufStart && this.pos + n <= have) return;
    const len = Math.min(Math.max(n, this.chunkSize), this.fileSize - this.pos);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await this.handle.read(buf, 0, len, this.pos);
    if (bytesRead < n) this.fail(`could read only ${bytesRead} of ${n} bytes at offset ${this.pos} while reading ${what}: the file is truncated`);
    this.buf = buf.subarray(0, bytesRead);
    this.bufStart = this.pos;
  }

  private at(): number {
    return this.pos - this.bufStart;
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    const v = this.buf.readUInt32LE(this.at());
    this.pos += 4;
    return v;
  }

  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    const v = this.buf.readBigUInt64LE(this.at());
    this.pos += 8;
    return v;
  }

  /** A uint64 that must be a count or offset within reach: fails beyond `limit`. */
  async count(what: string, limit: number): Promise<number> {
    const v = await this.u64(what);
    if (v > BigInt(limit)) {
      this.fail(`${what} is ${v}, more than this ${this.fileSize}-byte file can hold: the file is corrupt or not GGUF`);
    }
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const len = await this.count(`the length of ${what}`, Number.MAX_SAFE_INTEGER);
    await this.need(len, what);
    const s = this.buf.toString('utf8', this.at(), this.at() + len);
    this.pos += len;
    return s;
  }

  async scalar(type: number, what: string): Promise<GgufValue> {
    const sizes = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
    if (type === 8) return this.string(what);
    const size = sizes[type];
    if (size === undefined || size === 0) this.fail(`${what} has value type ${type}, which is not a GGUF value type`);
    await this.need(size, what);
    const b = this.buf;
    const o = this.at();
    this.pos += size;
    switch (type) {
      case 0: return b.readUInt8(o);
      case 1: return b.readInt8(o);
      case 2: return b.readUInt16LE(o);
      case 3: return b.readInt16LE(o);
      case 4: return b.readUInt32LE(o);
      case 5: return b.readInt32LE(o);
      case 6: return b.readFloatLE(o);
      case 7: return b.readUInt8(o) !== 0;
      case 10: return safeBig(b.readBigUInt64LE(o));
      case 11: return safeBig(b.readBigInt64LE(o));
      default: return b.readDoubleLE(o);
    }
  }
}

function safeBig(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function typeName(t: number): string {
  return GGUF_VALUE_TYPES[t] ?? `TYPE_${t}`;
}

/**
 * Reads the header of a GGUF file (versions 2 and 3, little-endian): magic, version, metadata
 * key-values of every value type (arrays included), and tensor infos; then derives architecture,
 * sizes, quantisation and parameter count. Reads the file forward in chunks and stops at the end of
 * the tensor infos: the tensor data is never read. Checks that every tensor's data lies inside the
 * file.
 *
 * @throws {@link ModelMetadataError} for a bad magic, an unsupported version or a big-endian file, a
 * truncated file, or values that cannot be.
 */
export async function readGgufHeader(file: string, options: ReadGgufOptions = {}): Promise<GgufInfo> {
  const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new ModelMetadataError(`${file}: cannot open the file (${err.code ?? err.message})`, file);
  });
  try {
    const { size } = await handle.stat();
    const c = new Cursor(handle, size, file, options.chunkSize ?? 1024 * 1024);
    if (size < 4) c.fail(`is ${size} bytes long: too short for a GGUF file (it starts with the 4 bytes "GGUF")`);
    const magic = await c.u32('the magic');
    if (magic !== GGUF_MAGIC) {
      const got = Buffer.alloc(4);
      got.writeUInt32LE(magic);
      c.fail(`does not start with the GGUF magic "GGUF" (it starts with ${JSON.stringify(got.toString('latin1'))}, bytes ${got.toString('hex')}): not a GGUF file`);
    }
    const version = await c.u32('the version');
    if (version > 0xffff && (version >>> 24) <= 3) c.fail(`is a big-endian GGUF file (version bytes ${version.toString(16)}), which this reader does not read`);
    if (version !== 2 && version !== 3) c.fail(`is GGUF version ${version}; this reader reads versions 2 and 3`);
    const tensorCount = await c.count('the tensor count', size);
    const kvCount = await c.count('the metadata key-value count', size);
    const metadata: Record<string, GgufValue> = {};
    const metadataTypes: Record<string, string> = {};
    for (let i = 0; i < kvCount; i++) {
      const key = await c.string(`metadata key #${i}`);
      const type = await c.u32(`the value type of ${key}`);
      if (type === 9) {
        const itemType = await c.u32(`the item type of array ${key}`);
        if (itemType === 9) c.fail(`${key} is an array of arrays, which this reader does not read`);
        if (typeName(itemType).startsWith('TYPE_')) c.fail(`array ${key} has item type ${itemType}, which is not a GGUF value type`);
        const minItem = itemType === 8 ? 8 : [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8][itemType]!;
        const n = await c.count(`the length of array ${key}`, Math.floor((size - c.pos) / minItem));
        const items: GgufValue[] = new Array(n);
        for (let j = 0; j < n; j++) items[j] = await c.scalar(itemType, `${key}[${j}]`);
        metadata[key] = items;
        metadataTypes[key] = `ARRAY[${typeName(itemType)}]`;
      } else {
        metadata[key] = await c.scalar(type, `the value of ${key}`);
        metadataTypes[key] = typeName(type);
      }
    }
    const tensors: GgufTensorInfo[] = [];
    const warnings: string[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const name = await c.string(`the name of tensor #${i}`);
      if (seen.has(name)) c.fail(`holds two tensors named ${JSON.stringify(name)}`);
      seen.add(name);
      const nDims = await c.u32(`the dimension count of ${name}`);
      if (nDims > 8) c.fail(`tensor ${JSON.stringify(name)} has ${nDims} dimensions: corrupt header (GGML tensors have at most 4)`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(await c.count(`dimension ${d} of ${name}`, Number.MAX_SAFE_INTEGER));
      const typeId = await c.u32(`the type of ${name}`);
      const offset = await c.count(`the data offset of ${name}`, size);
      let parameters = 1;
      for (const d of dims) parameters *= d;
      if (!Number.isSafeInteger(parameters)) c.fail(`tensor ${JSON.stringify(name)} has dims [${dims.join(', ')}], too many elements to count`);
      const t = GGML_TYPES[typeId];
      if (!t) warnings.push(`tensor ${name} has GGML type ${typeId}, which this reader does not know: its size is not counted`);
      if (t && parameters % t.blockSize !== 0) c.fail(`tensor ${JSON.stringify(name)} has ${parameters} elements, not a whole number of ${t.name} blocks of ${t.blockSize}`);
      tensors.push({
        name,
        dims,
        shape: [...dims].reverse(),
        typeId,
        type: t?.name ?? `TYPE_${typeId}`,
        offset,
        fileOffset: 0,
        parameters,
        bytes: t ? (parameters / t.blockSize) * t.typeSize : null,
      });
    }
    const alignRaw = metadata['general.alignment'];
    const alignment = typeof alignRaw === 'number' && alignRaw > 0 && Number.isInteger(alignRaw) ? alignRaw : 32;
    if (alignRaw !== undefined && alignment !== alignRaw) warnings.push(`general.alignment is ${String(alignRaw)}, not a positive integer: 32 used`);
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    for (const t of tensors) {
      t.fileOffset = dataStart + t.offset;
      if (t.offset % alignment !== 0) warnings.push(`tensor ${t.name}'s data offset ${t.offset} is not a multiple of the alignment ${alignment}`);
      const end = t.fileOffset + (t.bytes ?? 0);
      if (end > size) {
        c.fail(`tensor ${JSON.stringify(t.name)}'s data would end at byte ${end} but the file is ${size} bytes long: it is truncated`);
      }
    }
    return { ...derive(metadata, tensors), path: file, fileSize: size, version, tensorCount, metadata, metadataTypes, tensors, alignment, dataStart, warnings };
  } finally {
    await handle.close();
  }
}

function derive(metadata: Record<string, GgufValue>, tensors: GgufTensorInfo[]) {
  const str = (k: string): string | null => (typeof metadata[k] === 'string' ? (metadata[k] as string) : null);
  const num = (k: string): number | null => {
    const v = metadata[k];
    if (typeof v === 'number') return v;
    // Some models give head counts per layer: report the first.
    if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
    return null;
  };
  const architecture = str('general.architecture');
  const a = architecture ?? '';
  const ft = metadata['general.file_type'];
  const fileType = typeof ft === 'number' ? { id: ft, name: GGUF_FILE_TYPES[ft] ?? `FILE_TYPE_${ft}` } : null;
  const tensorTypes = dtypeTotals(tensors.map((t) => ({ dtype: t.type, parameters: t.parameters, bytes: t.bytes ?? 0 })));
  let quantisation = fileType && fileType.name !== 'GUESSED' ? fileType.name : null;
  if (quantisation === null) {
    const matrices = dtypeTotals(tensors.filter((t) => t.dims.filter((d) => d > 1).length >= 2).map((t) => ({ dtype: t.type, parameters: t.parameters, bytes: 0 })));
    const pool = Object.keys(matrices).length > 0 ? matrices : tensorTypes;
    let best: string | null = null;
    for (const [k, v] of Object.entries(pool)) if (best === null || v.parameters > pool[best]!.parameters) best = k;
    quantisation = best;
  }
  return {
    architecture,
    name: str('general.name'),
    contextLength: num(`${a}.context_length`),
    embeddingLength: num(`${a}.embedding_length`),
    blockCount: num(`${a}.block_count`),
    headCount: num(`${a}.attention.head_count`),
    headCountKv: num(`${a}.attention.head_count_kv`),
    fileType,
    quantisation,
    parameters: tensors.reduce((n, t) => n + t.parameters, 0),
    tensorTypes,
  };
}
