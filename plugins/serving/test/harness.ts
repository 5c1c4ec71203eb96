/**
 * What the serving suites share: tiny chat models made by the fixture script (two seeds answer
 * differently), registered as versions through the models API, and waiting on deployments.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import type { TestCore } from '@aiplat/testing';

const run = promisify(execFile);
export const repo = path.resolve(import.meta.dirname, '../../..');
export const API = '/api/plugins/serving';

/** The CPU runtime's venv (torch, transformers serve), made by its setup.sh; answers its python. */
export async function cpuRuntimePython(): Promise<string> {
  const out = await run('sh', [path.join(repo, 'plugins', 'serving-cpu', 'setup.sh')], { timeout: 900_000, maxBuffer: 64 << 20 });
  return out.stdout.trim().split('\n').pop()!;
}

/** A tiny chat model folder (Llama, byte tokenizer, chat template) with the given seed. */
export async function tinyModel(python: string, folder: string, seed: number): Promise<string> {
  const out = await run(python, [path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'make_tiny_chat_model.py'), folder, '--seed', String(seed)], { maxBuffer: 16 << 20 });
  // From its first line that opens the JSON: a library may log to stdout first.
  const line = out.stdout.split('\n').find((l) => l.startsWith('{'))!;
  return (JSON.parse(line) as { path: string }).path;
}

/** Import model folders (under `root`) as versions of a new model; answers the version ids in order. */
export async function registerVersions(core: TestCore, name: string, root: string, folders: string[]): Promise<{ model: string; versions: string[] }> {
  const set = await core.client.put('/api/v1/plugins/models/config', { importRoots: [root] });
  expect(set.status, set.text).toBe(200);
  const model = (await core.client.post('/api/plugins/models/models', { name })).body.id as string;
  const versions: string[] = [];
  for (const folder of folders) {
    const res = await core.client.post(`/api/plugins/models/models/${model}/versions/import`, { path: folder });
    expect(res.status, res.text).toBe(202);
    const op = await core.core.operations.wait(res.body.operationId);
    expect(op.state, JSON.stringify(op.error)).toBe('succeeded');
    versions.push((op.result as { versionId: string }).versionId);
  }
  return { model, versions };
}

/** The deployment once `until` holds (polled), or an error with its state and reason. */
export async function waitDeployment(core: TestCore, id: string, until: (d: any) => boolean, timeoutMs = 150_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await core.client.get(`${API}/deployments/${id}`);
    if (until(res.body)) return res.body;
    if (Date.now() > deadline) throw new Error(`deployment ${id} is still ${res.body.state} (${res.body.reason}); revisions: ${JSON.stringify(res.body.revisions?.map((r: any) => [r.number, r.state, r.reason]))}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const servesOnly = (revision: number) => (d: any) => d.state === 'ready' && d.traffic.length === 1 && d.traffic[0].revision === revision && d.pending === null;

/** A chat completion through the `/v1` alias (greedy, a few tokens). */
export async function chat(core: TestCore, model: string, content = 'Hello there', extra: Record<string, unknown> = {}) {
  return core.client.post('/v1/chat/completions', { model, messages: [{ role: 'user', content }], max_tokens: 8, temperature: 0, ...extra });
}

/** The process id of a replica of a workload on the local executor (its newest run folder). */
export function replicaPid(core: TestCore, workloadId: string, replica: number): number {
  const dir = path.join(core.dataDir, 'runs', workloadId);
  const runs = readdirSync(dir)
    .filter((n) => n.startsWith(`r${replica}-e`))
    .map((n) => path.join(dir, n))
    .filter((d) => existsSync(path.join(d, 'child.pid')) && !existsSync(path.join(d, 'exit.json')));
  if (runs.length === 0) throw new Error(`no live run folder of replica ${replica} of ${workloadId}`);
  return Number(readFileSync(path.join(runs.at(-1)!, 'child.pid'), 'utf8').trim());
}

/** A model folder the models plugin accepts without weights worth loading (a Llama's config, one small tensor): for runtimes that never read it. */
export async function configOnlyModel(folder: string, contextLength = 512): Promise<string> {
  await mkdir(folder, { recursive: true });
  await writeFile(
    path.join(folder, 'config.json'),
    JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: contextLength, torch_dtype: 'float32' }),
  );
  // safetensors: an 8-byte little-endian header length, the JSON header, the tensor bytes.
  const header = Buffer.from(JSON.stringify({ 'lm_head.weight': { dtype: 'F32', shape: [1, 4], data_offsets: [0, 16] } }));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path.join(folder, 'model.safetensors'), Buffer.concat([size, header, Buffer.alloc(16)]));
  return folder;
}
