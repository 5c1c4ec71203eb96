import { lstat, readFile, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelMetadataError } from './errors.js';
import { readGenerationConfig, readHfConfig, readTokenizerInfo, TOKENIZER_FILES, type HfConfig, type HfGenerationConfig, type HfTokenizerInfo } from './config.js';
import { readGgufHeader, type GgufInfo } from './gguf.js';
import { dominantDtype, dtypeTotals, readSafetensorsHeader, readSafetensorsIndex, type DtypeTotals, type SafetensorsInfo, type ShardedSafetensorsInfo } from './safetensors.js';

/** What a file in a model folder is. */
export type ModelFileKind = 'safetensors' | 'safetensors-index' | 'gguf' | 'pytorch' | 'pytorch-index' | 'onnx' | 'tokenizer' | 'config' | 'other';

/** The weight formats a folder can hold. */
export type ModelWeightFormat = 'safetensors' | 'gguf' | 'pytorch' | 'onnx';

/** One file of a model folder. */
export interface ModelFile {
  /** Path relative to the folder, with `/` separators. */
  path: string;
  size: number;
  kind: ModelFileKind;
}

/** A model's quantisation, from `config.json`'s `quantization_config` or from a GGUF's types. */
export interface ModelQuantisation {
  /** `gptq`, `awq`, `bitsandbytes`, `fp8`, … from the config; `gguf` for a GGUF file. */
  method: string;
  /** Bits per weight where known. */
  bits: number | null;
  /** For GGUF: the file type or dominant tensor type (`Q4_K_M`, `Q8_0`, …); else `null`. */
  name: string | null;
  source: 'config' | 'gguf';
}

/** What {@link inspectModelFolder} finds. `null` means the files do not say. */
export interface ModelFolderInfo {
  /** The folder's real path (or the GGUF file's, when given a file). */
  root: string;
  /** The weight format, or `mixed` where the folder holds more than one. */
  format: ModelWeightFormat | 'mixed';
  /** Every weight format present. */
  formats: ModelWeightFormat[];
  /** `architectures[0]` of config.json (`LlamaForCausalLM`), else the GGUF's `general.architecture`. */
  architecture: string | null;
  /** `model_type` of config.json (`llama`), else the GGUF's `general.architecture`. */
  modelType: string | null;
  /** Parameter count: from the safetensors headers (or their index), else from the GGUF. */
  parameters: number | null;
  /** Where {@link parameters} came from. */
  parametersSource: 'safetensors' | 'safetensors-index' | 'gguf' | null;
  /** The dtype holding the most parameters (safetensors dtype such as `BF16`, or GGUF type such as `Q4_K`), else config's `torch_dtype`. */
  dtype: string | null;
  /** Per dtype: tensors, parameters, bytes (from the same source as {@link parameters}). */
  dtypes: Record<string, DtypeTotals>;
  /** config.json's `torch_dtype`. */
  torchDtype: string | null;
  quantisation: ModelQuantisation | null;
  /** config's `max_position_embeddings`, else the GGUF's context length. */
  contextLength: number | null;
  hiddenSize: number | null;
  layers: number | null;
  attentionHeads: number | null;
  keyValueHeads: number | null;
  vocabSize: number | null;
  sizes: {
    /** All files listed. */
    totalBytes: number;
    /** Weight files (safetensors, gguf, pytorch, onnx). */
    weightBytes: number;
    byKind: Partial<Record<ModelFileKind, number>>;
  };
  /** Files sorted by path. Hidden files (names starting with `.`) are skipped. */
  files: ModelFile[];
  config: HfConfig | null;
  generationConfig: HfGenerationConfig | null;
  tokenizer: HfTokenizerInfo | null;
  /** The safetensors index, where the model is sharded. */
  safetensorsIndex: ShardedSafetensorsInfo | null;
  /** Headers of the safetensors files (the shards, where indexed). */
  safetensors: SafetensorsInfo[];
  /** Headers of the GGUF files. */
  gguf: GgufInfo[];
  /** Odd but not fatal findings, for the person importing. */
  warnings: string[];
  /**
   * A PEFT adapter (LoRA) folder, from its `adapter_config.json`: the weights are the adapter's
   * only, to be applied over a base model (config.json, where present, is the base's).
   */
  adapter?: AdapterInfo | null;
}

/** What `adapter_config.json` says of a PEFT adapter. */
export interface AdapterInfo {
  /** `LORA`, … */
  peftType: string | null;
  /** `base_model_name_or_path` as the trainer wrote it (often a local folder). */
  baseModel: string | null;
  r: number | null;
  alpha: number | null;
  targetModules: string[];
  taskType: string | null;
}

/** Options for {@link inspectModelFolder}. */
export interface InspectOptions {
  /** Most files to list before refusing the folder (default 10,000). */
  maxFiles?: number;
  /** Deepest folder level to descend to (default 8). */
  maxDepth?: number;
  /**
   * Folders outside the model folder that its symlinks may point into (for example a Hugging Face
   * cache's `blobs` folder, whose snapshots are symlinks). By default a symlink leaving the folder is refused.
   */
  symlinkRoots?: string[];
}

const TOKENIZER = new Set<string>(TOKENIZER_FILES);

/** Classifies a file by its name. */
export function classifyModelFile(relPath: string): ModelFileKind {
  const name = path.posix.basename(relPath).toLowerCase();
  if (name.endsWith('.safetensors')) return 'safetensors';
  if (name.endsWith('.safetensors.index.json')) return 'safetensors-index';
  if (name.endsWith('.gguf')) return 'gguf';
  if (/\.(bin|pt|pth)\.index\.json$/.test(name)) return 'pytorch-index';
  if (/\.(bin|pt|pth|ckpt)$/.test(name)) return 'pytorch';
  if (name.endsWith('.onnx') || name.endsWith('.onnx_data') || name.endsWith('.onnx.data')) return 'onnx';
  if (TOKENIZER.has(name) || name === 'chat_template.jinja') return 'tokenizer';
  if (name === 'config.json' || name === 'generation_config.json') return 'config';
  return 'other';
}

const WEIGHT_KINDS: Record<string, ModelWeightFormat> = { safetensors: 'safetensors', gguf: 'gguf', pytorch: 'pytorch', onnx: 'onnx' };
/** Kinds that tell the weight format: the weights and their indexes. */
const FORMAT_OF: Record<string, ModelWeightFormat> = { ...WEIGHT_KINDS, 'safetensors-index': 'safetensors', 'pytorch-index': 'pytorch' };

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function fileType(st: { isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

async function walk(root: string, options: Required<InspectOptions>, warnings: string[]): Promise<ModelFile[]> {
  const files: ModelFile[] = [];
  const allowed = [root, ...options.symlinkRoots];
  const visit = async (relDir: string, depth: number): Promise<void> => {
    const entries = await readdir(path.join(root, relDir));
    entries.sort();
    for (const name of entries) {
      const rel = relDir ? `${relDir}/${name}` : name;
      if (name.startsWith('.')) continue;
      if (name.includes('\\')) throw new ModelMetadataError(`${path.join(root, rel)}: a name with a backslash is refused in a model folder`, path.join(root, rel));
      const full = path.join(root, rel);
      let st = await lstat(full);
      if (st.isSymbolicLink()) {
        const target = await realpath(full).catch(() => null);
        if (target === null) throw new ModelMetadataError(`${full} is a symlink that leads nowhere (broken link): refused`, full);
        if (!allowed.some((r) => inside(r, target))) {
          throw new ModelMetadataError(`${full} is a symlink to ${target}, outside the model folder ${root}: refused (copy the file in, or allow its folder)`, full);
        }
        st = await stat(full);
        if (st.isDirectory()) {
          warnings.push(`${rel} is a symlink to a folder: not followed`);
          continue;
        }
      }
      if (st.isDirectory()) {
        if (depth >= options.maxDepth) {
          warnings.push(`${rel}: deeper than ${options.maxDepth} levels, not listed`);
          continue;
        }
        await visit(rel, depth + 1);
        continue;
      }
      if (!st.isFile()) throw new ModelMetadataError(`${full} is ${fileType(st)}: a model folder holds regular files only`, full);
      files.push({ path: rel, size: st.size, kind: classifyModelFile(rel) });
      if (files.length > options.maxFiles) throw new ModelMetadataError(`${root} holds more than ${options.maxFiles} files: not a model folder, or give a narrower one`, root);
    }
  };
  await visit('', 0);
  return files;
}

/** GGUF files split by llama.cpp's gguf-split are named `<name>-00001-of-00003.gguf`. */
function ggufGroup(rel: string): string {
  return rel.replace(/-\d{5}-of-\d{5}\.gguf$/i, '.gguf');
}

const UNQUANTISED = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * Inspects a Hugging Face-format model folder on this machine (offline): lists its files, classifies
 * them, and reads `config.json`, `generation_config.json`, the tokenizer files, the safetensors
 * headers (or the sharded index and its shards) and GGUF headers. PyTorch `.bin`/`.pt` files are never
 * unpickled: they are listed with their size only. ONNX files are listed. Given a `.gguf` file instead
 * of a folder, inspects that file alone.
 *
 * Refuses symlinks that leave the folder, names with `..` in the model's own indexes, and anything that
 * is not a regular file or folder; skips hidden files.
 *
 * @throws {@link ModelMetadataError} with a message for the person importing: a folder without
 * `config.json` and without a GGUF, a folder with no weights, a bad header, a refused path.
 */
export async function inspectModelFolder(dir: string, options: InspectOptions = {}): Promise<ModelFolderInfo> {
  const opts: Required<InspectOptions> = { maxFiles: options.maxFiles ?? 10_000, maxDepth: options.maxDepth ?? 8, symlinkRoots: [] };
  const given = path.resolve(dir);
  const root = await realpath(given).catch((err: NodeJS.ErrnoException) => {
    throw new ModelMetadataError(`${given}: cannot open it (${err.code ?? err.message})`, given);
  });
  for (const r of options.symlinkRoots ?? []) opts.symlinkRoots.push(await realpath(path.resolve(r)).catch(() => path.resolve(r)));
  const warnings: string[] = [];
  const st = await stat(root);
  if (st.isFile()) {
    if (classifyModelFile(root) !== 'gguf') {
      throw new ModelMetadataError(`${given} is a file: give a model folder (with config.json), or a .gguf file`, given);
    }
    const g = await readGgufHeader(root);
    return summarise(root, [{ path: path.basename(root), size: st.size, kind: 'gguf' }], null, null, null, null, [], [g], g.warnings);
  }
  if (!st.isDirectory()) throw new ModelMetadataError(`${given} is neither a folder nor a file`, given);
  const files = await walk(root, opts, warnings);
  const top = (name: string) => files.find((f) => f.path === name);
  const ggufFiles = files.filter((f) => f.kind === 'gguf');
  if (!top('config.json') && ggufFiles.length === 0) {
    throw new ModelMetadataError(`${given} has no config.json: a Hugging Face model folder needs one (or give a .gguf file)`, given);
  }
  if (!files.some((f) => f.kind in FORMAT_OF)) {
    throw new ModelMetadataError(`${given} holds no weights (no .safetensors, .gguf, .bin/.pt or .onnx file): nothing to import`, given);
  }
  const config = top('config.json') ? await readHfConfig(path.join(root, 'config.json')) : null;
  const adapter = top('adapter_config.json') ? await readAdapterConfig(path.join(root, 'adapter_config.json'), warnings) : null;
  const generationConfig = top('generation_config.json') ? await readGenerationConfig(path.join(root, 'generation_config.json')) : null;
  const tokenizer = files.some((f) => f.kind === 'tokenizer' && !f.path.includes('/')) ? await readTokenizerInfo(root) : null;

  // Safetensors: the index where there is one (its shards), plus any file it does not name.
  const indexes = files.filter((f) => f.kind === 'safetensors-index' && !f.path.includes('/'));
  let safetensorsIndex: ShardedSafetensorsInfo | null = null;
  if (indexes.length > 0) {
    const chosen = indexes.find((f) => f.path === 'model.safetensors.index.json') ?? indexes[0]!;
    if (indexes.length > 1) warnings.push(`${indexes.length} safetensors indexes: ${chosen.path} used`);
    safetensorsIndex = await readSafetensorsIndex(path.join(root, chosen.path));
    warnings.push(...safetensorsIndex.warnings);
  }
  const indexed = new Set(safetensorsIndex?.shards.map((s) => path.relative(root, s.path).split(path.sep).join('/')) ?? []);
  const safetensors: SafetensorsInfo[] = [...(safetensorsIndex?.shards ?? [])];
  for (const f of files.filter((x) => x.kind === 'safetensors' && !indexed.has(x.path))) {
    safetensors.push(await readSafetensorsHeader(path.join(root, f.path)));
    if (safetensorsIndex) warnings.push(`${f.path} is not named by ${path.basename(safetensorsIndex.path)}: not counted`);
  }
  const gguf: GgufInfo[] = [];
  for (const f of ggufFiles) {
    const g = await readGgufHeader(path.join(root, f.path));
    gguf.push(g);
    warnings.push(...g.warnings.map((w) => `${f.path}: ${w}`));
  }
  const info = summarise(root, files, config, generationConfig, tokenizer, safetensorsIndex, safetensors, gguf, warnings);
  return adapter ? { ...info, adapter } : info;
}

/** Reads a PEFT `adapter_config.json`, best effort (a bad one is a warning, not a refusal). */
async function readAdapterConfig(file: string, warnings: string[]): Promise<AdapterInfo | null> {
  try {
    const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('not a JSON object');
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const modules = raw.target_modules;
    return {
      peftType: str(raw.peft_type),
      baseModel: str(raw.base_model_name_or_path),
      r: num(raw.r),
      alpha: num(raw.lora_alpha),
      targetModules: Array.isArray(modules) ? modules.filter((m): m is string => typeof m === 'string') : typeof modules === 'string' ? [modules] : [],
      taskType: str(raw.task_type),
    };
  } catch (err) {
    warnings.push(`adapter_config.json could not be read: ${(err as Error).message}`);
    return null;
  }
}

function summarise(
  root: string,
  files: ModelFile[],
  config: HfConfig | null,
  generationConfig: HfGenerationConfig | null,
  tokenizer: HfTokenizerInfo | null,
  safetensorsIndex: ShardedSafetensorsInfo | null,
  safetensors: SafetensorsInfo[],
  gguf: GgufInfo[],
  warnings: string[],
): ModelFolderInfo {
  const formats = [...new Set(files.map((f) => FORMAT_OF[f.kind]).filter((k): k is ModelWeightFormat => k !== undefined))].sort();
  const format: ModelFolderInfo['format'] = formats.length === 1 ? formats[0]! : 'mixed';
  if (formats.length > 1) warnings.push(`the folder holds weights in ${formats.length} formats (${formats.join(', ')})`);

  let parameters: number | null = null;
  let parametersSource: ModelFolderInfo['parametersSource'] = null;
  let dtypes: Record<string, DtypeTotals> = {};
  const counted = safetensorsIndex ? safetensorsIndex.shards : safetensors;
  if (counted.length > 0) {
    parameters = counted.reduce((n, s) => n + s.parameters, 0);
    parametersSource = safetensorsIndex ? 'safetensors-index' : 'safetensors';
    dtypes = dtypeTotals(counted.flatMap((s) => s.tensors));
    if (!safetensorsIndex && counted.length > 1) warnings.push(`${counted.length} safetensors files without an index: their parameters are added up`);
  }
  // GGUF: files split by gguf-split make one model; several groups are several models (e.g. quantisations).
  const groups = new Map<string, GgufInfo[]>();
  for (const g of gguf) {
    const key = ggufGroup(path.relative(root, g.path) || path.basename(g.path));
    groups.set(key, [...(groups.get(key) ?? []), g]);
  }
  const [firstGroup] = groups.values();
  const primary = firstGroup ? (firstGroup.find((g) => g.architecture !== null) ?? firstGroup[0]!) : null;
  if (groups.size > 1) warnings.push(`the folder holds ${groups.size} GGUF models (${[...groups.keys()].join(', ')}): the summary describes ${[...groups.keys()][0]}`);
  if (parameters === null && firstGroup) {
    parameters = firstGroup.reduce((n, g) => n + g.parameters, 0);
    parametersSource = 'gguf';
    dtypes = dtypeTotals(firstGroup.flatMap((g) => g.tensors.map((t) => ({ dtype: t.type, parameters: t.parameters, bytes: t.bytes ?? 0 }))));
  }
  if (parameters === null && formats.includes('pytorch')) {
    warnings.push('parameter count unknown: PyTorch .bin/.pt weights are not unpickled, and there is no safetensors file or index');
  } else if (parameters === null) {
    warnings.push('parameter count unknown: no safetensors or GGUF file to read it from');
  }

  let quantisation: ModelQuantisation | null = null;
  if (config?.quantization) {
    quantisation = { method: config.quantization.method, bits: config.quantization.bits, name: null, source: 'config' };
  } else if (primary?.quantisation && !UNQUANTISED.has(primary.quantisation)) {
    quantisation = { method: 'gguf', bits: null, name: primary.quantisation, source: 'gguf' };
  }
  const dtype = dominantDtype(dtypes) ?? (primary?.quantisation ?? null) ?? config?.torchDtype ?? null;

  const byKind: Partial<Record<ModelFileKind, number>> = {};
  for (const f of files) byKind[f.kind] = (byKind[f.kind] ?? 0) + f.size;
  return {
    root,
    format,
    formats,
    architecture: config?.architectures[0] ?? primary?.architecture ?? null,
    modelType: config?.modelType ?? primary?.architecture ?? null,
    parameters,
    parametersSource,
    dtype,
    dtypes,
    torchDtype: config?.torchDtype ?? null,
    quantisation,
    contextLength: config?.maxPositionEmbeddings ?? primary?.contextLength ?? null,
    hiddenSize: config?.hiddenSize ?? primary?.embeddingLength ?? null,
    layers: config?.numHiddenLayers ?? primary?.blockCount ?? null,
    attentionHeads: config?.numAttentionHeads ?? primary?.headCount ?? null,
    keyValueHeads: config?.numKeyValueHeads ?? primary?.headCountKv ?? null,
    vocabSize: config?.vocabSize ?? vocabFromGguf(primary),
    sizes: {
      totalBytes: files.reduce((n, f) => n + f.size, 0),
      weightBytes: files.filter((f) => f.kind in WEIGHT_KINDS).reduce((n, f) => n + f.size, 0),
      byKind,
    },
    files,
    config,
    generationConfig,
    tokenizer,
    safetensorsIndex,
    safetensors,
    gguf,
    warnings,
  };
}

function vocabFromGguf(g: GgufInfo | null): number | null {
  if (!g) return null;
  const v = g.metadata[`${g.architecture ?? ''}.vocab_size`];
  if (typeof v === 'number') return v;
  const tokens = g.metadata['tokenizer.ggml.tokens'];
  return Array.isArray(tokens) ? tokens.length : null;
}
