/**
 * The serving plugin's tables and their rows as the API answers them.
 *
 * - `p_serving_deployments`: one per deployment; `traffic` (revisions with weights) says which
 *   revisions get requests, `pending` which revision is rolling out.
 * - `p_serving_revisions`: one per change, immutable configuration (model version, runtime,
 *   executor, resources, replicas, options), its own service workload while it runs.
 */
import type { Knex } from '@aiplat/plugin-sdk';
import type { Deployment, DeploymentState, GatewaySettings, Revision, RevisionState, ServingResources, TrafficEntry } from '../api/index.js';

export const T = { deployments: 'p_serving_deployments', revisions: 'p_serving_revisions', keys: 'p_serving_api_keys', usage: 'p_serving_usage' } as const;

/** A deployment's gateway settings when it has none of its own. */
export const DEFAULT_GATEWAY: GatewaySettings = { balancing: 'round-robin', slo: { errorRate: null, p99LatencyMs: null, windowSeconds: 60 } };

export interface DeploymentRow {
  id: string;
  name: string;
  team_id: string;
  created_by: string | null;
  served_model_name: string;
  state: DeploymentState;
  reason: string | null;
  traffic: TrafficEntry[] | string;
  pending: { revision: number; canaryWeight: number | null } | string | null;
  latest_revision: number;
  stopped: boolean;
  gateway: GatewaySettings | string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

export interface ApiKeyRow {
  id: string;
  team_id: string;
  name: string;
  prefix: string;
  /** SHA-256 of the secret (hex): the secret is random, so a slow hash would add nothing. */
  hash: string;
  models: string[] | string;
  expires_at: Date | string | null;
  revoked_at: Date | string | null;
  rpm: number | null;
  tpm: number | null;
  last_used_at: Date | string | null;
  created_by: string | null;
  created_at: Date | string;
}

/** Metered use per minute, deployment, revision and caller (an API key, or a platform user). */
export interface UsageRow {
  minute: Date | string;
  deployment_id: string;
  revision: number;
  team_id: string;
  key_id: string;
  user_id: string;
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface RevisionRow {
  id: string;
  deployment_id: string;
  number: number;
  state: RevisionState;
  reason: string | null;
  model_version: string;
  model_name: string;
  model_version_number: number;
  runtime: string;
  executor: string;
  resources: ServingResources | string;
  replicas: number;
  options: Record<string, unknown> | string;
  change: string;
  rollback_of: number | null;
  workload_id: string | null;
  /** The name the engine knows the model by, when it is not the served name (`RuntimeLaunch.upstreamModel`). */
  upstream_model: string | null;
  /** The model's context length (prompt + answer tokens), from its config; null when unknown. */
  max_model_len: number | null;
  created_by: string | null;
  created_at: Date | string;
  /** When its current workload was submitted (the deploy, or the last start after a stop). */
  started_at: Date | string;
  ready_at: Date | string | null;
  retired_at: Date | string | null;
}

export function migrations() {
  return [
    {
      name: '0001_deployments',
      async up(db: Knex) {
        await db.schema.createTable(T.deployments, (t) => {
          t.text('id').primary();
          t.text('name').notNullable();
          t.text('team_id').notNullable().index();
          t.text('created_by');
          // The name clients put in `model`: one deployment per name on the platform.
          t.text('served_model_name').notNullable().unique();
          t.text('state').notNullable();
          t.text('reason');
          t.jsonb('traffic').notNullable().defaultTo('[]');
          t.jsonb('pending');
          t.integer('latest_revision').notNullable().defaultTo(0);
          t.boolean('stopped').notNullable().defaultTo(false);
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['team_id', 'name']);
        });
        await db.schema.createTable(T.revisions, (t) => {
          t.text('id').primary();
          t.text('deployment_id').notNullable().references('id').inTable(T.deployments).onDelete('CASCADE');
          t.integer('number').notNullable();
          t.text('state').notNullable();
          t.text('reason');
          t.text('model_version').notNullable();
          t.text('model_name').notNullable();
          t.integer('model_version_number').notNullable();
          t.text('runtime').notNullable();
          t.text('executor').notNullable();
          t.jsonb('resources').notNullable();
          t.integer('replicas').notNullable();
          t.jsonb('options').notNullable();
          t.text('change').notNullable().defaultTo('');
          t.integer('rollback_of');
          t.text('workload_id').index();
          t.text('upstream_model');
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('started_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('ready_at', { useTz: true });
          t.timestamp('retired_at', { useTz: true });
          t.unique(['deployment_id', 'number']);
        });
      },
    },
    {
      name: '0002_gateway',
      async up(db: Knex) {
        await db.schema.alterTable(T.deployments, (t) => {
          t.jsonb('gateway');
        });
        await db.schema.alterTable(T.revisions, (t) => {
          t.integer('max_model_len');
        });
        await db.schema.createTable(T.keys, (t) => {
          t.text('id').primary();
          t.text('team_id').notNullable().index();
          t.text('name').notNullable();
          t.text('prefix').notNullable();
          t.text('hash').notNullable().unique();
          t.jsonb('models').notNullable().defaultTo('[]');
          t.timestamp('expires_at', { useTz: true });
          t.timestamp('revoked_at', { useTz: true });
          t.integer('rpm');
          t.integer('tpm');
          t.timestamp('last_used_at', { useTz: true });
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
        });
        await db.schema.createTable(T.usage, (t) => {
          t.timestamp('minute', { useTz: true }).notNullable();
          t.text('deployment_id').notNullable();
          t.integer('revision').notNullable();
          t.text('team_id').notNullable();
          // '' when the caller was a platform user (then user_id), or a key (then user_id is '').
          t.text('key_id').notNullable();
          t.text('user_id').notNullable();
          t.bigInteger('requests').notNullable().defaultTo(0);
          t.bigInteger('errors').notNullable().defaultTo(0);
          t.bigInteger('prompt_tokens').notNullable().defaultTo(0);
          t.bigInteger('completion_tokens').notNullable().defaultTo(0);
          t.primary(['minute', 'deployment_id', 'revision', 'team_id', 'key_id', 'user_id']);
          t.index(['team_id', 'minute']);
        });
      },
    },
  ];
}

export function iso(value: Date | string | null): string | null {
  if (value === null || value === undefined) return null;
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

export function parsed<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** The states of a revision that has a workload running (or starting). */
export const LIVE_REVISION_STATES = ['starting', 'ready', 'degraded'] as const;

/** The deployment's rollout in progress, or null. */
export function pendingOf(d: Pick<DeploymentRow, 'pending'>): { revision: number; canaryWeight: number | null } | null {
  return d.pending === null ? null : parsed(d.pending);
}

export function toRevision(r: RevisionRow): Revision {
  return {
    id: r.id,
    deploymentId: r.deployment_id,
    number: r.number,
    state: r.state,
    reason: r.reason,
    modelVersion: r.model_version,
    modelName: r.model_name,
    modelVersionNumber: r.model_version_number,
    runtime: r.runtime,
    executor: r.executor,
    resources: parsed(r.resources),
    replicas: r.replicas,
    options: parsed(r.options),
    change: r.change,
    rollbackOf: r.rollback_of,
    workloadId: r.workload_id,
    createdBy: r.created_by,
    createdAt: iso(r.created_at)!,
    readyAt: iso(r.ready_at),
    retiredAt: iso(r.retired_at),
  };
}

/** The deployment; `primary` is the revision that describes it (the biggest share of traffic, else the newest). */
export function toDeployment(d: DeploymentRow, primary: RevisionRow | undefined): Deployment {
  return {
    id: d.id,
    name: d.name,
    team: d.team_id,
    servedModelName: d.served_model_name,
    state: d.state,
    reason: d.reason,
    latestRevision: d.latest_revision,
    traffic: parsed(d.traffic),
    pending: pendingOf(d),
    runtime: primary?.runtime ?? '',
    modelVersion: primary?.model_version ?? '',
    modelName: primary?.model_name ?? '',
    modelVersionNumber: primary?.model_version_number ?? 0,
    gateway: gatewayOf(d),
    maxModelLen: primary?.max_model_len ?? null,
    createdBy: d.created_by,
    createdAt: iso(d.created_at)!,
    updatedAt: iso(d.updated_at)!,
  };
}

/** A deployment's gateway settings, defaults filled in. */
export function gatewayOf(d: Pick<DeploymentRow, 'gateway'>): GatewaySettings {
  const own = d.gateway ? parsed(d.gateway) : null;
  return { balancing: own?.balancing ?? DEFAULT_GATEWAY.balancing, slo: { ...DEFAULT_GATEWAY.slo, ...(own?.slo ?? {}) } };
}

/** The revision number that carries most traffic, else the pending one, else the latest. */
export function primaryNumber(d: Pick<DeploymentRow, 'traffic' | 'pending' | 'latest_revision'>): number {
  const traffic = parsed(d.traffic);
  if (traffic.length > 0) return [...traffic].sort((a, b) => b.weight - a.weight || b.revision - a.revision)[0]!.revision;
  const pending = pendingOf(d);
  return pending?.revision ?? d.latest_revision;
}

export async function revisionsOf(db: Knex, deploymentId: string): Promise<RevisionRow[]> {
  return (await db(T.revisions).where({ deployment_id: deploymentId }).orderBy('number', 'desc')) as RevisionRow[];
}

export async function deploymentOf(db: Knex, row: DeploymentRow): Promise<Deployment> {
  const primary = (await db(T.revisions).where({ deployment_id: row.id, number: primaryNumber(row) }).first()) as RevisionRow | undefined;
  return toDeployment(row, primary);
}
