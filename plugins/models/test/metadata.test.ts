// Real-data tests of the model-file metadata readers: a tiny Llama is built with PyTorch and saved by
// transformers (safetensors, single and sharded), a small GGUF is written by gguf-py's GGUFWriter, and
// what the TypeScript readers read is compared exactly with what torch, safetensors.safe_open and
// gguf.GGUFReader report (test/fixtures/make_models.py). The Python side lives in a venv that
// scripts/provision-python-ml.sh installs once (about a minute and a quarter with the torch wheel on
// disk) and reuses afterwards.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile, truncate, open } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  inspectModelFolder,
  ModelMetadataError,
  readGgufHeader,
  readHfConfig,
  readSafetensorsHeader,
  readSafetensorsIndex,
  resolveInside,
  type GgufValue,
} from '../src/metadata/index.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');

interface StReport {
  metadata: Record<string, string> | null;
  tensors: Record<string, { dtype: string; shape: number[]; numel: number }>;
  size: number;
}
interface FolderReport {
  files: string[];
  parameters: number;
  torch_dtypes: Record<string, number>;
  safetensors: Record<string, StReport>;
  config: Record<string, unknown>;
  index?: { metadata: Record<string, number>; weight_map: Record<string, string> } | null;
}
interface GgufReport {
  version: number;
  size: number;
  parameters: number;
  fields: Record<string, { type: string; value: unknown }>;
  tensors: { name: string; type: string; dims: number[]; n_elements: number; n_bytes: number; data_offset: number }[];
}
interface Report {
  versions: Record<string, string>;
  llama: FolderReport;
  llama_sharded: FolderReport;
  gguf: GgufReport;
  gguf_no_file_type: GgufReport;
}

let work: string;
let models: string;
let report: Report;

beforeAll(async () => {
  const started = Date.now();
  const provision = await run('sh', [path.join(repo, 'scripts/provision-python-ml.sh')], { maxBuffer: 16 << 20 });
  const python = provision.stdout.trim().split('\n').pop()!;
  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-models-'));
  models = path.join(work, 'py');
  const out = await run(python, [path.join(here, 'fixtures/make_models.py'), models], { maxBuffer: 64 << 20 });
  // From its first line that opens the JSON: a library may log to stdout first (DeepSpeed, when
  // installed beside transformers, announces its accelerator there).
  report = JSON.parse(out.stdout.slice(out.stdout.search(/^\{/m))) as Report;
  console.log(`python side ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(report.versions)}`);
}, 20 * 60_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** A safetensors file's tensors as the Python report writes them. */
function tsTensors(info: Awaited<ReturnType<typeof readSafetensorsHeader>>) {
  return Object.fromEntries(info.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, numel: t.parameters }]));
}

/** A GGUF value as the Python report writes it (integers beyond 2^53 as {bigint}). */
function asPython(v: GgufValue): unknown {
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (Array.isArray(v)) return v.map(asPython);
  return v;
}

async function expectMetadataError(p: Promise<unknown>, message: RegExp | string): Promise<ModelMetadataError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelMetadataError);
  if (typeof message === 'string') expect((err as Error).message).toBe(message);
  else expect((err as Error).message).toMatch(message);
  return err as ModelMetadataError;
}

describe('safetensors, compared with Python', () => {
  it('reads the single-file model exactly as safe_open and torch see it', async () => {
    const file = path.join(models, 'llama/model.safetensors');
    const py = report.llama.safetensors['model.safetensors']!;
    const info = await readSafetensorsHeader(file);
    expect(tsTensors(info)).toEqual(py.tensors);
    expect(info.tensors.map((t) => t.name).sort()).toEqual(Object.keys(py.tensors).sort());
    expect(info.metadata).toEqual(py.metadata);
    expect(info.fileSize).toBe(py.size);
    expect(info.parameters).toBe(report.llama.parameters); // sum(p.numel() for p in model.parameters())
    expect(info.dtype).toBe('F32');
    expect(info.dtypes).toEqual({ F32: { tensors: info.tensors.length, parameters: report.llama.torch_dtypes['float32'], bytes: info.tensorBytes } });
    expect(info.tensorBytes).toBe(info.fileSize - info.dataStart);
  });

  it('reads the sharded model through its index, shard by shard', async () => {
    const sharded = report.llama_sharded;
    const info = await readSafetensorsIndex(path.join(models, 'llama-sharded/model.safetensors.index.json'));
    expect(info.weightMap).toEqual(sharded.index!.weight_map);
    expect(info.shards.map((s) => path.basename(s.path)).sort()).toEqual(Object.keys(sharded.safetensors).sort());
    for (const shard of info.shards) {
      const py = sharded.safetensors[path.basename(shard.path)]!;
      expect(tsTensors(shard)).toEqual(py.tensors);
      expect(shard.metadata).toEqual(py.metadata);
      expect(shard.fileSize).toBe(py.size);
    }
    expect(info.shards.length).toBeGreaterThan(1);
    expect(info.parameters).toBe(sharded.parameters);
    expect(info.dtype).toBe('BF16');
    expect(info.dtypes['BF16']!.parameters).toBe(sharded.torch_dtypes['bfloat16']);
    expect(info.tensorBytes).toBe(sharded.index!.metadata['total_size']);
    expect(info.declaredTotalSize).toBe(sharded.index!.metadata['total_size']);
    expect(info.warnings).toEqual([]);
  });
});

describe('GGUF, compared with gguf.GGUFReader', () => {
  it.each([
    ['tiny.gguf', 'gguf'],
    ['no-file-type.gguf', 'gguf_no_file_type'],
  ] as const)('reads every metadata key, value type and tensor info of %s exactly', async (name, key) => {
    const py = report[key];
    const info = await readGgufHeader(path.join(models, name));
    expect(info.version).toBe(py.version);
    expect(info.fileSize).toBe(py.size);
    expect(Object.keys(info.metadata)).toEqual(Object.keys(py.fields));
    for (const [k, field] of Object.entries(py.fields)) {
      expect({ key: k, type: info.metadataTypes[k], value: asPython(info.metadata[k]!) }).toEqual({ key: k, type: field.type, value: field.value });
    }
    expect(info.tensorCount).toBe(py.tensors.length);
    expect(
      info.tensors.map((t) => ({ name: t.name, type: t.type, dims: t.dims, n_elements: t.parameters, n_bytes: t.bytes, data_offset: t.fileOffset })),
    ).toEqual(py.tensors);
    expect(info.parameters).toBe(py.parameters);
    if (key === 'gguf') {
      expect(info.metadata['test.u64_big']).toBe(2n ** 60n + 1n);
      expect(info.metadata['test.u64']).toBe(2 ** 40 + 3);
    }
  });

  it('derives architecture, sizes and quantisation', async () => {
    const info = await readGgufHeader(path.join(models, 'tiny.gguf'), { chunkSize: 64 }); // tiny chunks: reads across chunk edges
    expect({
      architecture: info.architecture,
      name: info.name,
      contextLength: info.contextLength,
      embeddingLength: info.embeddingLength,
      blockCount: info.blockCount,
      headCount: info.headCount,
      headCountKv: info.headCountKv,
      fileType: info.fileType,
      quantisation: info.quantisation,
    }).toEqual({
      architecture: 'llama',
      name: 'tiny-llama-test',
      contextLength: 512,
      embeddingLength: 64,
      blockCount: 2,
      headCount: 4,
      headCountKv: 2,
      fileType: { id: 7, name: 'Q8_0' },
      quantisation: 'Q8_0',
    });
    expect(Object.keys(info.tensorTypes).sort()).toEqual(['F16', 'F32', 'Q4_0', 'Q8_0']);
    expect(info.tensorTypes['Q4_0']).toEqual({ tensors: 1, parameters: 8192, bytes: 4608 });
    expect(info.warnings).toEqual([]);
  });

  it('derives the quantisation from the tensor types where general.file_type is missing', async () => {
    const info = await readGgufHeader(path.join(models, 'no-file-type.gguf'));
    expect(info.fileType).toBeNull();
    expect(info.quantisation).toBe('Q4_0'); // the matrix holding most elements; the 1-D norm is F32
    expect(info.architecture).toBe('qwen2');
    expect(info.contextLength).toBe(1024);
  });

  it('reads a GGUF v2 file (same layout, older version number)', async () => {
    const v2 = path.join(work, 'v2.gguf');
    await copyFile(path.join(models, 'tiny.gguf'), v2);
    const fh = await open(v2, 'r+');
    await fh.write(Buffer.from([2, 0, 0, 0]), 0, 4, 4);
    await fh.close();
    const info = await readGgufHeader(v2);
    expect(info.version).toBe(2);
    expect(info.parameters).toBe(report.gguf.parameters);
  });
});

describe('model folders', () => {
  it('inspects the saved Hugging Face folder', async () => {
    const dir = path.join(models, 'llama');
    const info = await inspectModelFolder(dir);
    const cfg = report.llama.config;
    expect({
      format: info.format,
      architecture: info.architecture,
      modelType: info.modelType,
      parameters: info.parameters,
      parametersSource: info.parametersSource,
      dtype: info.dtype,
      torchDtype: info.torchDtype,
      quantisation: info.quantisation,
      contextLength: info.contextLength,
      hiddenSize: info.hiddenSize,
      layers: info.layers,
      attentionHeads: info.attentionHeads,
      keyValueHeads: info.keyValueHeads,
      vocabSize: info.vocabSize,
    }).toEqual({
      format: 'safetensors',
      architecture: (cfg['architectures'] as string[])[0],
      modelType: cfg['model_type'],
      parameters: report.llama.parameters,
      parametersSource: 'safetensors',
      dtype: 'F32',
      torchDtype: cfg['dtype'] ?? cfg['torch_dtype'],
      quantisation: null,
      contextLength: cfg['max_position_embeddings'],
      hiddenSize: cfg['hidden_size'],
      layers: cfg['num_hidden_layers'],
      attentionHeads: cfg['num_attention_heads'],
      keyValueHeads: cfg['num_key_value_heads'],
      vocabSize: cfg['vocab_size'],
    });
    expect(info.files.map((f) => f.path)).toEqual(report.llama.files);
    expect(info.files.find((f) => f.path === 'model.safetensors')).toEqual({ path: 'model.safetensors', size: report.llama.safetensors['model.safetensors']!.size, kind: 'safetensors' });
    expect(info.files.find((f) => f.path === 'tokenizer.json')?.kind).toBe('tokenizer');
    expect(info.tokenizer?.files).toEqual(report.llama.files.filter((f) => f.startsWith('tokenizer')));
    expect(info.tokenizer?.modelMaxLength).toBe(512);
    expect(info.generationConfig?.eosTokenId).toBe(2);
    expect(info.sizes.weightBytes).toBe(report.llama.safetensors['model.safetensors']!.size);
    expect(info.warnings).toEqual([]);
  });

  it('inspects the sharded folder through its index', async () => {
    const info = await inspectModelFolder(path.join(models, 'llama-sharded'));
    expect(info.format).toBe('safetensors');
    expect(info.parametersSource).toBe('safetensors-index');
    expect(info.parameters).toBe(report.llama_sharded.parameters);
    expect(info.dtype).toBe('BF16');
    expect(info.torchDtype).toBe('bfloat16');
    expect(info.safetensors.length).toBe(Object.keys(report.llama_sharded.safetensors).length);
    expect(info.sizes.weightBytes).toBe(Object.values(report.llama_sharded.safetensors).reduce((n, s) => n + s.size, 0));
    expect(info.warnings).toEqual([]);
  });

  it('inspects a GGUF given as a file, and a folder holding only a GGUF', async () => {
    const file = await inspectModelFolder(path.join(models, 'tiny.gguf'));
    const dir = path.join(work, 'gguf-only');
    await mkdir(dir);
    await copyFile(path.join(models, 'tiny.gguf'), path.join(dir, 'tiny-q8_0.gguf'));
    const folder = await inspectModelFolder(dir);
    for (const info of [file, folder]) {
      expect(info.format).toBe('gguf');
      expect(info.architecture).toBe('llama');
      expect(info.parameters).toBe(report.gguf.parameters);
      expect(info.parametersSource).toBe('gguf');
      expect(info.quantisation).toEqual({ method: 'gguf', bits: null, name: 'Q8_0', source: 'gguf' });
      expect(info.contextLength).toBe(512);
      expect(info.vocabSize).toBe(256);
      expect(info.config).toBeNull();
    }
  });

  it('lists PyTorch .bin weights without unpickling them, and says the parameter count is unknown', async () => {
    const dir = path.join(work, 'pytorch');
    await mkdir(dir);
    await copyFile(path.join(models, 'llama/config.json'), path.join(dir, 'config.json'));
    await writeFile(path.join(dir, 'pytorch_model.bin'), Buffer.alloc(1000, 7)); // not a pickle: never opened
    await writeFile(path.join(dir, 'model.onnx'), Buffer.alloc(10));
    await writeFile(path.join(dir, '.hidden'), 'skipped');
    const info = await inspectModelFolder(dir);
    expect(info.format).toBe('mixed');
    expect(info.formats).toEqual(['onnx', 'pytorch']);
    expect(info.parameters).toBeNull();
    expect(info.files).toEqual([
      { path: 'config.json', size: expect.any(Number), kind: 'config' },
      { path: 'model.onnx', size: 10, kind: 'onnx' },
      { path: 'pytorch_model.bin', size: 1000, kind: 'pytorch' },
    ]);
    expect(info.warnings.join('\n')).toMatch(/parameter count unknown: PyTorch \.bin\/\.pt weights are not unpickled/);
    expect(info.architecture).toBe('LlamaForCausalLM');
  });

  it('reads quantization_config from config.json', async () => {
    const dir = path.join(work, 'gptq');
    await mkdir(dir);
    const cfg = JSON.parse(await readFile(path.join(models, 'llama/config.json'), 'utf8')) as Record<string, unknown>;
    cfg['quantization_config'] = { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: false };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await copyFile(path.join(models, 'llama/model.safetensors'), path.join(dir, 'model.safetensors'));
    expect((await inspectModelFolder(dir)).quantisation).toEqual({ method: 'gptq', bits: 4, name: null, source: 'config' });
    cfg['quantization_config'] = { load_in_4bit: true, bnb_4bit_quant_type: 'nf4' };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
    expect((await readHfConfig(path.join(dir, 'config.json'))).quantization).toMatchObject({ method: 'bitsandbytes', bits: 4 });
  });
});

describe('bad input gets a clear message', () => {
  /** A safetensors file from a header object and a data length. */
  async function craft(name: string, header: unknown, dataBytes: number, declared?: bigint): Promise<string> {
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(declared ?? BigInt(json.length));
    const file = path.join(work, name);
    await writeFile(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
    return file;
  }

  it('a truncated safetensors file', async () => {
    const cut = path.join(work, 'cut.safetensors');
    await copyFile(path.join(models, 'llama/model.safetensors'), cut);
    const { headerLength, fileSize } = await readSafetensorsHeader(cut);
    await truncate(cut, Math.floor(fileSize / 2));
    await expectMetadataError(readSafetensorsHeader(cut), /has data_offsets \[\d+, \d+\], outside the file's \d+-byte data section \(the file is truncated or the header wrong\)/);
    await truncate(cut, 8 + Math.floor(headerLength / 2));
    await expectMetadataError(readSafetensorsHeader(cut), `${cut}: declares a header of ${headerLength} bytes but the file holds only ${Math.floor(headerLength / 2)} after the length: the file is truncated`);
    await truncate(cut, 5);
    await expectMetadataError(readSafetensorsHeader(cut), /is 5 bytes long: a safetensors file starts with an 8-byte header length/);
  });

  it('an absurd header length', async () => {
    const file = await craft('absurd.safetensors', {}, 0, 2n ** 40n);
    await expectMetadataError(readSafetensorsHeader(file), `${file}: declares a header of ${2n ** 40n} bytes, more than the 104857600-byte limit: not a safetensors file, or a corrupt one`);
  });

  it('offsets outside the file, gaps, overlaps, bad dtype, wrong byte count, bad JSON', async () => {
    const outside = await craft('outside.safetensors', { w: { dtype: 'F32', shape: [250], data_offsets: [0, 1000] } }, 16);
    await expectMetadataError(readSafetensorsHeader(outside), /tensor "w" has data_offsets \[0, 1000\], outside the file's 16-byte data section/);
    const gap = await craft('gap.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16);
    await expectMetadataError(readSafetensorsHeader(gap), /there is a gap in the data section before tensor "a" \(bytes 0 to 8 belong to no tensor\)/);
    const overlap = await craft('overlap.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12);
    await expectMetadataError(readSafetensorsHeader(overlap), /tensor "b" overlaps the tensor before it/);
    const dtype = await craft('dtype.safetensors', { a: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }, 1);
    await expectMetadataError(readSafetensorsHeader(dtype), /tensor "a" has dtype "Q4", which is not a safetensors dtype/);
    const size = await craft('size.safetensors', { a: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, 8);
    await expectMetadataError(readSafetensorsHeader(size), /tensor "a" \(F16, shape \[3\]\) should hold 6 bytes but its data_offsets \[0, 8\] span 8/);
    const trailing = await craft('trailing.safetensors', { a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 5);
    await expectMetadataError(readSafetensorsHeader(trailing), /the tensors cover 2 bytes of data but the file holds 5 after the header/);
    const notJson = path.join(work, 'notjson.safetensors');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(5n);
    await writeFile(notJson, Buffer.concat([len, Buffer.from('{nope')]));
    await expectMetadataError(readSafetensorsHeader(notJson), /the header is not valid JSON/);
  });

  it('a bad GGUF magic, a truncated GGUF, an unsupported version', async () => {
    const bad = path.join(work, 'bad.gguf');
    await writeFile(bad, Buffer.concat([Buffer.from('GGML'), Buffer.alloc(60)]));
    await expectMetadataError(readGgufHeader(bad), `${bad}: does not start with the GGUF magic "GGUF" (it starts with "GGML", bytes 47474d4c): not a GGUF file`);
    const cut = path.join(work, 'cut.gguf');
    await copyFile(path.join(models, 'tiny.gguf'), cut);
    await truncate(cut, 3000); // inside the token list
    await expectMetadataError(readGgufHeader(cut), /the file ends at byte 3000 while reading (the length of )?tokenizer\.ggml\.\w+\[\d+\] \(\d+ bytes at offset \d+\): it is truncated/);
    await copyFile(path.join(models, 'tiny.gguf'), cut);
    await truncate(cut, report.gguf.size - 100); // the last tensor's data cut short
    await expectMetadataError(readGgufHeader(cut), `${cut}: tensor "output.weight"'s data would end at byte ${report.gguf.size} but the file is ${report.gguf.size - 100} bytes long: it is truncated`);
    await writeFile(cut, Buffer.concat([Buffer.from('GGUF'), Buffer.from([1, 0, 0, 0]), Buffer.alloc(16)]));
    await expectMetadataError(readGgufHeader(cut), `${cut}: is GGUF version 1; this reader reads versions 2 and 3`);
    const huge = Buffer.concat([Buffer.from('GGUF'), Buffer.from([3, 0, 0, 0]), Buffer.alloc(16)]);
    huge.writeBigUInt64LE(2n ** 50n, 8);
    await writeFile(cut, huge);
    await expectMetadataError(readGgufHeader(cut), /the tensor count is 1125899906842624, more than this 24-byte file can hold: the file is corrupt or not GGUF/);
  });

  it('a folder without config.json', async () => {
    const dir = path.join(work, 'no-config');
    await mkdir(dir);
    await copyFile(path.join(models, 'llama/model.safetensors'), path.join(dir, 'model.safetensors'));
    await expectMetadataError(inspectModelFolder(dir), `${dir} has no config.json: a Hugging Face model folder needs one (or give a .gguf file)`);
  });

  it('a ../ file name in the model index', async () => {
    const dir = path.join(work, 'escape-index');
    await mkdir(dir);
    await copyFile(path.join(models, 'llama/config.json'), path.join(dir, 'config.json'));
    await copyFile(path.join(models, 'llama/model.safetensors'), path.join(work, 'outside.safetensors'));
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { 'lm_head.weight': '../outside.safetensors' } }));
    await expectMetadataError(
      inspectModelFolder(dir),
      `model.safetensors.index.json names the file "../outside.safetensors", which is not a plain relative path inside ${dir} (no "..", no absolute path, no backslash): refused`,
    );
    expect(() => resolveInside(dir, '/etc/passwd', 'x.json')).toThrow(/not a plain relative path/);
    expect(() => resolveInside(dir, 'a/../../b', 'x.json')).toThrow(/not a plain relative path/);
    expect(resolveInside(dir, 'sub/model.safetensors', 'x.json')).toBe(path.join(dir, 'sub/model.safetensors'));
  });

  it('a symlink leaving the folder, and a named pipe', async () => {
    const dir = path.join(work, 'escape-link');
    await mkdir(dir);
    await copyFile(path.join(models, 'llama/config.json'), path.join(dir, 'config.json'));
    await symlink(path.join(work, 'outside.safetensors'), path.join(dir, 'model.safetensors'));
    await expectMetadataError(inspectModelFolder(dir), /model\.safetensors is a symlink to .*outside\.safetensors, outside the model folder .*: refused/);
    // Allowed where the caller names the folder it may point into (a Hugging Face cache's blobs).
    const info = await inspectModelFolder(dir, { symlinkRoots: [work] });
    expect(info.parameters).toBe(report.llama.parameters);
    // A symlink inside the folder is fine.
    await rm(path.join(dir, 'model.safetensors'));
    await copyFile(path.join(models, 'llama/model.safetensors'), path.join(dir, 'weights.safetensors'));
    await symlink('weights.safetensors', path.join(dir, 'model.safetensors'));
    await expect(inspectModelFolder(dir)).resolves.toMatchObject({ format: 'safetensors' });
    await rm(path.join(dir, 'model.safetensors'));
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    await expectMetadataError(inspectModelFolder(dir), /pipe is a named pipe: a model folder holds regular files only/);
  });

  it('a folder with no weights', async () => {
    const dir = path.join(work, 'no-weights');
    await mkdir(dir);
    await copyFile(path.join(models, 'llama/config.json'), path.join(dir, 'config.json'));
    await expectMetadataError(inspectModelFolder(dir), `${dir} holds no weights (no .safetensors, .gguf, .bin/.pt or .onnx file): nothing to import`);
  });
});
