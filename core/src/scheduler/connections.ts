import type { Knex } from 'knex';
import {
  AiplatError,
  type ConnectedNode,
  type DeviceProvider,
  type DiscoveredDevice,
  type Logger,
  type NodeConnection,
  type NodeConnector,
  type NodeSample,
} from '@aiplat/plugin-sdk';
import { simulatedProvider } from './devices/simulated.js';
import { NODE_STALE_SECONDS, syncNodes } from './ledger.js';

/** How long a connector may take to reach its host before the host counts as not answering. */
export const CONNECT_TIMEOUT_MS = 20_000;

/** Seals and opens the secret settings of a node (AIPLAT_SECRET_KEY; core/src/secrets/store.ts). */
export interface NodeSecretsSealer {
  readonly canStoreSecrets: boolean;
  seal(nodeId: string, secrets: Record<string, string>): Record<string, unknown>;
  open(nodeId: string, sealed: Record<string, unknown>): Record<string, string>;
}

export interface ConnectedNodeRow {
  id: string;
  name: string;
  connector: string;
  connection: Record<string, unknown>;
  connection_secrets: Record<string, unknown> | null;
  simulated_gpus: string | null;
  agent: string;
  state: string;
  state_reason: string | null;
  seen_at: Date | string;
}

export interface AddNodeRequest {
  kind: string;
  name: string;
  settings: Record<string, unknown>;
  secrets?: Record<string, string>;
  labels?: Record<string, string>;
  env?: Record<string, string>;
  allowedImages?: string[];
  simulatedGpus?: string;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Nodes administrators add through the API (`POST /api/v1/nodes`): each is reached through the
 * node connector of its `kind` (a plugin's: the docker plugin's remote engines). The core stores
 * the node, its settings and its sealed secrets; every discovery round the core that follows it
 * (its `agent`; another core takes over a node whose agent fell silent) connects again and records
 * what the connector reports, or makes the node `not-ready` with the connector's message.
 */
export class NodeConnections {
  private readonly simulated = new Map<string, DeviceProvider>();

  constructor(
    private readonly options: {
      db: Knex;
      instanceId: string;
      logger: Logger;
      connectors: () => NodeConnector[];
      sealer: NodeSecretsSealer;
      /** This core's nodes: the agent runs their replicas, the sampler samples their cards. */
      ownNodes: Set<string>;
      /** Nodes whose state or reason a discovery round changed. */
      onChanged?: (ids: string[]) => unknown;
    },
  ) {}

  connector(kind: string): NodeConnector | undefined {
    return this.options.connectors().find((c) => c.kind === kind);
  }

  kinds(): string[] {
    return this.options.connectors().map((c) => c.kind);
  }

  connectionOf(row: Pick<ConnectedNodeRow, 'id' | 'connection' | 'connection_secrets'>): NodeConnection {
    const sealed = row.connection_secrets ?? {};
    return { nodeId: row.id, settings: row.connection ?? {}, secrets: Object.keys(sealed).length > 0 ? this.options.sealer.open(row.id, sealed) : {} };
  }

  /** Simulated cards of a capture (for hosts without GPUs), through the fake nvidia-smi. */
  private simulatedOf(capture: string): DeviceProvider {
    let provider = this.simulated.get(capture);
    if (!provider) {
      provider = simulatedProvider({ capture, nodes: 1 });
      this.simulated.set(capture, provider);
    }
    return provider;
  }

  async simulatedDevices(capture: string): Promise<DiscoveredDevice[]> {
    const [node] = await this.simulatedOf(capture).discover();
    return node?.devices ?? [];
  }

  /** Reach the host: what the connector reports, plus simulated cards when the node has them. */
  async reach(connector: NodeConnector, connection: NodeConnection, simulatedGpus: string | null): Promise<ConnectedNode & { simulated: boolean }> {
    const reached = await withTimeout(connector.connect(connection), CONNECT_TIMEOUT_MS, `the ${connector.kind} host`);
    if (!simulatedGpus) return { ...reached, simulated: false };
    return {
      ...reached,
      simulated: true,
      labels: { ...reached.labels, 'aiplat.io/simulated': 'true' },
      devices: [...reached.devices, ...(await this.simulatedDevices(simulatedGpus)).map((d, i) => ({ ...d, index: reached.devices.length + i }))],
    };
  }

  /**
   * `POST /api/v1/nodes`: checks the request, reaches the host (a host that does not answer
   * refuses the request and stores nothing), then stores the node in a transaction of its own.
   * `db` must not be a transaction: reaching a host may take CONNECT_TIMEOUT_MS, and the embedded
   * database has one connection.
   */
  async add(db: Knex, request: AddNodeRequest): Promise<string> {
    const connector = this.connector(request.kind);
    if (!connector) {
      const kinds = this.kinds();
      throw new AiplatError(
        'validation_failed',
        `No node connector of kind "${request.kind}" is enabled (${kinds.length > 0 ? `enabled: ${kinds.join(', ')}` : 'enable a plugin that provides one, e.g. executor-docker'})`,
        { field: 'kind' },
      );
    }
    const secrets = request.secrets ?? {};
    for (const name of Object.keys(secrets)) {
      if (!connector.secretFields.includes(name)) {
        throw new AiplatError('validation_failed', `"${name}" is not a secret setting of ${request.kind} nodes (they take: ${connector.secretFields.join(', ') || 'none'})`, { field: `secrets.${name}` });
      }
    }
    if (Object.keys(secrets).length > 0 && !this.options.sealer.canStoreSecrets) {
      throw new AiplatError('secret_key_missing', 'TLS keys and other node secrets are stored encrypted: set AIPLAT_SECRET_KEY on the server first.');
    }
    const exists = async (q: Knex) => {
      const row = (await q('nodes').where({ id: request.name }).forUpdate().first('state')) as { state: string } | undefined;
      if (row && row.state !== 'removed') throw new AiplatError('conflict', `A node named "${request.name}" exists already`, { field: 'name' });
      return row !== undefined;
    };
    await db.transaction((trx) => exists(trx));
    const connection: NodeConnection = { nodeId: request.name, settings: request.settings, secrets };
    let reached: ConnectedNode & { simulated: boolean };
    try {
      reached = await this.reach(connector, connection, request.simulatedGpus ?? null);
    } catch (error) {
      await Promise.resolve(connector.disconnect?.(request.name)).catch(() => undefined);
      throw new AiplatError('node_unreachable', `Cannot add node "${request.name}": ${(error as Error).message}`, { field: 'settings' });
    }
    const row = {
      id: request.name,
      // The name people gave it (the engine's own host name is often the same on several hosts).
      name: request.name,
      address: reached.address,
      provider: `connector:${request.kind}`,
      agent: this.options.instanceId,
      labels: JSON.stringify(reached.labels ?? {}),
      executors: JSON.stringify(reached.executors),
      simulated: reached.simulated,
      cpu: reached.cpu ?? null,
      memory_mib: reached.memoryMiB ?? null,
      state: 'ready',
      state_reason: null,
      seen_at: new Date(),
      connector: request.kind,
      connection: JSON.stringify(request.settings),
      connection_secrets: Object.keys(secrets).length > 0 ? JSON.stringify(this.options.sealer.seal(request.name, secrets)) : null,
      simulated_gpus: request.simulatedGpus ?? null,
      user_labels: JSON.stringify(request.labels ?? {}),
      env: JSON.stringify(request.env ?? {}),
      allowed_images: JSON.stringify(request.allowedImages ?? []),
    };
    try {
      await db.transaction(async (trx) => {
        // Checked again: another request may have added it while the host was being reached.
        if (await exists(trx)) await trx('nodes').where({ id: request.name }).update(row);
        else await trx('nodes').insert(row);
        await syncNodes(trx, this.options.instanceId, `connector:${request.kind}`, [{ id: request.name, ...reached, name: request.name }]);
      });
    } catch (error) {
      await Promise.resolve(connector.disconnect?.(request.name)).catch(() => undefined);
      throw error;
    }
    this.options.ownNodes.add(request.name);
    return request.name;
  }

  /** The nodes this core follows now: its own, and those whose core has been silent too long. */
  private async followed(): Promise<ConnectedNodeRow[]> {
    const { db, instanceId } = this.options;
    return (await db('nodes')
      .whereNotNull('connector')
      .whereNot({ state: 'removed' })
      .where((q) => q.where({ agent: instanceId }).orWhereRaw(`seen_at < now() - interval '${NODE_STALE_SECONDS} seconds'`))
      .orderBy('id')) as ConnectedNodeRow[];
  }

  /** One discovery round over the added nodes. */
  async refresh(): Promise<void> {
    const { db, instanceId, logger, ownNodes } = this.options;
    const changed: string[] = [];
    for (const row of await this.followed()) {
      if (row.agent !== instanceId) {
        // Take the node over from a silent core, unless another core just did.
        const taken = await db('nodes').where({ id: row.id, agent: row.agent }).whereRaw(`seen_at < now() - interval '${NODE_STALE_SECONDS} seconds'`).update({ agent: instanceId });
        if (taken === 0) continue;
        logger.info({ node: row.id, from: row.agent }, 'following a node whose core fell silent');
      }
      ownNodes.add(row.id);
      const connector = this.connector(row.connector);
      let problem: string | undefined;
      if (!connector) {
        problem = `no enabled plugin connects ${row.connector} nodes (enable the one that provides it, e.g. executor-docker)`;
      } else {
        try {
          const reached = await this.reach(connector, this.connectionOf(row), row.simulated_gpus);
          await syncNodes(db, instanceId, `connector:${row.connector}`, [{ id: row.id, ...reached, name: row.name }]);
          await db('nodes').where({ id: row.id }).update({ state_reason: null });
        } catch (error) {
          problem = (error as Error).message;
        }
      }
      if (problem !== undefined) {
        logger.warn({ node: row.id, err: problem }, 'an added node is not ready');
        // A cordoned node stays cordoned; the reason tells why it would not be ready either.
        await db('nodes')
          .where({ id: row.id })
          .update({ state: db.raw("case when state = 'cordoned' then 'cordoned' else 'not-ready' end"), state_reason: problem, seen_at: db.fn.now() });
      }
      const now = (await db('nodes').where({ id: row.id }).first('state', 'state_reason')) as { state: string; state_reason: string | null } | undefined;
      if (now && (now.state !== row.state || now.state_reason !== row.state_reason)) changed.push(row.id);
    }
    if (changed.length > 0) await this.options.onChanged?.(changed);
  }

  /** Live state of the added nodes' cards this core follows: through the connector, or the capture for simulated ones. */
  async sample(): Promise<NodeSample[]> {
    const { db, instanceId } = this.options;
    const rows = (await db('nodes').whereNotNull('connector').where({ agent: instanceId }).whereIn('state', ['ready', 'cordoned'])) as ConnectedNodeRow[];
    const out: NodeSample[] = [];
    for (const row of rows) {
      const connector = this.connector(row.connector);
      try {
        const real = connector?.sample ? await connector.sample(this.connectionOf(row)) : [];
        const simulated = row.simulated_gpus ? ((await this.simulatedOf(row.simulated_gpus).sample!())[0]?.devices ?? []) : [];
        out.push({ nodeId: row.id, devices: [...real, ...simulated.map((d, i) => ({ ...d, index: real.length + i }))] });
      } catch (error) {
        this.options.logger.warn({ node: row.id, err: (error as Error).message }, 'cannot sample an added node');
      }
    }
    return out;
  }

  /** `DELETE /api/v1/nodes/:id` of an added node: the connector forgets it. */
  async disconnect(kind: string, nodeId: string): Promise<void> {
    this.options.ownNodes.delete(nodeId);
    await Promise.resolve(this.connector(kind)?.disconnect?.(nodeId)).catch((error: Error) => this.options.logger.warn({ node: nodeId, err: error.message }, 'a connector failed to forget a node'));
  }
}
