import { readFile, lstat } from 'node:fs/promises';
import path from 'node:path';
import { ModelMetadataError } from './errors.js';

/** A model's quantisation as its `config.json` declares it (`quantization_config`). */
export interface HfQuantization {
  /** `quant_method` (`gptq`, `awq`, `bitsandbytes`, `fp8`, `compressed-tensors`, …), or `unknown`. */
  method: string;
  /** Bits per weight where the config says (`bits`, `load_in_4bit`/`load_in_8bit`, fp8 → 8), else `null`. */
  bits: number | null;
  /** `group_size` where given. */
  groupSize: number | null;
  /** The `quantization_config` object as written. */
  raw: Record<string, unknown>;
}

/** What {@link readHfConfig} reads from a Hugging Face `config.json`. */
export interface HfConfig {
  path: string;
  /** `architectures`, e.g. `["LlamaForCausalLM"]`. */
  architectures: string[];
  /** `model_type`, e.g. `llama`. */
  modelType: string | null;
  hiddenSize: number | null;
  numHiddenLayers: number | null;
  numAttentionHeads: number | null;
  /** `num_key_value_heads` (grouped-query attention); `null` where absent (then equal to the attention heads). */
  numKeyValueHeads: number | null;
  intermediateSize: number | null;
  vocabSize: number | null;
  maxPositionEmbeddings: number | null;
  /** `torch_dtype`, or `dtype` as newer transformers write it, e.g. `bfloat16`. */
  torchDtype: string | null;
  quantization: HfQuantization | null;
  /** The whole file as parsed. */
  raw: Record<string, unknown>;
}

/** What {@link readGenerationConfig} reads from `generation_config.json`. */
export interface HfGenerationConfig {
  path: string;
  bosTokenId: number | number[] | null;
  eosTokenId: number | number[] | null;
  padTokenId: number | number[] | null;
  maxLength: number | null;
  maxNewTokens: number | null;
  doSample: boolean | null;
  temperature: number | null;
  topP: number | null;
  topK: number | null;
  raw: Record<string, unknown>;
}

/** The tokenizer files this reader looks for, in a model folder's top level. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer.model',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'vocab.txt',
  'added_tokens.json',
  'spiece.model',
] as const;

/** What {@link readTokenizerInfo} finds. */
export interface HfTokenizerInfo {
  /** Which of {@link TOKENIZER_FILES} are present (regular files). */
  files: string[];
  /** `tokenizer_class` from `tokenizer_config.json`. */
  tokenizerClass: string | null;
  /** `model_max_length` from `tokenizer_config.json` (absurd sentinels such as 1e30 become `null`). */
  modelMaxLength: number | null;
  /** Whether a chat template is given (`chat_template` in `tokenizer_config.json`, or a `chat_template.jinja` file). */
  hasChatTemplate: boolean;
}

async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelMetadataError(`${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelMetadataError(`${file}: not valid JSON (${(err as Error).message})`, file);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ModelMetadataError(`${file}: not a JSON object`, file);
  return value as Record<string, unknown>;
}

const int = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const ids = (v: unknown): number | number[] | null =>
  int(v) ?? (Array.isArray(v) && v.every((x) => Number.isInteger(x)) ? (v as number[]) : null);

/** The first of `keys` holding an integer, in `cfg` or else in its `text_config` (multimodal models nest the language model's there). */
function pick(cfg: Record<string, unknown>, keys: string[]): number | null {
  const text = typeof cfg['text_config'] === 'object' && cfg['text_config'] !== null ? (cfg['text_config'] as Record<string, unknown>) : {};
  for (const source of [cfg, text]) for (const k of keys) if (int(source[k]) !== null) return int(source[k]);
  return null;
}

/** Reads a `quantization_config` object. */
export function parseQuantizationConfig(q: unknown): HfQuantization | null {
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return null;
  const raw = q as Record<string, unknown>;
  const method = str(raw['quant_method'])?.toLowerCase() ?? (raw['load_in_4bit'] || raw['load_in_8bit'] ? 'bitsandbytes' : 'unknown');
  let bits = int(raw['bits']) ?? int(raw['w_bit']) ?? int(raw['weight_bits']);
  if (bits === null && raw['load_in_4bit'] === true) bits = 4;
  if (bits === null && raw['load_in_8bit'] === true) bits = 8;
  if (bits === null && method.startsWith('fp8')) bits = 8;
  if (bits === null && (method === 'mxfp4' || method === 'nvfp4')) bits = 4;
  return { method, bits, groupSize: int(raw['group_size']) ?? int(raw['q_group_size']), raw };
}

/**
 * Reads a Hugging Face `config.json`: architecture, model type, sizes, dtype and quantisation. Keys
 * of older configs are understood too (`n_embd`, `n_layer`, `n_head`, `n_positions`, `d_model`…),
 * and a multimodal config's `text_config`.
 *
 * @throws {@link ModelMetadataError} where the file is missing, not JSON, or not an object.
 */
export async function readHfConfig(file: string): Promise<HfConfig> {
  const raw = await readJsonObject(file);
  const archs = raw['architectures'];
  const dtype = str(raw['torch_dtype']) ?? str(raw['dtype']);
  return {
    path: file,
    architectures: Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [],
    modelType: str(raw['model_type']),
    hiddenSize: pick(raw, ['hidden_size', 'n_embd', 'd_model']),
    numHiddenLayers: pick(raw, ['num_hidden_layers', 'n_layer', 'num_layers', 'n_layers']),
    numAttentionHeads: pick(raw, ['num_attention_heads', 'n_head', 'num_heads', 'n_heads']),
    numKeyValueHeads: pick(raw, ['num_key_value_heads', 'num_kv_heads', 'n_kv_heads']),
    intermediateSize: pick(raw, ['intermediate_size', 'n_inner', 'ffn_dim', 'd_ff']),
    vocabSize: pick(raw, ['vocab_size']),
    maxPositionEmbeddings: pick(raw, ['max_position_embeddings', 'n_positions', 'max_seq_len', 'seq_length', 'n_ctx']),
    torchDtype: dtype,
    quantization: parseQuantizationConfig(raw['quantization_config']),
    raw,
  };
}

/**
 * Reads `generation_config.json` (token ids and sampling defaults).
 *
 * @throws {@link ModelMetadataError} where the file is missing, not JSON, or not an object.
 */
export async function readGenerationConfig(file: string): Promise<HfGenerationConfig> {
  const raw = await readJsonObject(file);
  const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);
  return {
    path: file,
    bosTokenId: ids(raw['bos_token_id']),
    eosTokenId: ids(raw['eos_token_id']),
    padTokenId: ids(raw['pad_token_id']),
    maxLength: int(raw['max_length']),
    maxNewTokens: int(raw['max_new_tokens']),
    doSample: typeof raw['do_sample'] === 'boolean' ? raw['do_sample'] : null,
    temperature: num(raw['temperature']),
    topP: num(raw['top_p']),
    topK: int(raw['top_k']),
    raw,
  };
}

/**
 * Looks for tokenizer files in `dir` (regular files only, symlinks not followed) and reads
 * `tokenizer_config.json` where present.
 *
 * @throws {@link ModelMetadataError} where `tokenizer_config.json` is there but not a JSON object.
 */
export async function readTokenizerInfo(dir: string): Promise<HfTokenizerInfo> {
  const files: string[] = [];
  for (const name of TOKENIZER_FILES) {
    const st = await lstat(path.join(dir, name)).catch(() => null);
    if (st?.isFile()) files.push(name);
  }
  let tokenizerClass: string | null = null;
  let modelMaxLength: number | null = null;
  let hasChatTemplate = (await lstat(path.join(dir, 'chat_template.jinja')).catch(() => null))?.isFile() ?? false;
  if (files.includes('tokenizer_config.json')) {
    const tc = await readJsonObject(path.join(dir, 'tokenizer_config.json'));
    tokenizerClass = str(tc['tokenizer_class']);
    const m = tc['model_max_length'];
    modelMaxLength = typeof m === 'number' && Number.isSafeInteger(m) ? m : null;
    if (tc['chat_template'] !== undefined && tc['chat_template'] !== null) hasChatTemplate = true;
  }
  return { files, tokenizerClass, modelMaxLength, hasChatTemplate };
}
