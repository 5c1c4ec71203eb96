// The serving API's refusals on a real core (embedded database, or PostgreSQL with
// AIPLAT_TEST_DATABASE=postgres): every bad deployment request is refused before anything is
// written or started, with a reason a person understands; the /v1 alias answers OpenAI-style
// errors; team scoping and permissions hold. No model process runs here (see serving.test.ts).
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { API, registerVersions, repo } from './harness.js';

let core: TestCore;
let work: string;
let version: string;

/** A model folder the models plugin accepts (a Llama's config, one small tensor: nothing loads it here). */
async function configOnlyModel(folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  await writeFile(
    path.join(folder, 'config.json'),
    JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 512, torch_dtype: 'float32' }),
  );
  // safetensors: an 8-byte little-endian header length, the JSON header, the tensor bytes.
  const header = Buffer.from(JSON.stringify({ 'lm_head.weight': { dtype: 'F32', shape: [1, 4], data_offsets: [0, 16] } }));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path.join(folder, 'model.safetensors'), Buffer.concat([size, header, Buffer.alloc(16)]));
  return folder;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-serving-db-'));
  core = await startTestCore({ plugins: ['models', 'lineage', 'serving', 'serving-cpu', 'serving-vllm', 'serving-tgi'].map((p) => path.join(repo, 'plugins', p)) });
  version = (await registerVersions(core, 'tiny', work, [await configOnlyModel(path.join(work, 'tiny'))])).versions[0]!;
  // vLLM's engine is not installed by the tests: name a python that is missing, so the answer does not depend on the machine.
  expect((await core.client.put('/api/v1/plugins/serving-vllm/config', { python: path.join(work, 'no-such-venv', 'bin', 'python') })).status).toBe(200);
}, 300_000);

afterAll(async () => {
  await core?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const deploy = (body: Record<string, unknown>, client = core.client) => client.post(`${API}/deployments`, { name: 'tiny', modelVersion: version, runtime: 'cpu', ...body });

describe('deployment requests that cannot work are refused before anything starts', () => {
  it('lists the runtimes with their engines and option schemas', async () => {
    const res = await core.client.get(`${API}/runtimes`);
    expect(res.status).toBe(200);
    const ids = res.body.items.map((r: any) => r.id).sort();
    expect(ids).toEqual(['cpu', 'tgi', 'vllm']);
    const vllm = res.body.items.find((r: any) => r.id === 'vllm');
    expect(vllm.engine).toMatchObject({ available: false });
    expect(vllm.engine.reason).toBeTruthy();
    expect(vllm.optionsSchema.properties.tensorParallelSize).toBeTruthy();
    const tgi = res.body.items.find((r: any) => r.id === 'tgi');
    expect(tgi.executors).toEqual(['docker']);
  });

  it.each([
    ['an unknown model version', { modelVersion: 'no-such-version' }, 400, /No model version no-such-version/, 'modelVersion'],
    ['an unknown runtime', { runtime: 'onnx' }, 400, /No runtime "onnx": one of/, 'runtime'],
    ['an executor the runtime does not run on', { runtime: 'tgi' }, 422, /runs on the docker executor, not local/, 'executor'],
    ['a GPU for the CPU runtime', { resources: { gpus: 1 } }, 422, /uses no GPU/, 'resources.gpus'],
    ['more GPUs than any node has', { runtime: 'vllm', resources: { gpus: 4 } }, 422, /asks for 4 GPUs, but the largest node has 0/, 'resources.gpus'],
    ['a GPU share larger than any card', { runtime: 'vllm', resources: { gpus: 0, gpuMemoryMiB: 1024 } }, 422, /no GPU to take a memory share of/, 'resources.gpuMemoryMiB'],
    ['an option the runtime does not have', { options: { tensorParallelSize: 2 } }, 400, /Option tensorParallelSize is not an option of the cpu runtime/, 'options.tensorParallelSize'],
    ['an option of the wrong type', { options: { threads: 'many' } }, 400, /Option threads must be integer/, 'options.threads'],
    ['vLLM tensor parallelism larger than the replica’s GPUs', { runtime: 'vllm', options: { tensorParallelSize: 2 } }, 422, /tensor.parallel/i, 'options'],
    ['a runtime whose engine is not installed', { runtime: 'vllm' }, 422, /The vllm runtime cannot run here/, 'runtime'],
    ['a malformed name', { name: 'no spaces please' }, 400, /name/, undefined],
    ['zero replicas', { replicas: 0 }, 400, /replicas/, undefined],
  ])('refuses %s', async (_what, body, status, message, field) => {
    const res = await deploy(body);
    expect(res.status, res.text).toBe(status);
    expect(res.body.error.message).toMatch(message);
    if (field) expect(res.body.error.details.field).toBe(field);
  });

  it('left nothing behind: no deployment, no workload, no revision folder', async () => {
    expect((await core.client.get(`${API}/deployments`)).body.items).toEqual([]);
    const workloads = await core.client.get('/api/v1/workloads');
    expect(workloads.body.items.filter((w: any) => w.owner === 'serving')).toEqual([]);
    const db = core.core.database.knex;
    expect(Number(((await db('p_serving_deployments').count('* as n').first()) as { n: number }).n)).toBe(0);
    expect(Number(((await db('p_serving_revisions').count('* as n').first()) as { n: number }).n)).toBe(0);
    expect(existsSync(path.join(core.dataDir, 'plugins', 'serving', 'deployments')) ? readdirSync(path.join(core.dataDir, 'plugins', 'serving', 'deployments')) : []).toEqual([]);
  });

  it('answers 404 for another team’s deployment and 403 to a viewer who deploys', async () => {
    const viewer = await core.createUser('serving-viewer', ['viewer']);
    const res = await deploy({}, viewer.client);
    expect(res.status).toBe(403);
    expect(res.body.error.message).toMatch(/serving:write/);
    expect((await viewer.client.get(`${API}/deployments/not-a-deployment`)).status).toBe(404);
  });
});

describe('the /v1 alias answers OpenAI-style errors', () => {
  const v1 = (body: string, headers: Record<string, string> = {}) =>
    fetch(new URL('/v1/chat/completions', core.url), { method: 'POST', headers: { authorization: `Bearer ${core.client.token}`, 'content-type': 'application/json', ...headers }, body });

  it('an unknown model: 404 with OpenAI’s error shape', async () => {
    const res = await v1(JSON.stringify({ model: 'nobody', messages: [{ role: 'user', content: 'hi' }] }));
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { message: string } };
    expect(body).toMatchObject({ error: { type: 'invalid_request_error', param: 'model', code: 'model_not_found' } });
    expect(body.error.message).toMatch(/The model "nobody" does not exist/);
  });

  it('no model, malformed JSON, not an object: 400', async () => {
    for (const [body, message] of [
      [JSON.stringify({ messages: [] }), /Name the model/],
      ['{"model": "x", ', /not valid JSON/],
      ['[1, 2]', /must be a JSON object/],
    ] as const) {
      const res = await v1(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
  });

  it('no credentials: 401 authentication_error', async () => {
    const res = await fetch(new URL('/v1/chat/completions', core.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'x' }) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
  });

  it('lists no models when none is deployed', async () => {
    const res = await core.client.get('/v1/models');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ object: 'list', data: [] });
  });
});
