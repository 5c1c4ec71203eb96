/**
 * Model-file metadata readers for the models plugin: what a model's own files say about it, read
 * offline from this machine's disk without loading the weights.
 *
 * - {@link readSafetensorsHeader} / {@link readSafetensorsIndex}: tensors, dtypes and parameter count
 *   from a `.safetensors` header (only its first 8 + N bytes are read), or summed over a sharded model.
 * - {@link readGgufHeader}: GGUF v2/v3 metadata, tensor infos, architecture, context length,
 *   quantisation and parameter count, read forward in chunks.
 * - {@link readHfConfig}, {@link readGenerationConfig}, {@link readTokenizerInfo}: a Hugging Face
 *   folder's `config.json`, `generation_config.json` and tokenizer files.
 * - {@link inspectModelFolder}: all of the above over a Hugging Face-format folder (or one `.gguf`
 *   file), with the file list, sizes and warnings.
 *
 * Every reader throws {@link ModelMetadataError} with a message meant for the person who gave the file.
 *
 * @packageDocumentation
 */
export { ModelMetadataError, resolveInside } from './errors.js';
export {
  readSafetensorsHeader,
  readSafetensorsIndex,
  dtypeTotals,
  dominantDtype,
  SAFETENSORS_DTYPE_BITS,
  SAFETENSORS_MAX_HEADER_BYTES,
  type SafetensorsInfo,
  type SafetensorsTensor,
  type ShardedSafetensorsInfo,
  type DtypeTotals,
} from './safetensors.js';
export {
  readGgufHeader,
  GGML_TYPES,
  GGUF_FILE_TYPES,
  GGUF_VALUE_TYPES,
  type GgufInfo,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueTypeName,
  type ReadGgufOptions,
} from './gguf.js';
export {
  readHfConfig,
  readGenerationConfig,
  readTokenizerInfo,
  parseQuantizationConfig,
  TOKENIZER_FILES,
  type HfConfig,
  type HfGenerationConfig,
  type HfQuantization,
  type HfTokenizerInfo,
} from './config.js';
export {
  inspectModelFolder,
  classifyModelFile,
  type InspectOptions,
  type ModelFile,
  type ModelFileKind,
  type ModelFolderInfo,
  type ModelQuantisation,
  type ModelWeightFormat,
} from './folder.js';
