import { Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricSample, MetricsRegistry } from '@aiplat/plugin-sdk';

/** Upper bounds (seconds) of the request latency histogram's buckets. */
const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One method, route template and status: its latency histogram (counts per bucket, not yet cumulative) and sum. */
interface Series {
  labels: { method: string; route: string; status: string };
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * Prometheus metrics of the core: request counts and latency by route, plus process defaults.
 * The two request series are counted here in plain arrays and rendered at each scrape: prom-client's
 * own histogram and counter check and hash their labels on every observation, even through a
 * labelled child, which cost every request about 1.5 µs (docs/adr/0013).
 */
export class HttpMetrics {
  readonly registry = new Registry();
  private readonly series = new Map<string, Series>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'aiplat_' });
    const registry = this.registry;
    const register = (metric: { name: string; help: string; type: 'histogram' | 'counter'; values: () => { value: number; labels: Record<string, string | number>; metricName?: string }[] }) =>
      registry.registerMetric({
        name: metric.name,
        help: metric.help,
        type: metric.type,
        aggregator: 'sum',
        get: () => ({ name: metric.name, help: metric.help, type: metric.type, aggregator: 'sum', values: metric.values() }),
      } as unknown as Parameters<Registry['registerMetric']>[0]);
    const DURATION = 'aiplat_http_request_duration_seconds';
    register({
      name: DURATION,
      help: 'HTTP request latency by route template',
      type: 'histogram',
      values: () =>
        [...this.series.values()].flatMap((s) => {
          let cumulative = 0;
          const out = BUCKETS.map((le, i) => ({ labels: { ...s.labels, le }, value: (cumulative += s.buckets[i]!), metricName: `${DURATION}_bucket` }));
          out.push({ labels: { ...s.labels, le: '+Inf' as unknown as number }, value: s.count, metricName: `${DURATION}_bucket` });
          return [...out, { labels: s.labels as never, value: s.sum, metricName: `${DURATION}_sum` }, { labels: s.labels as never, value: s.count, metricName: `${DURATION}_count` }];
        }),
    });
    register({
      name: 'aiplat_http_requests_total',
      help: 'HTTP requests by route template and status',
      type: 'counter',
      values: () => [...this.series.values()].map((s) => ({ labels: s.labels, value: s.count })),
    });
  }

  observe(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let s = this.series.get(key);
    if (!s) {
      s = { labels: { method, route, status: String(status) }, buckets: new Float64Array(BUCKETS.length), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    s.count++;
    s.sum += seconds;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (seconds <= BUCKETS[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
  }
}

/**
 * `coreServices.metrics` for one plugin: metrics whose samples the plugin gives at each scrape,
 * registered in the core's registry under `aiplat_<plugin>_…`, removed when the plugin stops.
 */
export function pluginMetrics(registry: Registry, pluginId: string, owned: Map<string, Set<string>>): MetricsRegistry {
  const prefix = `aiplat_${pluginId.replace(/-/g, '_')}_`;
  return {
    collect(metric) {
      if (!metric.name.startsWith(prefix) || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(metric.name)) {
        throw new Error(`metric name "${metric.name}" must start with ${prefix} and use letters, digits and _`);
      }
      registry.removeSingleMetric(metric.name);
      // prom-client renders any object with a name, help, type and get(); samples come from the plugin at each scrape.
      registry.registerMetric({
        name: metric.name,
        help: metric.help,
        type: metric.type,
        aggregator: 'sum',
        get: () => {
          let samples: MetricSample[];
          try {
            samples = metric.samples();
          } catch {
            samples = [];
          }
          return {
            name: metric.name,
            help: metric.help,
            type: metric.type,
            aggregator: 'sum',
            values: samples.map((s) => ({ value: s.value, labels: s.labels ?? {}, ...(s.suffix ? { metricName: metric.name + s.suffix } : {}) })),
          };
        },
      } as unknown as Parameters<Registry['registerMetric']>[0]);
      let names = owned.get(pluginId);
      if (!names) owned.set(pluginId, (names = new Set()));
      names.add(metric.name);
    },
  };
}

/** Take a stopped plugin's metrics out of the registry. */
export function dropPluginMetrics(registry: Registry, pluginId: string, owned: Map<string, Set<string>>): void {
  for (const name of owned.get(pluginId) ?? []) registry.removeSingleMetric(name);
  owned.delete(pluginId);
}
