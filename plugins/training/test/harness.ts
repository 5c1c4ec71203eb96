/**
 * What the training suites share (and the DeepSpeed plugin's): the tiny model, a learnable corpus,
 * a dataset version uploaded through the API, and waiting on runs and their metrics, all through a
 * real core's client.
 */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { TestClient } from '@aiplat/testing';

export const TRAINING_API = '/api/plugins/training';

/** A Llama small enough to train tens of steps in seconds on a CPU (the byte tokenizer's 259 ids). */
export const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 128 };

/** Instruction records with a learnable pattern. */
export function countingCorpus(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ instruction: `Count from ${i % 10}`, input: '', output: Array.from({ length: 6 }, (_, k) => (i + k) % 10).join(' ') }));
  return `${lines.join('\n')}\n`;
}

/** A new version of a dataset holding `files` (path → content), through the datasets API. */
export async function uploadVersion(client: TestClient, datasetId: string, files: Record<string, string>): Promise<string> {
  const commit = (await client.post(`/api/plugins/datasets/datasets/${datasetId}/commits`, {})).body.id as string;
  for (const [p, content] of Object.entries(files)) {
    const sha = createHash('sha256').update(content).digest('hex');
    const res = await client.request('PUT', `/api/plugins/datasets/commits/${commit}/files/content?path=${encodeURIComponent(p)}&sha256=${sha}`, {
      raw: Buffer.from(content),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(res.status, res.text).toBe(200);
  }
  const finished = await client.post(`/api/plugins/datasets/commits/${commit}/finish`, {});
  expect(finished.status, finished.text).toBe(201);
  return finished.body.id as string;
}

/** The run once it is in one of `states` (polled), or an error naming the state it is stuck in. */
export async function waitRun(client: TestClient, id: string, states: string[], timeoutMs = 180_000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await client.get(`${TRAINING_API}/runs/${id}`);
    if (states.includes(res.body.state)) return res.body;
    if (Date.now() > until) throw new Error(`run ${id} still ${res.body.state} (${res.body.reason})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The loss points a workload's metrics hold, in order. */
export async function lossPoints(client: TestClient, workloadId: string): Promise<{ step: number; value: number }[]> {
  const res = await client.get(`/api/v1/workloads/${workloadId}/metrics`);
  const loss = (res.body.series as { name: string; points: { step: number; value: number }[] }[]).find((s) => s.name === 'loss');
  return loss?.points ?? [];
}

/** A workload's log text (every replica's). */
export async function logText(client: TestClient, workloadId: string): Promise<string> {
  const res = await client.get(`/api/v1/workloads/${workloadId}/logs?limit=1000`);
  return (res.body.items as { text: string }[]).map((i) => i.text).join('');
}
