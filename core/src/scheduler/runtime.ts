import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Registry } from 'prom-client';
import {
  coreTopics,
  deviceHooks,
  schedulerExtensionPoints,
  workloadHooks,
  type DeviceProvider,
  type EventBus,
  type Executor,
  type Logger,
  type Principal,
  type Workload,
  type WorkloadsService,
} from '@aiplat/plugin-sdk';
import type { KernelHooks } from '../kernel/hooks.js';
import { Agent } from './agent.js';
import { localNodeProvider, simulatedProvider } from './devices/simulated.js';
import { NodeConnections, type NodeSecretsSealer } from './connections.js';
import { heartbeat, markMissingNodes, NODE_HEARTBEAT_SECONDS, syncNodes } from './ledger.js';
import { LocalExecutor } from './local/local-executor.js';
import type { Strategy } from './placement.js';
import { Scheduler, WORKLOADS_TOPIC } from './scheduler.js';
import { Changes, readWorkload } from './store.js';
import { GpuSampler } from './sampler.js';
import { gpuHours } from './quotas.js';

export interface SchedulerRuntimeOptions {
  db: Knex;
  kind: 'embedded' | 'postgres';
  events: EventBus;
  hooks: KernelHooks;
  logger: Logger;
  /** This core instance's id: the agent of the nodes it registers. */
  instanceId: string;
  dataDir: string;
  nodeId: string | undefined;
  strategy: Strategy;
  preemption: boolean;
  timeZone: string;
  stopGrace: number;
  simulatedGpus: string | undefined;
  simulatedNodes: number;
  gpuSampleSeconds: number;
  gpuMetricsRetentionHours: number;
  canInTeam: (principal: Principal, permission: string, team: string) => boolean;
  teamExists: (team: string) => boolean;
  /** Seals node secrets (TLS keys of added hosts) with AIPLAT_SECRET_KEY. */
  sealer: NodeSecretsSealer;
}

/**
 * The scheduler, the GPU ledger's node registration and the agent, wired together: what
 * `startCore` creates. Device providers and executors are extension points the core contributes
 * to itself (`local`, and `simulated` when switched on) and plugins add to.
 */
/** The stream topic of node changes: `{ ids }`, to readers holding `nodes:read`. */
export const NODES_TOPIC = coreTopics.nodes;

export class SchedulerRuntime {
  readonly scheduler: Scheduler;
  readonly agent: Agent;
  readonly local: LocalExecutor;
  /** Nodes added through the API, reached through plugins' node connectors. */
  readonly connections: NodeConnections;
  private readonly ownNodes = new Set<string>();
  private subscription: { unsubscribe(): void } | undefined;
  private pluginsSubscription: { unsubscribe(): void } | undefined;
  private discoverTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sampler: GpuSampler | undefined;

  constructor(private readonly options: SchedulerRuntimeOptions) {
    const { hooks } = options;
    hooks.declareExtensionPoint(schedulerExtensionPoints.executors, 'core');
    hooks.declareExtensionPoint(schedulerExtensionPoints.deviceProviders, 'core');
    hooks.declareExtensionPoint(schedulerExtensionPoints.nodeConnectors, 'core');
    hooks.declareHook(workloadHooks.beforeSubmit, 'core');
    hooks.declareHook(workloadHooks.stateChanged, 'core');
    hooks.declareHook(deviceHooks.sampled, 'core');
    this.local = new LocalExecutor({ runsDir: path.join(options.dataDir, 'runs'), logger: options.logger, graceSeconds: options.stopGrace });
    hooks.contribute(schedulerExtensionPoints.executors, 'core', this.local);
    const nodeId = options.nodeId ?? os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63);
    hooks.contribute(schedulerExtensionPoints.deviceProviders, 'core', localNodeProvider({ nodeId, name: os.hostname() }));
    if (options.simulatedGpus) {
      hooks.contribute(schedulerExtensionPoints.deviceProviders, 'core', simulatedProvider({ capture: options.simulatedGpus, nodes: options.simulatedNodes }));
    }
    this.connections = new NodeConnections({
      db: options.db,
      instanceId: options.instanceId,
      logger: options.logger.child({ component: 'nodes' }),
      connectors: () => hooks.contributions(schedulerExtensionPoints.nodeConnectors),
      sealer: options.sealer,
      ownNodes: this.ownNodes,
      onChanged: (ids) => this.publishNodes(ids),
    });
    const onChanges = (changes: Changes) => this.publish(changes);
    this.scheduler = new Scheduler({
      db: options.db,
      kind: options.kind,
      events: options.events,
      hooks,
      logger: options.logger.child({ component: 'scheduler' }),
      executors: () => this.executors(),
      strategy: options.strategy,
      preemption: options.preemption,
      timeZone: options.timeZone,
      onChanges,
      canInTeam: options.canInTeam,
      teamExists: options.teamExists,
    });
    this.agent = new Agent({
      db: options.db,
      logger: options.logger.child({ component: 'agent' }),
      events: options.events,
      executors: () => this.executors(),
      graceSeconds: options.stopGrace,
      onChanges,
      nudgeScheduler: () => this.scheduler.nudge(),
      nodes: () => this.ownNodes,
    });
  }

  executors(): Executor[] {
    return this.options.hooks.contributions(schedulerExtensionPoints.executors);
  }

  providers(): DeviceProvider[] {
    return this.options.hooks.contributions(schedulerExtensionPoints.deviceProviders);
  }

  /** `registry`: where the GPU gauges go (the core's /metrics). */
  async start(registry?: Registry): Promise<void> {
    await this.discover();
    // Every state change anywhere (this core or another replica, through Redis) may mean work for
    // this core's agent or capacity for the scheduler.
    this.subscription = this.options.events.subscribe(WORKLOADS_TOPIC, () => {
      this.agent.nudge();
      this.scheduler.nudge();
    });
    // A plugin enabled or disabled may add or take away executors and device providers.
    this.pluginsSubscription = this.options.events.subscribe<{ id: string; state: string }>('plugins', (event) => {
      // A plugin enabled again: the replicas of its executors are followed again.
      const returned =
        event.payload.state === 'enabled'
          ? this.executors().filter((e) => this.options.hooks.contributorOf(schedulerExtensionPoints.executors, e) === event.payload.id)
          : [];
      void this.discover()
        .then(async () => {
          for (const executor of returned) await this.agent.reattach(executor.name);
          await this.agent.recover();
        })
        .then(() => this.scheduler.nudge())
        .catch((error: Error) => this.options.logger.warn({ err: error.message }, 'cannot follow a plugin change'));
    });
    await this.agent.start();
    await this.scheduler.start();
    const again = () => {
      this.discoverTimer = setTimeout(() => {
        void this.discover().finally(again);
      }, 60_000);
      this.discoverTimer.unref();
    };
    again();
    this.heartbeatTimer = setInterval(() => {
      heartbeat(this.options.db, this.options.instanceId).catch((error: Error) => this.options.logger.warn({ err: error.message }, 'cannot refresh the nodes\' heartbeat'));
    }, NODE_HEARTBEAT_SECONDS * 1000);
    this.heartbeatTimer.unref();
    this.sampler = new GpuSampler({
      db: this.options.db,
      logger: this.options.logger,
      hooks: this.options.hooks,
      // The added nodes' cards are sampled through their connectors.
      providers: () => [...this.providers(), { name: 'connected', discover: async () => [], sample: () => this.connections.sample() }],
      nodes: () => this.ownNodes,
      // Executors' processIds(): a container's processes are aiplat's, not memory held outside it.
      executors: () => this.executors(),
      registry,
      intervalSeconds: this.options.gpuSampleSeconds,
      retentionHours: this.options.gpuMetricsRetentionHours,
    });
    this.sampler.start();
  }

  async stop(): Promise<void> {
    clearTimeout(this.discoverTimer);
    clearInterval(this.heartbeatTimer);
    await this.sampler?.stop();
    this.subscription?.unsubscribe();
    this.pluginsSubscription?.unsubscribe();
    await this.scheduler.stop();
    await this.agent.stop();
    await this.local.close();
  }

  /** Ask every device provider for its nodes and cards and write them to the ledger. */
  async discover(): Promise<void> {
    const seen: string[] = [];
    let failed = false;
    // This machine's nodes (its own, the simulated ones) run every executor that runs locally.
    const localExecutors = this.executors()
      .filter((e) => e.local)
      .map((e) => e.name);
    for (const provider of this.providers()) {
      try {
        let nodes = await provider.discover();
        if (provider.name === 'local' || provider.name === 'simulated') {
          nodes = nodes.map((n) => ({ ...n, executors: [...new Set([...n.executors, ...localExecutors])] }));
        }
        await syncNodes(this.options.db, this.options.instanceId, provider.name, nodes);
        for (const node of nodes) {
          seen.push(node.id);
          this.ownNodes.add(node.id);
        }
      } catch (error) {
        failed = true;
        this.options.logger.warn({ provider: provider.name, err: (error as Error).message }, 'device discovery failed');
      }
    }
    // A provider that failed this time says nothing about its nodes: take none offline.
    if (!failed) await markMissingNodes(this.options.db, this.options.instanceId, seen);
    await this.connections.refresh().catch((error: Error) => this.options.logger.warn({ err: error.message }, 'cannot refresh the added nodes'));
  }

  /** Nodes changed (added, removed, cordoned, labelled, not ready, ready again): `nodes` on the stream, for the pages. */
  async publishNodes(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.options.events
      .publish(NODES_TOPIC, { ids }, { permission: 'nodes:read' })
      .catch((error: Error) => this.options.logger.warn({ err: error.message }, 'cannot publish a node change'));
  }

  /** Tell the world about committed state changes: the stream, the `workloads.stateChanged` hook, the agent. */
  async publish(changes: Changes): Promise<void> {
    if (changes.list.length === 0) return;
    const ids = [...new Set(changes.list.map((c) => c.id))];
    const rows = (await this.options.db('workloads').whereIn('id', ids).select('id', 'name', 'kind', 'team_id', 'state', 'epoch', 'owner', 'user_id', 'created_at')) as {
      id: string;
      name: string;
      kind: string;
      team_id: string;
      state: string;
      epoch: number;
      owner: string;
      user_id: string | null;
      created_at: Date | string;
    }[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const change of changes.list) {
      const row = byId.get(change.id);
      if (!row) continue;
      await this.options.events
        .publish(
          WORKLOADS_TOPIC,
          {
            id: change.id,
            name: row.name,
            kind: row.kind,
            team: row.team_id,
            userId: row.user_id,
            owner: row.owner,
            createdAt: new Date(row.created_at).toISOString(),
            from: change.from,
            state: change.to,
            reason: change.reason,
            epoch: row.epoch,
          },
          { team: row.team_id, permission: 'workloads:read' },
        )
        .catch((error: Error) => this.options.logger.warn({ err: error.message }, 'cannot publish a workload state change'));
    }
    if (this.options.hooks.isUsed(workloadHooks.stateChanged)) {
      for (const change of changes.list) {
        if (change.from === change.to) continue;
        const workload = await readWorkload(this.options.db, change.id);
        if (!workload) continue;
        await this.options.hooks
          .call(workloadHooks.stateChanged, { workload, from: change.from, to: change.to, reason: change.reason })
          .catch((error: Error) => this.options.logger.warn({ err: error.message, workload: change.id }, 'a workloads.stateChanged tap failed'));
      }
    }
    this.agent.nudge();
    this.scheduler.nudge();
  }

  /** What plugins get as `coreServices.workloads`. */
  service(owner: string): WorkloadsService {
    const db = this.options.db;
    return {
      submit: async (spec, { user, within }) => {
        const changes = new Changes();
        if (within) {
          // In the request's transaction; announced once it commits.
          const row = await this.scheduler.submit(within.db, spec, { user, owner }, changes);
          within.afterCommit(() => this.publish(changes));
          return (await readWorkload(within.db, row.id)) as Workload;
        }
        const id = await db.transaction(async (trx) => (await this.scheduler.submit(trx, spec, { user, owner }, changes)).id);
        await this.publish(changes);
        return (await readWorkload(db, id)) as Workload;
      },
      get: (id) => readWorkload(db, id),
      gpuHours: async (ids, { from, to }) => {
        if (ids.length === 0) return {};
        // Only the caller's own workloads.
        const own = (await db('workloads').whereIn('id', ids).where({ owner }).pluck('id')) as string[];
        if (own.length === 0) return {};
        return Object.fromEntries(await gpuHours(db, { from, to, groupBy: 'workload', workloads: own }));
      },
      cancel: async (id, options = {}) => {
        const changes = new Changes();
        const reason = options.reason ?? `cancelled by ${owner}`;
        if (options.within) {
          await this.scheduler.cancel(options.within.db, id, reason, changes);
          options.within.afterCommit(() => this.publish(changes));
          return (await readWorkload(options.within.db, id)) as Workload;
        }
        await db.transaction((trx) => this.scheduler.cancel(trx, id, reason, changes));
        await this.publish(changes);
        return (await readWorkload(db, id)) as Workload;
      },
    };
  }
}
