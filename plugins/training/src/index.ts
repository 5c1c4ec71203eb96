/**
 * The training plugin: a run is a request (base model version or architecture template, dataset
 * version, method, hyper-parameters, strategy, resources) turned into a run spec for the Python
 * worker (`worker/`) and submitted to the core's scheduler as a workload. The plugin follows the
 * workload: metric points and checkpoint events from its streams, its end from `workloads.stateChanged`,
 * and on success registers `final/` as a version of the output model, with lineage.
 *
 * Run folders live under `<data dir>/plugins/training/runs/<run id>/` (`data/`, `base/`, `out/`,
 * `spec.json`) on the core's machine: runs go to the local executor in this version.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import {
  AiplatError,
  coreServices,
  definePlugin,
  json,
  reply,
  scoped,
  scopedOr404,
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
import { RUN_NODE, trainingExtensionPoints, trainingHooks, type Checkpoint, type RunState, type StrategyContext, type TrainingRun, type TrainingStrategy } from '../api/index.js';

const WORKER_DIR = fileURLToPath(new URL('../worker/', import.meta.url));
const TRAIN_PY = path.join(WORKER_DIR, 'train.py');

const T = { runs: 'p_training_runs', checkpoints: 'p_training_checkpoints' } as const;

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
  ];
}

// ---- strategies ----

const torchrun = (c: StrategyContext) => ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', String(c.processesPerNode), c.trainPy, '--spec', c.specFile];

const BUILT_IN: TrainingStrategy[] = [
  {
    id: 'single',
    title: { en: 'Single process', 'zh-CN': '单进程' },
    cpu: true,
    check: (c) => (c.processesPerNode > 1 ? 'A single process uses one GPU at most: choose DDP or FSDP for more' : undefined),
    launch: (c) => ({ args: [c.trainPy, '--spec', c.specFile] }),
  },
  {
    id: 'ddp',
    title: { en: 'DDP (torchrun)', 'zh-CN': 'DDP（torchrun）' },
    cpu: true,
    launch: (c) => ({ args: torchrun(c) }),
  },
  {
    id: 'fsdp',
    title: { en: 'FSDP (torchrun)', 'zh-CN': 'FSDP（torchrun）' },
    cpu: true,
    check: (c) => ((c.hyper.method ?? 'full') !== 'full' ? 'FSDP shards full fine-tuning only: choose DDP for LoRA' : undefined),
    launch: (c) => ({ args: torchrun(c) }),
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
      properties: { id: { type: 'string', minLength: 1, maxLength: 40 }, options: { type: 'object' } },
    },
    resources: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { gpusPerNode: { type: 'integer', minimum: 0, maximum: 64 }, nodes: count(1), processesPerNode: count(64) },
    },
    output: { type: 'object', required: ['model'], additionalProperties: false, properties: { model: { type: 'string', minLength: 1, maxLength: 64 } } },
  },
} as const;

// ---- helpers ----

function pythonOf(plugin: PluginContext): string {
  const configured = String((plugin.config as { python?: string }).python ?? '').trim();
  if (configured) return configured;
  const venv = process.env.AIPLAT_TRAIN_VENV ?? path.resolve(WORKER_DIR, '..', '..', '..', 'node_modules', '.cache', 'aiplat-train-venv');
  const venvPython = path.join(venv, 'bin', 'python');
  return existsSync(venvPython) ? venvPython : 'python3';
}

const runDirOf = (plugin: PluginContext, runId: string) => path.join(plugin.platform.dataDir, 'plugins', 'training', 'runs', runId);

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
  const subs = [
    events.subscribe<{ replica: number; points: { name: string; step: number; value: number }[] }>(`workloads/${workloadId}/metrics`, (event) => {
      if (event.payload.replica !== 0) return;
      void (async () => {
        const row = (await plugin.db(T.runs).where({ id: runId }).first()) as RunRow | undefined;
        if (row) await callHook(plugin, trainingHooks.metricLogged, { run: toRun(row), points: event.payload.points.map((p) => ({ name: p.name, step: p.step, value: p.value })) });
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
  const context: StrategyContext = { trainPy: TRAIN_PY, specFile, runDir, processesPerNode, gpusPerNode, options: body.strategy?.options ?? {}, hyper: { ...body.hyper, method: body.method } };
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
      summary: 'The training runs of your teams, newest first',
      permission: 'training:read',
      query: {
        type: 'object',
        properties: { state: { type: 'string', enum: ['pending', 'running', 'succeeded', 'failed', 'cancelled'] }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 }, offset: { type: 'integer', minimum: 0, default: 0 } },
      },
      handler: async (ctx) => {
        let query = scoped(ctx, T.runs, 'training:read');
        if (ctx.query.state) query = query.where({ state: ctx.query.state });
        const rows = (await query.orderBy('created_at', 'desc').limit(ctx.query.limit).offset(ctx.query.offset)) as RunRow[];
        return { items: rows.map(toRun) };
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
        return { ...toRun(row), checkpoints: checkpoints.map((c) => ({ step: c.step, path: c.path, savedAt: iso(c.saved_at) })) };
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
        const gpusPerNode = Number(body.resources.gpusPerNode ?? 0);
        if (body.method === 'qlora' && gpusPerNode === 0) throw new AiplatError('unprocessable', 'QLoRA quantises the base model to 4 bits on a GPU: ask for GPUs (resources.gpusPerNode), or choose LoRA on CPU', { field: 'method' });
        if (gpusPerNode === 0 && !strategy.cpu) throw new AiplatError('unprocessable', `The ${strategy.id} strategy needs GPUs: ask for resources.gpusPerNode`, { field: 'strategy.id' });
        const processesPerNode = Number(body.resources.processesPerNode ?? Math.max(1, gpusPerNode));
        const refusal = strategy.check?.({ trainPy: TRAIN_PY, specFile: '', runDir: '', processesPerNode, gpusPerNode, options: body.strategy.options ?? {}, hyper: { ...body.hyper, method: body.method } });
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
        follow(plugin, row.id, workload.id);
        await ctx.audit('training:run.resume', { run: row.id, step: from.step, workload: workload.id }, { resource: { type: 'training-run', id: row.id }, team: row.team_id });
        await callHook(plugin, trainingHooks.runStarted, { run: toRun(resumed!) });
        return toRun(resumed!);
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
