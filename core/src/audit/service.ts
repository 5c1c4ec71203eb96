import type { Knex } from 'knex';
import type { AuditLog, Logger, RouteDefinition } from '@aiplat/plugin-sdk';
import type { PluginStatus } from '../kernel/kernel.js';
import { SYSTEM_ACTOR, type AuditEntry, type AuditWriter } from './audit.js';
import { AuditHeadExporter } from './head.js';
import { auditRoutes } from './routes.js';

export interface AuditServiceOptions {
  db: () => Knex;
  writer: AuditWriter;
  logger: Logger;
  /** AIPLAT_AUDIT_HEAD_FILE: where the chain head is exported outside the database. */
  headFile?: string;
  /** AIPLAT_AUDIT_HEAD_INTERVAL: seconds between head exports. */
  headInterval?: number;
}

/**
 * The audit log's pieces the core wires together (core.ts): the API routes, the plugins'
 * `core.audit` service, the rows of plugin lifecycle changes, the head file export.
 */
export class AuditService {
  private lifecycle: Promise<void> = Promise.resolve();
  private stopping = false;
  private readonly head: AuditHeadExporter | undefined;

  constructor(private readonly options: AuditServiceOptions) {
    if (options.writer.disabledForBench) {
      options.logger.warn('AIPLAT_AUDIT_DISABLED_FOR_BENCH=1: the audit log is OFF. This switch exists for `npm run bench:http` only; never set it anywhere else');
    }
    this.head = options.headFile
      ? new AuditHeadExporter({ db: options.db, file: options.headFile, intervalSeconds: options.headInterval ?? 60, logger: options.logger })
      : undefined;
  }

  routes(): RouteDefinition[] {
    return auditRoutes({ headFile: this.options.headFile });
  }

  /** `coreServices.audit` as plugin `pluginId` gets it: rows with the plugin as actor, actions `<plugin>:<name>`. */
  forPlugin(pluginId: string): AuditLog {
    const { writer, db } = this.options;
    return {
      record: async (action, details, options) => {
        await writer.write(options?.db ?? db(), {
          action: action.startsWith(`${pluginId}:`) ? action : `${pluginId}:${action}`,
          actor: { type: 'plugin', id: pluginId, name: pluginId },
          plugin: pluginId,
          outcome: options?.outcome,
          resource: options?.resource,
          team: options?.team,
          details: details ?? {},
        });
      },
    };
  }

  private entry(status: PluginStatus): AuditEntry {
    return {
      action: `core:plugin.${status.state}`,
      actor: SYSTEM_ACTOR,
      outcome: status.state === 'failed' ? 'failure' : 'success',
      resource: { type: 'plugin', id: status.id },
      details: { version: status.version, ...(status.reason ? { reason: status.reason } : {}) },
    };
  }

  /**
   * A plugin changed state after boot (enabled, disabled, failed, restarted with new settings):
   * a `core:plugin.<state>` row by the system. The administrator's request that caused it has its
   * own row (`core:POST /plugins/:id/enable`, …). The kernel tells synchronously; the rows are
   * written in order, each in its own transaction, and `stop()` waits for them. Stops at shutdown
   * are not recorded.
   */
  pluginStateChanged(status: PluginStatus): void {
    if (this.stopping) return;
    const entry = this.entry(status);
    this.lifecycle = this.lifecycle
      .then(() => this.options.writer.write(this.options.db(), entry))
      .then(
        () => undefined,
        (error: Error) => this.options.logger.error({ err: error, plugin: status.id }, 'cannot audit a plugin state change'),
      );
  }

  /** Plugins that failed at boot (bad manifest, missing dependency, a throw in start): a `core:plugin.failed` row each. */
  async bootFailures(statuses: PluginStatus[]): Promise<void> {
    for (const status of statuses) {
      if (status.state === 'failed') await this.options.writer.write(this.options.db(), this.entry(status));
    }
  }

  /** Written lifecycle rows so far (tests). */
  settled(): Promise<void> {
    return this.lifecycle;
  }

  /** Start exporting the chain head (when AIPLAT_AUDIT_HEAD_FILE is set). */
  async start(): Promise<void> {
    await this.head?.start();
  }

  /** At shutdown, before the plugins stop: their stops are not recorded. */
  beginShutdown(): void {
    this.stopping = true;
  }

  /** Wait for lifecycle rows, export the final head. Call before the database closes. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.lifecycle;
    await this.head?.stop();
  }
}
