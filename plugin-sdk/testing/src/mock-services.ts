import { EventHub, KernelHooks, MemoryTransport } from '@aiplat/core';
import type { EventBus, Logger, PlatformInfo, PluginContext, PluginManifest, ServiceRef } from '@aiplat/plugin-sdk';
import { PLUGIN_API_VERSION } from '@aiplat/plugin-sdk';

export interface MockLogger extends Logger {
  entries: { level: string; obj: unknown; msg?: string }[];
}

function mockLogger(entries: MockLogger['entries'] = [], bindings: Record<string, unknown> = {}): MockLogger {
  const at = (level: string) => (obj: object | string, msg?: string) =>
    void entries.push({ level, obj: typeof obj === 'string' ? { ...bindings } : { ...bindings, ...obj }, msg: typeof obj === 'string' ? obj : msg });
  return {
    entries,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => mockLogger(entries, { ...bindings, ...more }),
  };
}

/**
 * Test doubles of the core services for unit tests that do not need a running core.
 * `hooks()` is the real hook registry (every owner active unless told otherwise).
 */
export const mockServices = {
  logger: (): MockLogger => mockLogger(),
  hooks: (isActive: (owner: string) => boolean = () => true): KernelHooks => new KernelHooks(isActive),
  /**
   * The real in-process event bus, as plugin `pluginId` gets it (it publishes only to its own
   * topics). Pass the same `hub` to several calls to let them see each other's events.
   */
  events: (pluginId: string, hub: EventHub = new EventHub(new MemoryTransport(), mockLogger())): EventBus => hub.bus(pluginId),
  platform: (overrides: Partial<PlatformInfo> = {}): PlatformInfo => ({
    version: '0.0.0-test',
    pluginApi: PLUGIN_API_VERSION,
    database: 'embedded',
    dataDir: '/tmp/aiplat-mock',
    ...overrides,
  }),
  /** A plugin context for calling a plugin's start/stop or route logic directly. */
  pluginContext<TConfig = Record<string, unknown>>(options: {
    manifest: PluginManifest;
    config?: TConfig;
    services?: [ServiceRef<unknown>, unknown][];
    hooks?: KernelHooks;
  }): PluginContext<TConfig> & { logger: MockLogger } {
    const services = new Map((options.services ?? []).map(([ref, value]) => [ref.id, value]));
    return {
      id: options.manifest.id,
      manifest: options.manifest,
      logger: mockLogger(),
      config: (options.config ?? {}) as TConfig,
      get db(): never {
        throw new Error('mockServices.pluginContext has no database: use startTestCore for tests that need one');
      },
      hooks: options.hooks ?? new KernelHooks(() => true),
      platform: mockServices.platform(),
      service: <T>(ref: ServiceRef<T>): T => {
        if (!services.has(ref.id)) throw new Error(`mock service "${ref.id}" was not given to mockServices.pluginContext`);
        return services.get(ref.id) as T;
      },
    };
  },
};
