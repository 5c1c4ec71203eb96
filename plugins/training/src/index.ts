/**
 * The training plugin: a run is a request (base model version or architecture template, dataset
 * version, method, hyper-parameters, strategy, resources) turned into a run spec for the Python
 * worker (`runtime/worker/`) and submitted to the core's scheduler as a workload. The plugin follows the
 * workload: metric points and checkpoint events from its streams, its end from `workloads.stateChanged`,
 * and on success registers `final/` as a version of the output model, with lineage.
 *
 * Run folders live under `<data dir>/plugins/training/runs/<run id>/` (`data/`, `base/`, `out/`,
 * `spec.json`) on the core's machine: runs go to the local executor in this version.
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import {
  AiplatError,
  coreServices,
  definePlugin,
  json,
  ownership,
  pluginRootOf,
  reply,
  scoped,
  scopedOr404,
  tarReply,
  workloadHooks,
  type EventSubscription,
  type Knex,
  type PluginContext,
  type RouteContext,
  type Workload,
} from '@aiplat/plugin-sdk';
import { datasetsService } from '@aiplat-plugins/datasets/api';
import { modelsService } from '@aiplat-plugins/models/api';
import { lineageOf, type LineageEdgeInput } from '@aiplat-plugins/lineage/api';
import { RUN_NODE, torchrunLaunch, trainingExtensionPoints, trainingHooks, type Checkpoint, type RunState, type StrategyContext, type TrainingAttempt, type TrainingRun, type TrainingStrategy } from '../api/index.js';
import type { CompareCell, CompareRow, TrainingTemplate } from '../api/index.js';

const PLUGIN_ROOT = pluginRootOf(fileURLToPath(import.meta.url));
/** The Python worker: `runtime/worker/` in the plugin folder and in its package (`aiplat-plugin pack` carries `runtime/`). */
const WORKER_DIR = path.join(PLUGIN_ROOT, 'runtime', 'worker');
const TRAIN_PY = path.join(WORKER_DIR, 'train.py');

const T = { runs: 'p_training_runs', checkpoints: 'p_training_checkpoints' } as const;
/** Saved wizard choices, by team (see the templates routes). */
const TEMPLATES = 'p_training_templates';

type Ctx = RouteContext<any, any, any>;

interface RunRow {
  id: string;
  name: string;
  team_id: string;
  state: RunState;
  reason: string | null;
  method: TrainingRun['method'];
  strategy: string;
  base_model_version: string | null;
  dataset_version: string;
  output_model: string;
  result_model_version: string | null;
  result_adapter_version?: string | null;
  workload_id: string | null;
  attempts: number;
  spec: Record<string, unknown> | string;
  created_by: string | null;
  created_at: Date | string;
  finished_at: Date | string | null;
}

const iso = (d: Date | string) => new Date(d).toISOString();
const toRun = (r: RunRow): TrainingRun => ({
  id: r.id,
  name: r.name,
  team: r.team_id,
  state: r.state,
  reason: r.reason,
  method: r.method,
  strategy: r.strategy,
  baseModelVersion: r.base_model_version,
  datasetVersion: r.dataset_version,
  outputModel: r.output_model,
  resultModelVersion: r.result_model_version,
  resultAdapterVersion: r.result_adapter_version ?? null,
  workloadId: r.workload_id,
  attempts: r.attempts,
  spec: typeof r.spec === 'string' ? (JSON.parse(r.spec) as Record<string, unknown>) : r.spec,
  createdBy: r.created_by,
  createdAt: iso(r.created_at),
  finishedAt: r.finished_at ? iso(r.finished_at) : null,
});

function migrations() {
  return [
    {
      name: '0001_runs',
      async up(db: Knex) {
        await db.schema.createTable(T.runs, (t) => {
          t.text('id').primary();
          t.text('name').notNullable();
          t.text('team_id').notNullable().index();
          t.text('state').notNullable();
          t.text('reason');
          t.text('method').notNullable();
          t.text('strategy').notNullable();
          t.text('base_model_version');
          t.text('dataset_version').notNullable();
          t.text('output_model').notNullable();
          t.text('result_model_version');
          t.text('workload_id').index();
          t.integer('attempts').notNullable().defaultTo(1);
          t.jsonb('spec').notNullable();
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('finished_at', { useTz: true });
        });
        await db.schema.createTable(T.checkpoints, (t) => {
          t.text('run_id').notNullable().references('id').inTable(T.runs).onDelete('CASCADE');
          t.integer('step').notNullable();
          t.text('path').notNullable();
          t.timestamp('saved_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.primary(['run_id', 'step']);
        });
      },
    },
    {
      name: '0002_templates',
      async up(db: Knex) {
        await db.schema.createTable(TEMPLATES, (t) => {
          t.text('id').primary();
          t.text('name').notNullable();
          t.text('team_id').notNullable().index();
          t.text('description').notNullable().defaultTo('');
          t.jsonb('body').notNullable();
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['team_id', 'name'], { indexName: 'p_training_templates_team_name' });
        });
      },
    },
    {
      name: '0003_attempts',
      async up(db: Knex) {
        await db.schema.createTable(ATTEMPTS, (t) => {
          t.text('run_id').notNullable().references('id').inTable(T.runs).onDelete('CASCADE');
          t.integer('attempt').notNullable();
          t.text('workload_id').notNullable().index();
          t.integer('from_step');
          t.text('state').notNullable().defaultTo('pending');
          t.timestamp('started_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('ended_at', { useTz: true });
          t.primary(['run_id', 'attempt']);
        });
        await db.schema.alterTable(T.runs, (t) => {
          t.text('result_adapter_version');
        });
        // Runs from before: their current workload is their latest attempt (earlier ones were not kept).
        await db.raw(`insert into ${ATTEMPTS} (run_id, attempt, workload_id, state, started_at, ended_at) select id, attempts, workload_id, state, created_at, finished_at from ${T.runs} where workload_id is not null`);
      },
    },
  ];
}

// ---- strategies ----


const BUILT_IN: TrainingStrategy[] = [
  {
    id: 'single',
    title: { en: 'Single process', 'zh-CN': '单进程' },
    cpu: true,
    check: (c) => (c.processesPerNode > 1 || c.nodes > 1 ? 'A single process runs on one node and one GPU at most: choose DDP or FSDP for more' : undefined),
    launch: (c) => ({ args: [c.trainPy, '--spec', c.specFile] }),
  },
  {
    id: 'ddp',
    title: { en: 'DDP (torchrun)', 'zh-CN': 'DDP（torchrun）' },
    cpu: true,
    launch: (c) => ({ args: torchrunLaunch(c) }),
  },
  {
    id: 'fsdp',
    title: { en: 'FSDP (torchrun)', 'zh-CN': 'FSDP（torchrun）' },
    cpu: true,
    check: (c) => ((c.hyper.method ?? 'full') !== 'full' ? 'FSDP shards full fine-tuning only: choose DDP for LoRA' : undefined),
    launch: (c) => ({ args: torchrunLaunch(c) }),
  },
];

// ---- the request ----

const positive = { type: 'number', exclusiveMinimum: 0 } as const;
const count = (max: number) => ({ type: 'integer', minimum: 1, maximum: max }) as const;
const runBody = {
  type: 'object',
  required: ['name', 'datasetVersion', 'output'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
    team: { type: 'string', minLength: 1 },
    baseModelVersion: { type: 'string', minLength: 1, maxLength: 64 },
    template: {
      type: 'object',
      required: ['type', 'config'],
      additionalProperties: false,
      properties: {
        type: { type: 'string', enum: ['llama'] },
        config: {
          type: 'object',
          additionalProperties: false,
          properties: {
            hidden_size: count(16384),
            intermediate_size: count(65536),
            num_hidden_layers: count(256),
            num_attention_heads: count(256),
            num_key_value_heads: count(256),
            vocab_size: count(1_000_000),
            max_position_embeddings: count(1_048_576),
          },
        },
      },
    },
    datasetVersion: { type: 'string', minLength: 1, maxLength: 64 },
    datasetFormat: { type: 'string', enum: ['auto', 'instruction', 'chat', 'text'], default: 'auto' },
    method: { type: 'string', enum: ['full', 'lora', 'qlora'], default: 'full' },
    hyper: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        learningRate: { ...positive, maximum: 1 },
        schedule: { type: 'string', enum: ['cosine', 'linear', 'constant'] },
        warmupSteps: { type: 'integer', minimum: 0 },
        epochs: count(1000),
        maxSteps: { type: 'integer', minimum: 0, maximum: 10_000_000 },
        batchSize: count(65536),
        gradientAccumulation: count(4096),
        sequenceLength: count(1_048_576),
        precision: { type: 'string', enum: ['fp32', 'bf16', 'fp16'] },
        seed: { type: 'integer', minimum: 0 },
        evalSplit: { type: 'number', minimum: 0, maximum: 0.5 },
        evalInterval: { type: 'integer', minimum: 0 },
        checkpointInterval: { type: 'integer', minimum: 0 },
        keepCheckpoints: count(1000),
        lora: {
          type: 'object',
          additionalProperties: false,
          properties: {
            r: count(1024),
            alpha: positive,
            dropout: { type: 'number', minimum: 0, maximum: 0.9 },
            targetModules: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 100 }, minItems: 1, maxItems: 64 },
          },
        },
      },
    },
    strategy: {
      type: 'object',
      required: ['id'],
      additionalProperties: false,
      default: { id: 'single' },
      properties: { id: { type: 'string', minLength: 1, maxLength: 40 }, options: { type: 'object', additionalProperties: true, description: "checked against the strategy's optionsSchema" } },
    },
    resources: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { gpusPerNode: { type: 'integer', minimum: 0, maximum: 64 }, nodes: count(64), processesPerNode: count(64) },
    },
    output: { type: 'object', required: ['model'], additionalProperties: false, properties: { model: { type: 'string', minLength: 1, maxLength: 64 } } },
  },
} as const;

// ---- helpers ----

function pythonOf(plugin: PluginContext): string {
  const configured = String((plugin.config as { python?: string }).python ?? '').trim();
  if (configured) return configured;
  // In a checkout, setup.sh's venv under the repository's node_modules (plugins/training → ../..).
  const venv = process.env.AIPLAT_TRAIN_VENV ?? path.resolve(PLUGIN_ROOT, '..', '..', 'node_modules', '.cache', 'aiplat-train-venv');
  const venvPython = path.join(venv, 'bin', 'python');
  return existsSync(venvPython) ? venvPython : 'python3';
}

const runDirOf = (plugin: PluginContext, runId: string) => path.join(plugin.platform.dataDir, 'plugins', 'training', 'runs', runId);

const optionsAjv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
const optionsValidators = new WeakMap<TrainingStrategy, ValidateFunction>();

/** Checks a request's strategy options against the strategy's schema, filling in its defaults. */
function optionsProblem(strategy: TrainingStrategy, options: Record<string, unknown>): string | undefined {
  if (!strategy.optionsSchema) return Object.keys(options).length > 0 ? `The ${strategy.id} strategy takes no options` : undefined;
  let validate = optionsValidators.get(strategy);
  if (!validate) {
    validate = optionsAjv.compile(strategy.optionsSchema);
    optionsValidators.set(strategy, validate);
  }
  if (validate(options)) return undefined;
  const e = validate.errors![0]!;
  const where = `strategy.options${e.instancePath.replace(/\//g, '.')}`;
  if (e.keyword === 'additionalProperties') return `${where} has no option "${String(e.params.additionalProperty)}"`;
  if (e.keyword === 'enum') return `${where} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
  return `${where} ${e.message ?? 'is not valid'}`;
}

function strategiesOf(plugin: PluginContext): TrainingStrategy[] {
  return [...BUILT_IN, ...plugin.hooks.contributions(trainingExtensionPoints.strategies)];
}

async function runOr404(ctx: Ctx, id: string, permission = 'training:read'): Promise<RunRow> {
  return scopedOr404<RunRow>(ctx, T.runs, permission, { id }, `No training run ${id}`);
}

async function callHook<A>(plugin: PluginContext, hook: Parameters<PluginContext['hooks']['call']>[0], arg: A): Promise<void> {
  try {
    await (plugin.hooks.call as (h: unknown, a: A) => Promise<unknown>)(hook, arg);
  } catch (err) {
    plugin.logger.warn({ err, hook: hook.id }, 'a tap of a training hook failed');
  }
}

/** Checkpoints the worker left in `out/checkpoints/step-N`, step order. */
async function checkpointsOnDisk(runDir: string): Promise<{ step: number; path: string }[]> {
  const dir = path.join(runDir, 'out', 'checkpoints');
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), path: path.join(dir, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

// ---- following runs ----

const follows = new Map<string, EventSubscription[]>();

function follow(plugin: PluginContext, runId: string, workloadId: string): void {
  unfollow(runId);
  const events = plugin.service(coreServices.events);
  let pending = '';
  let runCache: { run: TrainingRun; at: number } | undefined;
  const subs = [
    // The scheduler's stream carries one point per metric line: its step and every value on it.
    events.subscribe<{ replica: number; points: { step: number | null; values: Record<string, number> }[] }>(`workloads/${workloadId}/metrics`, (event) => {
      if (event.payload.replica !== 0) return;
      void (async () => {
        // The run as of at most a second ago: one read per second rather than one per metric line.
        if (!runCache || Date.now() - runCache.at > 1000) {
          const row = (await plugin.db(T.runs).where({ id: runId }).first()) as RunRow | undefined;
          runCache = row ? { run: toRun(row), at: Date.now() } : undefined;
        }
        const points = event.payload.points.flatMap((p) => Object.entries(p.values).map(([name, value]) => ({ name, step: p.step ?? 0, value })));
        if (runCache && points.length > 0) await callHook(plugin, trainingHooks.metricLogged, { run: runCache.run, points });
      })();
    }),
    events.subscribe<{ replica: number; text: string }>(`workloads/${workloadId}/logs`, (event) => {
      if (event.payload.replica !== 0) return;
      pending += event.payload.text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{"type": "event"') && !line.startsWith('{"type":"event"')) continue;
        try {
          const parsed = JSON.parse(line) as { event?: string; step?: number; path?: string };
          if (parsed.event === 'checkpoint' && typeof parsed.step === 'number' && parsed.path) void recordCheckpoint(plugin, runId, parsed.step, parsed.path);
        } catch {
          // not one of the worker's event lines
        }
      }
    }),
  ];
  follows.set(runId, subs);
}

function unfollow(runId: string): void {
  for (const s of follows.get(runId) ?? []) s.unsubscribe();
  follows.delete(runId);
}

async function recordCheckpoint(plugin: PluginContext, runId: string, step: number, where: string): Promise<void> {
  const inserted = (await plugin.db(T.checkpoints).insert({ run_id: runId, step, path: where }).onConflict(['run_id', 'step']).ignore().returning('step')) as unknown[];
  if (inserted.length === 0) return;
  const row = (await plugin.db(T.runs).where({ id: runId }).first()) as RunRow | undefined;
  if (row) await callHook<{ run: TrainingRun; checkpoint: Checkpoint }>(plugin, trainingHooks.checkpointSaved, { run: toRun(row), checkpoint: { step, path: where, savedAt: new Date().toISOString() } });
}

const STATE_OF: Record<string, RunState> = {
  pending: 'pending',
  scheduled: 'pending',
  running: 'running',
  ready: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  lost: 'failed',
  cancelled: 'cancelled',
};

/** A state change of a run's workload: mirror it; at success register the result; at the end tell. */
async function workloadChanged(plugin: PluginContext, workload: Workload, reason: string | null): Promise<void> {
  await attemptChanged(plugin.db, workload);
  const row = (await plugin.db(T.runs).where({ workload_id: workload.id }).first()) as RunRow | undefined;
  if (!row) return;
  let state = STATE_OF[workload.state] ?? row.state;
  const finished = state === 'succeeded' || state === 'failed' || state === 'cancelled';
  const patch: Partial<RunRow> = { state, reason };
  if (finished) {
    unfollow(row.id);
    const runDir = runDirOf(plugin, row.id);
    for (const c of await checkpointsOnDisk(runDir)) await recordCheckpoint(plugin, row.id, c.step, c.path);
    if (state === 'succeeded') {
      try {
        const version = await plugin.service(modelsService).registerVersion({
          model: row.output_model,
          files: { folder: path.join(runDir, 'out', 'final') },
          source: { kind: 'training', ref: row.id },
          createdBy: row.created_by ?? 'training',
        });
        patch.result_model_version = version.id;
        await recordLineage(plugin, row, version.id);
        patch.result_adapter_version = await registerAdapter(plugin, row);
      } catch (err) {
        state = 'failed';
        patch.state = state;
        patch.reason = `the trained model could not be registered: ${(err as Error).message}`;
      }
    }
    patch.finished_at = new Date().toISOString();
  }
  const [updated] = (await plugin.db(T.runs).where({ id: row.id }).update(patch).returning('*')) as RunRow[];
  if (finished && updated) await callHook(plugin, trainingHooks.runFinished, { run: toRun(updated) });
}

async function recordLineage(plugin: PluginContext, row: RunRow, resultVersion: string | null): Promise<void> {
  const lineage = lineageOf(plugin);
  if (!lineage) return;
  const run = { kind: RUN_NODE, id: row.id, label: row.name, team: row.team_id };
  const edges: LineageEdgeInput[] = [{ from: { kind: 'datasets.version', id: row.dataset_version }, to: run, relation: 'trained-from' }];
  if (row.base_model_version) edges.push({ from: { kind: 'models.version', id: row.base_model_version }, to: run, relation: 'derived-from' });
  if (resultVersion) edges.push({ from: run, to: { kind: 'models.version', id: resultVersion }, relation: 'produced-by' });
  await lineage.recordMany(edges, { createdBy: row.created_by ?? 'training' }).catch((err: unknown) => plugin.logger.warn({ err, run: row.id }, 'the lineage of a run could not be recorded'));
}

// ---- history, compare, retry, templates (helpers) ----

/** A run request without what makes it one run (its name, team, output model): what a template keeps. */
const templateRequest = {
  type: 'object',
  additionalProperties: false,
  properties: {
    baseModelVersion: runBody.properties.baseModelVersion,
    template: runBody.properties.template,
    datasetVersion: runBody.properties.datasetVersion,
    datasetFormat: runBody.properties.datasetFormat,
    method: runBody.properties.method,
    hyper: runBody.properties.hyper,
    strategy: runBody.properties.strategy,
    resources: runBody.properties.resources,
  },
} as const;

interface TemplateRow {
  id: string;
  name: string;
  team_id: string;
  description: string;
  body: Record<string, unknown> | string;
  created_by: string | null;
  created_at: Date | string;
}

const toTemplate = (r: TemplateRow): TrainingTemplate => ({
  id: r.id,
  name: r.name,
  team: r.team_id,
  description: r.description,
  body: typeof r.body === 'string' ? (JSON.parse(r.body) as Record<string, unknown>) : r.body,
  createdBy: r.created_by,
  createdAt: iso(r.created_at),
});

const likeEscape = (s: string) => s.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`);

/** An ISO date (`2026-01-31`, that whole day for `until`) or date-time of a query, or a 400 naming the field. */
function boundOf(value: unknown, field: 'since' | 'until'): string | undefined {
  if (value === undefined || value === '') return undefined;
  const text = String(value);
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new AiplatError('validation_failed', `${field} must be an ISO date or date-time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z), not "${text}"`, { field });
  // A date alone: until takes in that whole day (UTC).
  if (field === 'until' && /^\d{4}-\d{2}-\d{2}$/.test(text)) return new Date(at + 86_400_000 - 1).toISOString();
  return new Date(at).toISOString();
}

const FILTER_COLUMNS = [
  ['state', 'state'],
  ['method', 'method'],
  ['strategy', 'strategy'],
  ['datasetVersion', 'dataset_version'],
  ['baseModelVersion', 'base_model_version'],
  ['createdBy', 'created_by'],
] as const;

/** The runs the caller may read, filtered as `GET /runs`'s query says. */
function filteredRuns(ctx: Ctx, filters: Record<string, unknown>): Knex.QueryBuilder {
  let query = scoped(ctx, T.runs, 'training:read');
  if (filters.q) query = query.whereRaw('lower(name) like ?', [`%${likeEscape(String(filters.q))}%`]);
  for (const [key, column] of FILTER_COLUMNS) if (filters[key]) query = query.where(column, String(filters[key]));
  const since = boundOf(filters.since, 'since');
  const until = boundOf(filters.until, 'until');
  if (since) query = query.where('created_at', '>=', since);
  if (until) query = query.where('created_at', '<=', until);
  return query;
}

/** A request's fields as `hyper.learningRate`-style keys (lists joined with ", "); the name is the column's. */
function flattenRequest(value: unknown, prefix = '', out: Record<string, CompareCell> = {}): Record<string, CompareCell> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value)) {
      if (!prefix && key === 'name') continue;
      flattenRequest(v, prefix ? `${prefix}.${key}` : key, out);
    }
  } else if (Array.isArray(value)) {
    out[prefix] = value.map((v) => (v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v))).join(', ');
  } else if (prefix) {
    out[prefix] = value === undefined ? null : (value as CompareCell);
  }
  return out;
}

/** One row per request field of any run (first-seen order), a value per run (null: not given), and whether they differ. */
function compareRows(runs: TrainingRun[]): CompareRow[] {
  const flat = runs.map((r) => flattenRequest(r.spec));
  const keys: string[] = [];
  for (const f of flat) for (const k of Object.keys(f)) if (!keys.includes(k)) keys.push(k);
  return keys.map((key) => {
    const values = flat.map((f) => (key in f ? f[key]! : null));
    return { key, values, differs: new Set(values.map((v) => JSON.stringify(v))).size > 1 };
  });
}

// ---- submitting ----

interface Prepared {
  args: string[];
  env: Record<string, string>;
  gpusPerNode: number;
  nodes: number;
}

/** Writes the run folder (data, base model, spec, strategy files) and answers how to launch the worker. */
async function prepare(plugin: PluginContext, runId: string, body: Record<string, any>, resumeFrom: string | null): Promise<Prepared> {
  const runDir = runDirOf(plugin, runId);
  const dataDir = path.join(runDir, 'data');
  const baseDir = path.join(runDir, 'base');
  if (!existsSync(dataDir)) await plugin.service(datasetsService).materialise(body.datasetVersion, dataDir);
  if (body.baseModelVersion && !existsSync(baseDir)) await plugin.service(modelsService).materialise(body.baseModelVersion, baseDir);
  const gpusPerNode = Number(body.resources?.gpusPerNode ?? 0);
  const nodes = Number(body.resources?.nodes ?? 1);
  const processesPerNode = Number(body.resources?.processesPerNode ?? Math.max(1, gpusPerNode));
  const strategy = strategiesOf(plugin).find((s) => s.id === body.strategy?.id)!;
  const specFile = path.join(runDir, 'spec.json');
  const context: StrategyContext = { trainPy: TRAIN_PY, specFile, runDir, processesPerNode, gpusPerNode, nodes, options: body.strategy?.options ?? {}, hyper: { ...body.hyper, method: body.method } };
  const launch = strategy.launch(context);
  for (const [name, content] of Object.entries(launch.files ?? {})) await writeFile(path.join(runDir, name), content);
  const spec = {
    runId,
    output: path.join(runDir, 'out'),
    model: body.baseModelVersion ? { from: 'folder', path: baseDir } : { from: 'scratch', template: body.template.type, config: body.template.config },
    tokenizer: body.baseModelVersion && existsSync(path.join(baseDir, 'tokenizer.json')) ? baseDir : null,
    data: { path: dataDir, format: body.datasetFormat ?? 'auto' },
    method: body.method ?? 'full',
    hyper: body.hyper ?? {},
    strategy: { kind: strategy.id, ...launch.spec },
    resumeFrom,
  };
  await writeFile(specFile, JSON.stringify(spec, null, 2));
  return { args: launch.args, env: { PYTHONUNBUFFERED: '1' }, gpusPerNode, nodes };
}

async function submit(plugin: PluginContext, row: RunRow, prepared: Prepared, user: NonNullable<Ctx['user']>): Promise<Workload> {
  return plugin.service(coreServices.workloads).submit(
    {
      name: `train-${row.name}`.slice(0, 100),
      kind: 'job',
      team: row.team_id,
      command: [pythonOf(plugin), ...prepared.args],
      env: prepared.env,
      workingDir: WORKER_DIR,
      resources: { gpus: prepared.gpusPerNode },
      replicas: prepared.nodes,
      labels: { 'training.run': row.id },
    },
    { user },
  );
}

// ---- checkpoints, attempts, metrics (helpers; their routes are in register(), before POST /runs) ----

const ATTEMPTS = 'p_training_attempts';

interface AttemptRow {
  run_id: string;
  attempt: number;
  workload_id: string;
  from_step: number | null;
  state: string;
  started_at: Date | string;
  ended_at: Date | string | null;
}

const toAttempt = (a: AttemptRow): TrainingAttempt => ({
  attempt: a.attempt,
  workloadId: a.workload_id,
  fromStep: a.from_step,
  state: a.state as RunState,
  startedAt: iso(a.started_at),
  endedAt: a.ended_at ? iso(a.ended_at) : null,
});

/**
 * Records a new attempt of a run (its start, a resume, a retry) with its workload and the checkpoint
 * step it goes on from (null or absent: from the start). Earlier attempts still open are closed.
 * Answers the attempt's number (1 for the start, then 2, 3, …).
 */
export async function recordAttempt(db: Knex, input: { runId: string; workloadId: string; fromStep?: number | null }): Promise<number> {
  const [last] = (await db(ATTEMPTS).where({ run_id: input.runId }).max({ n: 'attempt' })) as { n: number | string | null }[];
  const attempt = Number(last?.n ?? 0) + 1;
  await db(ATTEMPTS).where({ run_id: input.runId }).whereNull('ended_at').update({ ended_at: db.fn.now() });
  await db(ATTEMPTS).insert({ run_id: input.runId, attempt, workload_id: input.workloadId, from_step: input.fromStep ?? null, state: 'pending' });
  return attempt;
}

/** Mirrors a workload's state on its attempt (also for an earlier attempt's workload). */
async function attemptChanged(db: Knex, workload: Workload): Promise<void> {
  const state = STATE_OF[workload.state] ?? workload.state;
  const ended = state === 'succeeded' || state === 'failed' || state === 'cancelled';
  await db(ATTEMPTS)
    .where({ workload_id: workload.id })
    .update({ state, ...(ended ? { ended_at: workload.finishedAt ?? new Date().toISOString() } : {}) });
}

async function attemptsOf(db: Knex, runId: string): Promise<TrainingAttempt[]> {
  return ((await db(ATTEMPTS).where({ run_id: runId }).orderBy('attempt')) as AttemptRow[]).map(toAttempt);
}

/**
 * The metric points of every attempt (rank 0, as the run page reads a workload's metrics), merged
 * into one series per metric in step order: an attempt that went on from step N (a retry: from 0)
 * drops the earlier attempts' points after N (they were trained again), and its own points replace
 * theirs at equal steps.
 */
async function mergedMetrics(db: Knex, attempts: TrainingAttempt[]): Promise<{ name: string; points: { step: number; value: number; attempt: number }[] }[]> {
  const series = new Map<string, Map<number, { value: number; attempt: number }>>();
  for (const a of attempts) {
    // Trained again after this step (a retry starts over: from step 0).
    const from = a.fromStep ?? 0;
    for (const points of series.values()) for (const step of [...points.keys()]) if (step > from) points.delete(step);
    const rows = (await db('workload_metrics').where({ workload_id: a.workloadId, replica: 0 }).whereNotNull('step').orderBy('id').limit(100_000).select('step', 'values')) as {
      step: number | string;
      values: Record<string, number> | string;
    }[];
    for (const r of rows) {
      const values = typeof r.values === 'string' ? (JSON.parse(r.values) as Record<string, number>) : r.values;
      for (const [name, value] of Object.entries(values)) {
        if (typeof value !== 'number') continue;
        let points = series.get(name);
        if (!points) series.set(name, (points = new Map()));
        points.set(Number(r.step), { value, attempt: a.attempt });
      }
    }
  }
  return [...series].map(([name, points]) => ({
    name,
    points: [...points].sort(([x], [y]) => x - y).map(([step, p]) => ({ step, value: p.value, attempt: p.attempt })),
  }));
}

/** The checkpoint of `step` on disk, or a 404 (no such step) / 409 (recorded, but pruned since). */
async function checkpointOr4xx(plugin: PluginContext, row: RunRow, step: number): Promise<string> {
  const onDisk = (await checkpointsOnDisk(runDirOf(plugin, row.id))).find((c) => c.step === step);
  if (onDisk) return onDisk.path;
  const recorded = await plugin.db(T.checkpoints).where({ run_id: row.id, step }).first();
  if (recorded) throw new AiplatError('conflict', `The checkpoint at step ${step} is no longer on disk (only the newest hyper.keepCheckpoints are kept)`, { step });
  throw new AiplatError('not_found', `Run ${row.name} has no checkpoint at step ${step}`, { step });
}

/** The regular files under a folder (hidden ones skipped), path order, with their paths relative to it. */
async function filesUnder(root: string): Promise<{ path: string; file: string; size: number }[]> {
  const out: { path: string; file: string; size: number }[] = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(root, rel))).sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const relPath = rel ? `${rel}/${name}` : name;
      const st = await stat(path.join(root, relPath));
      if (st.isDirectory()) await visit(relPath);
      else if (st.isFile()) out.push({ path: relPath, file: path.join(root, relPath), size: st.size });
    }
  };
  await visit('');
  return out;
}

/** What a checkpoint holds only to resume training: not part of a registered model version. */
const RESUME_STATE = /^(optimizer\.pt|scheduler\.pt|trainer_state\.json|rng_state.*)$/;

/**
 * At the end of a LoRA / QLoRA run over a registered base: `out/adapter` as a version of the output
 * model too (its metadata says it is an adapter), with lineage base version → adapter
 * (`adapter-of`) and run → adapter (`produced-by`). Answers its id, or null (no adapter, a
 * from-scratch base that nothing could apply it over, or a refusal, which is logged).
 */
async function registerAdapter(plugin: PluginContext, row: RunRow): Promise<string | null> {
  if (row.method === 'full') return null;
  const folder = path.join(runDirOf(plugin, row.id), 'out', 'adapter');
  if (!existsSync(folder)) return null;
  if (!row.base_model_version) {
    plugin.logger.info({ run: row.id }, 'a LoRA run from scratch: its adapter is not registered (no registered base to apply it over)');
    return null;
  }
  try {
    const version = await plugin.service(modelsService).registerVersion({ model: row.output_model, files: { folder }, source: { kind: 'training', ref: row.id }, createdBy: row.created_by ?? 'training' });
    const run = { kind: RUN_NODE, id: row.id, label: row.name, team: row.team_id };
    await lineageOf(plugin)
      ?.recordMany(
        [
          { from: { kind: 'models.version', id: row.base_model_version }, to: { kind: 'models.version', id: version.id }, relation: 'adapter-of', details: { run: row.id } },
          { from: run, to: { kind: 'models.version', id: version.id }, relation: 'produced-by', details: { adapter: true } },
        ],
        { createdBy: row.created_by ?? 'training' },
      )
      .catch((err: unknown) => plugin.logger.warn({ err, run: row.id }, 'the lineage of a run’s adapter could not be recorded'));
    return version.id;
  } catch (err) {
    plugin.logger.warn({ err, run: row.id }, 'the adapter of a LoRA run could not be registered');
    return null;
  }
}

/** Where the run's current attempt runs (replicas, nodes, cards) and its cards' samples over the attempt. */
async function resourcesOf(plugin: PluginContext, row: RunRow) {
  const empty = { workloadId: row.workload_id, gpusPerReplica: 0, cpuOnly: true, replicas: [], gpus: [] };
  if (!row.workload_id) return empty;
  const workload = await plugin.service(coreServices.workloads).get(row.workload_id);
  if (!workload) return empty;
  const db = plugin.db;
  const gpusPerReplica = Number(workload.spec.resources?.gpus ?? 0);
  const replicaRows = (await db('workload_replicas').where({ workload_id: workload.id }).orderBy('replica')) as {
    replica: number;
    node_id: string | null;
    state: string;
    restarts: number | null;
    exit_code: number | null;
    devices: { id: string; index: number; lo: number; hi: number; whole: boolean }[] | string | null;
  }[];
  const devicesOf = (r: (typeof replicaRows)[number]) => (typeof r.devices === 'string' ? (JSON.parse(r.devices) as { id: string; index: number; lo: number; hi: number; whole: boolean }[]) : (r.devices ?? []));
  const nodeIds = [...new Set(replicaRows.map((r) => r.node_id).filter((n): n is string => !!n))];
  const nodes = nodeIds.length ? ((await db('nodes').whereIn('id', nodeIds).select('id', 'name')) as { id: string; name: string }[]) : [];
  const deviceIds = [...new Set(replicaRows.flatMap((r) => devicesOf(r).map((d) => d.id)))];
  const cards = deviceIds.length ? ((await db('gpu_devices').whereIn('id', deviceIds).select('id', 'node_id', 'index', 'model', 'memory_mib')) as { id: string; node_id: string; index: number; model: string; memory_mib: number }[]) : [];
  const from = new Date(workload.startedAt ?? workload.createdAt);
  const to = workload.finishedAt ? new Date(workload.finishedAt) : new Date();
  const gpus = [];
  for (const card of cards) {
    const samples = (await db('gpu_samples').where({ device_id: card.id }).where('at', '>=', from).where('at', '<=', to).orderBy('at', 'desc').limit(500).select('at', 'utilization_percent', 'memory_used_mib')) as {
      at: Date | string;
      utilization_percent: number | null;
      memory_used_mib: number | null;
    }[];
    gpus.push({
      deviceId: card.id,
      nodeId: card.node_id,
      index: card.index,
      model: card.model,
      memoryMiB: card.memory_mib,
      points: samples.reverse().map((p) => ({ at: iso(p.at), utilizationPercent: p.utilization_percent === null ? null : Number(p.utilization_percent), memoryUsedMiB: p.memory_used_mib === null ? null : Number(p.memory_used_mib) })),
    });
  }
  return {
    workloadId: workload.id,
    gpusPerReplica,
    cpuOnly: gpusPerReplica === 0 && !workload.spec.resources?.gpuMemoryMiB,
    replicas: replicaRows.map((r) => ({
      replica: r.replica,
      nodeId: r.node_id,
      nodeName: nodes.find((n) => n.id === r.node_id)?.name ?? null,
      state: r.state,
      restarts: Number(r.restarts ?? 0),
      exitCode: r.exit_code,
      devices: devicesOf(r).map((d) => ({ id: d.id, index: d.index, model: cards.find((c) => c.id === d.id)?.model ?? null, memoryMiB: d.hi - d.lo, whole: d.whole })),
    })),
    gpus,
  };
}

export default definePlugin({
  register(env) {
    env.declareHook(trainingHooks.runStarted);
    env.declareHook(trainingHooks.metricLogged);
    env.declareHook(trainingHooks.checkpointSaved);
    env.declareHook(trainingHooks.runFinished);
    env.declareExtensionPoint(trainingExtensionPoints.strategies);
    env.migrations(migrations());
    env.tap(workloadHooks.stateChanged, async (change) => {
      if (!change.workload.spec.labels?.['training.run'] || !plugin) return;
      await workloadChanged(plugin, change.workload, change.reason).catch((err: unknown) => plugin?.logger.warn({ err }, 'a run could not follow its workload'));
    });

    env.route({
      method: 'GET',
      path: '/strategies',
      summary: 'The distributed strategies runs may use (built in, and from strategy plugins)',
      permission: 'training:read',
      handler: (ctx) => ({ items: strategiesOf(ctx.plugin).map((s) => ({ id: s.id, title: s.title, cpu: s.cpu, optionsSchema: s.optionsSchema ?? null })) }),
    });

    env.route({
      method: 'GET',
      path: '/runs',
      summary: 'The training runs of your teams, newest first: filtered (name contains q, state, method, strategy, inputs, creator, created since/until) and paged, with the total',
      permission: 'training:read',
      query: {
        type: 'object',
        properties: {
          q: { type: 'string', maxLength: 100 },
          state: { type: 'string', enum: ['pending', 'running', 'succeeded', 'failed', 'cancelled'] },
          method: { type: 'string', enum: ['full', 'lora', 'qlora'] },
          strategy: { type: 'string', maxLength: 40 },
          datasetVersion: { type: 'string', maxLength: 64 },
          baseModelVersion: { type: 'string', maxLength: 64 },
          createdBy: { type: 'string', maxLength: 64 },
          since: { type: 'string', maxLength: 40 },
          until: { type: 'string', maxLength: 40 },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
          offset: { type: 'integer', minimum: 0, default: 0 },
        },
      },
      handler: async (ctx) => {
        const query = filteredRuns(ctx, ctx.query);
        const [counted] = (await query.clone().clearOrder().count({ n: '*' })) as { n: number | string }[];
        const rows = (await query.orderBy('created_at', 'desc').orderBy('id').limit(ctx.query.limit).offset(ctx.query.offset)) as RunRow[];
        return { items: rows.map(toRun), total: Number(counted?.n ?? 0) };
      },
    });

    env.route({
      method: 'GET',
      path: '/runs/:id',
      summary: 'A run with its checkpoints (its logs and metrics are its workload’s: /api/v1/workloads/<workloadId>/…)',
      permission: 'training:read',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      handler: async (ctx) => {
        const row = await runOr404(ctx, ctx.params.id);
        const checkpoints = (await ctx.db(T.checkpoints).where({ run_id: row.id }).orderBy('step')) as { step: number; path: string; saved_at: Date | string }[];
        return { ...toRun(row), checkpoints: checkpoints.map((c) => ({ step: c.step, path: c.path, savedAt: iso(c.saved_at) })), attemptList: await attemptsOf(ctx.db, row.id) };
      },
    });

    // ---- checkpoints, attempts, metrics ----

    const runStep = { type: 'object', required: ['id', 'step'], properties: { id: { type: 'string', maxLength: 64 }, step: { type: 'integer', minimum: 0, maximum: 1_000_000_000 } } } as const;

    env.route({
      method: 'GET',
      path: '/runs/:id/metrics',
      summary: 'The metric series of all the run’s attempts (rank 0) merged into one per metric, step order: a later attempt replaces the points after the step it went on from',
      permission: 'training:read',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      query: { type: 'object', properties: { name: { type: 'string', minLength: 1, maxLength: 100 } } },
      handler: async (ctx) => {
        const row = await runOr404(ctx, ctx.params.id);
        const attempts = await attemptsOf(ctx.db, row.id);
        const only = (ctx.query as { name?: string }).name;
        const series = (await mergedMetrics(ctx.db, attempts)).filter((s) => !only || s.name === only);
        return { series, attempts, topic: row.workload_id ? `workloads/${row.workload_id}/metrics` : null };
      },
    });

    env.route({
      method: 'GET',
      path: '/runs/:id/resources',
      summary: 'Where the current attempt runs: its replicas (node, cards, state, restarts) and its cards’ utilisation and memory over the attempt when the scheduler samples them',
      permission: 'training:read',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      handler: async (ctx) => resourcesOf(ctx.plugin, await runOr404(ctx, ctx.params.id)),
    });

    env.route({
      method: 'GET',
      path: '/runs/:id/checkpoints/:step/download',
      summary: 'A checkpoint folder as a .tar, under `<run name>-step-<N>/` (weights or adapter, config, tokenizer, optimizer and trainer state)',
      permission: 'training:read',
      params: runStep,
      handler: async (ctx) => {
        const { id, step } = ctx.params as unknown as { id: string; step: number };
        const row = await runOr404(ctx, id);
        const folder = await checkpointOr4xx(ctx.plugin, row, step);
        const files = await filesUnder(folder);
        return tarReply(
          files.map((f) => ({ name: `${row.name}-step-${step}/${f.path}`, size: f.size, open: async () => createReadStream(f.file) })),
          `${row.name}-step-${step}`,
          (err) => ctx.plugin.logger.warn({ err, run: row.id, step }, 'a checkpoint download broke off'),
        );
      },
    });

    // Not in one transaction: the models plugin copies the files and commits the version itself.
    env.route({
      method: 'POST',
      path: '/runs/:id/checkpoints/:step/register',
      summary: 'Register a checkpoint as a new version of a model you may write (a LoRA checkpoint: an adapter over the run’s base model version)',
      permission: 'training:read',
      mutates: false,
      audit: 'explicit',
      params: runStep,
      body: json({
        type: 'object',
        required: ['model'],
        additionalProperties: false,
        properties: { model: { type: 'string', minLength: 1, maxLength: 64 }, description: { type: 'string', maxLength: 2000 } },
      }),
      handler: async (ctx) => {
        const plugin = ctx.plugin;
        const { id, step } = ctx.params as unknown as { id: string; step: number };
        const body = ctx.body as { model: string; description?: string };
        const row = await runOr404(ctx, id);
        const models = plugin.service(modelsService);
        const model = await models.model(body.model);
        if (!model || !ctx.can('models:write', model.team)) throw new AiplatError('validation_failed', `No model ${body.model} you may register versions of`, { field: 'model' });
        const folder = await checkpointOr4xx(plugin, row, step);
        const files = (await filesUnder(folder)).filter((f) => !RESUME_STATE.test(f.path));
        const adapter = files.some((f) => f.path === 'adapter_config.json');
        if (adapter && !row.base_model_version) {
          throw new AiplatError(
            'unprocessable',
            `The checkpoint at step ${step} holds a LoRA adapter only, and run ${row.name} trained it over a from-scratch architecture that is no registered model version: there is nothing to apply it over. Register the run's merged result (at its end) instead`,
            { step },
          );
        }
        const version = await models.registerVersion({ model: model.id, files: { files: files.map((f) => ({ path: f.path, file: f.file })) }, source: { kind: 'training', ref: row.id }, createdBy: ctx.user!.id });
        const description = body.description?.trim() || null;
        const edges: LineageEdgeInput[] = [
          { from: { kind: RUN_NODE, id: row.id, label: row.name, team: row.team_id }, to: { kind: 'models.version', id: version.id }, relation: 'checkpoint-of', details: { step, adapter, ...(description ? { description } : {}) } },
        ];
        if (adapter) edges.push({ from: { kind: 'models.version', id: row.base_model_version! }, to: { kind: 'models.version', id: version.id }, relation: 'adapter-of', details: { run: row.id, step } });
        await lineageOf(plugin)
          ?.recordMany(edges, { createdBy: 'training' })
          .catch((err: unknown) => plugin.logger.warn({ err, run: row.id }, 'the lineage of a registered checkpoint could not be recorded'));
        await ctx.audit(
          'training:checkpoint.register',
          { run: row.id, step, model: model.id, version: version.id, number: version.number, adapter },
          { resource: { type: 'training-run', id: row.id }, team: model.team },
        );
        return reply(201, { step, adapter, baseModelVersion: adapter ? row.base_model_version : null, description, version });
      },
    });

    // Not in one transaction: it materialises files and submits a workload (with its own
    // transaction); the run row is removed again when the submission is refused.
    env.route({
      method: 'POST',
      path: '/runs',
      summary: 'Start a training run',
      permission: 'training:write',
      mutates: false,
      audit: 'explicit',
      body: json(runBody),
      handler: async (ctx) => {
        const plugin = ctx.plugin;
        const body = ctx.body as Record<string, any>;
        const user = ctx.user!;
        if (!!body.baseModelVersion === !!body.template) throw new AiplatError('validation_failed', 'Give either baseModelVersion (fine-tune a registered model) or template (train from scratch), not both or neither', { field: 'baseModelVersion' });
        const team = body.team ?? user.defaultTeam ?? user.teams?.[0];
        if (!team || !ctx.can('training:write', team)) throw new AiplatError('forbidden', `You do not hold "training:write" in team "${team ?? '(none)'}"`, { permission: 'training:write', team });
        const strategy = strategiesOf(plugin).find((s) => s.id === body.strategy.id);
        if (!strategy) throw new AiplatError('validation_failed', `No training strategy "${body.strategy.id}": one of ${strategiesOf(plugin).map((s) => s.id).join(', ')}`, { field: 'strategy.id' });
        body.strategy.options ??= {};
        const badOptions = optionsProblem(strategy, body.strategy.options);
        if (badOptions) throw new AiplatError('validation_failed', badOptions, { field: 'strategy.options' });
        const gpusPerNode = Number(body.resources.gpusPerNode ?? 0);
        if (body.method === 'qlora' && gpusPerNode === 0) throw new AiplatError('unprocessable', 'QLoRA quantises the base model to 4 bits on a GPU: ask for GPUs (resources.gpusPerNode), or choose LoRA on CPU', { field: 'method' });
        if (gpusPerNode === 0 && !strategy.cpu) throw new AiplatError('unprocessable', `The ${strategy.id} strategy needs GPUs: ask for resources.gpusPerNode`, { field: 'strategy.id' });
        const processesPerNode = Number(body.resources.processesPerNode ?? Math.max(1, gpusPerNode));
        const nodes = Number(body.resources.nodes ?? 1);
        const refusal = strategy.check?.({ trainPy: TRAIN_PY, specFile: '', runDir: '', processesPerNode, gpusPerNode, nodes, options: body.strategy.options ?? {}, hyper: { ...body.hyper, method: body.method } });
        if (refusal) throw new AiplatError('unprocessable', refusal, { field: 'strategy.id' });

        // The inputs exist and the caller may read them; the output model is theirs to write.
        const datasets = plugin.service(datasetsService);
        const models = plugin.service(modelsService);
        const dataset = await datasets.get(body.datasetVersion);
        if (!dataset || !ctx.can('datasets:read', dataset.dataset.team)) throw new AiplatError('validation_failed', `No dataset version ${body.datasetVersion}`, { field: 'datasetVersion' });
        if (body.baseModelVersion) {
          const base = await models.get(body.baseModelVersion);
          const baseModel = base ? await models.model(base.modelId) : undefined;
          if (!baseModel || !ctx.can('models:read', baseModel.team)) throw new AiplatError('validation_failed', `No model version ${body.baseModelVersion}`, { field: 'baseModelVersion' });
        }
        const output = await models.model(body.output.model);
        if (!output || !ctx.can('models:write', output.team)) throw new AiplatError('validation_failed', `No model ${body.output.model} you may register versions of`, { field: 'output.model' });
        if (body.datasetFormat !== 'text') {
          const reports = await datasets.validate(body.datasetVersion, { format: body.datasetFormat ?? 'auto' });
          if (reports.length === 0) throw new AiplatError('unprocessable', `Dataset version ${dataset.number} of ${dataset.dataset.name} holds no JSONL training file: choose datasetFormat "text" for plain text`, { field: 'datasetVersion' });
          const bad = reports.filter((r) => r.invalid > 0);
          if (bad.length > 0) {
            const first = bad[0]!;
            throw new AiplatError(
              'unprocessable',
              `Dataset version ${dataset.number} of ${dataset.dataset.name} is not valid ${first.format} data: ${first.path} has ${first.invalid} bad line(s), e.g. line ${first.errors[0]?.line}: ${first.errors[0]?.message}`,
              { field: 'datasetVersion', reports: bad.map((r) => ({ path: r.path, format: r.format, invalid: r.invalid, errors: r.errors.slice(0, 10) })) },
            );
          }
        }

        const id = randomUUID();
        const [row] = (await plugin
          .db(T.runs)
          .insert({
            id,
            name: body.name,
            team_id: team,
            state: 'pending',
            method: body.method,
            strategy: strategy.id,
            base_model_version: body.baseModelVersion ?? null,
            dataset_version: body.datasetVersion,
            output_model: body.output.model,
            spec: JSON.stringify(body),
            created_by: user.id,
          })
          .returning('*')) as RunRow[];
        let workload: Workload;
        try {
          await mkdir(runDirOf(plugin, id), { recursive: true });
          workload = await submit(plugin, row!, await prepare(plugin, id, body, null), user);
        } catch (err) {
          await plugin.db(T.runs).where({ id }).delete();
          await rm(runDirOf(plugin, id), { recursive: true, force: true });
          throw err;
        }
        const [started] = (await plugin.db(T.runs).where({ id }).update({ workload_id: workload.id }).returning('*')) as RunRow[];
        await recordAttempt(plugin.db, { runId: id, workloadId: workload.id });
        follow(plugin, id, workload.id);
        await ctx.audit('training:run.start', { run: id, workload: workload.id, strategy: strategy.id, method: body.method }, { resource: { type: 'training-run', id }, team });
        await callHook(plugin, trainingHooks.runStarted, { run: toRun(started!) });
        await recordLineage(plugin, started!, null);
        return reply(201, { ...toRun(started!), checkpoints: [] });
      },
    });

    env.route({
      method: 'POST',
      path: '/runs/:id/cancel',
      summary: 'Cancel a run: the worker gets SIGTERM, saves a checkpoint and stops',
      permission: 'training:write',
      mutates: false,
      audit: 'explicit',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      handler: async (ctx) => {
        const row = await runOr404(ctx, ctx.params.id, 'training:write');
        if (!row.workload_id || !['pending', 'running'].includes(row.state)) throw new AiplatError('conflict', `The run is ${row.state}: nothing to cancel`, { state: row.state });
        await ctx.plugin.service(coreServices.workloads).cancel(row.workload_id, { reason: `cancelled by ${ctx.user!.username}` });
        await ctx.audit('training:run.cancel', { run: row.id }, { resource: { type: 'training-run', id: row.id }, team: row.team_id });
        return toRun((await ctx.plugin.db(T.runs).where({ id: row.id }).first()) as RunRow);
      },
    });

    env.route({
      method: 'POST',
      path: '/runs/:id/resume',
      summary: 'Resume a cancelled or failed run from a checkpoint (the latest by default): the step counter goes on',
      permission: 'training:write',
      mutates: false,
      audit: 'explicit',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      body: json({ type: 'object', additionalProperties: false, properties: { step: { type: 'integer', minimum: 0 } } }),
      handler: async (ctx) => {
        const plugin = ctx.plugin;
        const row = await runOr404(ctx, ctx.params.id, 'training:write');
        if (!['cancelled', 'failed'].includes(row.state)) throw new AiplatError('conflict', `Only a cancelled or failed run resumes; this one is ${row.state}`, { state: row.state });
        const checkpoints = await checkpointsOnDisk(runDirOf(plugin, row.id));
        const from = ctx.body.step === undefined ? checkpoints.at(-1) : checkpoints.find((c) => c.step === ctx.body.step);
        if (!from) {
          throw new AiplatError('conflict', ctx.body.step === undefined ? 'The run saved no checkpoint to resume from' : `The run has no checkpoint at step ${ctx.body.step}`, {
            steps: checkpoints.map((c) => c.step),
          });
        }
        const body = toRun(row).spec as Record<string, any>;
        const prepared = await prepare(plugin, row.id, body, from.path);
        const workload = await submit(plugin, row, prepared, ctx.user!);
        const [resumed] = (await plugin
          .db(T.runs)
          .where({ id: row.id })
          .update({ workload_id: workload.id, state: 'pending', reason: null, attempts: row.attempts + 1, finished_at: null })
          .returning('*')) as RunRow[];
        await recordAttempt(plugin.db, { runId: row.id, workloadId: workload.id, fromStep: from.step });
        follow(plugin, row.id, workload.id);
        await ctx.audit('training:run.resume', { run: row.id, step: from.step, workload: workload.id }, { resource: { type: 'training-run', id: row.id }, team: row.team_id });
        await callHook(plugin, trainingHooks.runStarted, { run: toRun(resumed!) });
        return toRun(resumed!);
      },
    });

    // ---- history, compare, retry, templates ----

    env.route({
      method: 'GET',
      path: '/runs/compare',
      summary: 'Two to six runs side by side: the runs, and their flattened request fields as rows (a value per run, differences flagged)',
      permission: 'training:read',
      query: { type: 'object', required: ['ids'], properties: { ids: { type: 'string', minLength: 3, maxLength: 1000 } } },
      handler: async (ctx) => {
        const ids = [...new Set(String(ctx.query.ids).split(',').map((s) => s.trim()).filter(Boolean))];
        if (ids.length < 2 || ids.length > 6) throw new AiplatError('validation_failed', `Name two to six different runs: ?ids=a,b (got ${ids.length})`, { field: 'ids', ids });
        const runs: TrainingRun[] = [];
        for (const id of ids) runs.push(toRun(await runOr404(ctx, id)));
        return { runs, rows: compareRows(runs) };
      },
    });

    env.route({
      method: 'POST',
      path: '/runs/:id/retry',
      summary: 'Retry a failed or cancelled run from step 0 with the same request: its output and checkpoints go, a new attempt starts',
      permission: 'training:write',
      mutates: false,
      audit: 'explicit',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      handler: async (ctx) => {
        const plugin = ctx.plugin;
        const row = await runOr404(ctx, ctx.params.id, 'training:write');
        if (!['cancelled', 'failed'].includes(row.state)) {
          throw new AiplatError('conflict', `Only a failed or cancelled run can be retried; this one is ${row.state}${row.state === 'succeeded' ? ': clone it to train again' : ': cancel it first'}`, { state: row.state });
        }
        // A fresh start: the old attempt's output (checkpoints, final/) goes; data/ and base/ stay.
        // It is set aside first and only removed once the new attempt is submitted, so a refused
        // submission (the cluster full, say) loses nothing.
        const runDir = runDirOf(plugin, row.id);
        const out = path.join(runDir, 'out');
        const aside = path.join(runDir, `.out-before-retry-${Date.now()}`);
        if (existsSync(out)) await rename(out, aside);
        let workload: Workload;
        try {
          const body = toRun(row).spec as Record<string, any>;
          workload = await submit(plugin, row, await prepare(plugin, row.id, body, null), ctx.user!);
        } catch (err) {
          if (existsSync(aside)) await rename(aside, out);
          throw err;
        }
        await rm(aside, { recursive: true, force: true });
        await plugin.db(T.checkpoints).where({ run_id: row.id }).delete();
        await recordAttempt(plugin.db, { runId: row.id, workloadId: workload.id, fromStep: null });
        const [retried] = (await plugin
          .db(T.runs)
          .where({ id: row.id })
          .update({ workload_id: workload.id, state: 'pending', reason: null, attempts: row.attempts + 1, result_model_version: null, result_adapter_version: null, finished_at: null })
          .returning('*')) as RunRow[];
        follow(plugin, row.id, workload.id);
        await ctx.audit('training:run.retry', { run: row.id, workload: workload.id, attempt: row.attempts + 1 }, { resource: { type: 'training-run', id: row.id }, team: row.team_id });
        await callHook(plugin, trainingHooks.runStarted, { run: toRun(retried!) });
        return toRun(retried!);
      },
    });

    env.route({
      method: 'GET',
      path: '/templates',
      summary: 'The run templates of your teams (saved wizard choices), by name',
      permission: 'training:read',
      handler: async (ctx) => {
        const rows = (await scoped(ctx, TEMPLATES, 'training:read').orderBy('name')) as TemplateRow[];
        return { items: rows.map(toTemplate) };
      },
    });

    env.route({
      method: 'POST',
      path: '/templates',
      summary: 'Save a run request (without its name and output model) as a template of a team',
      permission: 'training:write',
      audit: 'explicit',
      body: json({
        type: 'object',
        required: ['name', 'body'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 100, pattern: '\\S' },
          description: { type: 'string', maxLength: 1000 },
          team: { type: 'string', minLength: 1 },
          body: templateRequest,
        },
      }),
      handler: async (ctx) => {
        const body = ctx.body as { name: string; description?: string; team?: string; body: Record<string, unknown> };
        if (body.body.baseModelVersion && body.body.template) {
          throw new AiplatError('validation_failed', 'A template gives either body.baseModelVersion or body.template, not both', { field: 'body.baseModelVersion' });
        }
        const owner = ownership(ctx, 'training:write', body.team);
        const name = body.name.trim();
        const clash = await ctx.db(TEMPLATES).where({ team_id: owner.team_id, name }).first();
        if (clash) throw new AiplatError('conflict', `Team ${owner.team_id} already has a training template named ${name}`, { name });
        const [row] = (await ctx
          .db(TEMPLATES)
          .insert({ id: randomUUID(), name, description: body.description ?? '', body: JSON.stringify(body.body), ...owner })
          .returning('*')) as TemplateRow[];
        await ctx.audit('training:template.create', { template: row!.id, name }, { resource: { type: 'training-template', id: row!.id }, team: row!.team_id });
        return reply(201, toTemplate(row!));
      },
    });

    env.route({
      method: 'DELETE',
      path: '/templates/:id',
      summary: 'Delete a run template',
      permission: 'training:write',
      audit: 'explicit',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
      handler: async (ctx) => {
        const row = await scopedOr404<TemplateRow>(ctx, TEMPLATES, 'training:write', { id: ctx.params.id }, `No training template ${ctx.params.id}`);
        await ctx.db(TEMPLATES).where({ id: row.id }).delete();
        await ctx.audit('training:template.delete', { template: row.id, name: row.name }, { resource: { type: 'training-template', id: row.id }, team: row.team_id });
      },
    });
  },

  async start(ctx) {
    plugin = ctx;
    lineageOf(ctx)?.describeKind(RUN_NODE, { route: '/training/runs/{id}' });
    // Follow again what was running when the core stopped.
    const live = (await ctx.db(T.runs).whereIn('state', ['pending', 'running']).whereNotNull('workload_id').select('id', 'workload_id')) as { id: string; workload_id: string }[];
    for (const r of live) follow(ctx, r.id, r.workload_id);
    await mkdir(path.join(ctx.platform.dataDir, 'plugins', 'training', 'runs'), { recursive: true });
  },

  stop() {
    for (const id of [...follows.keys()]) unfollow(id);
    plugin = undefined;
  },
});

let plugin: PluginContext | undefined;
