/**
 * The compute pages (workloads, a workload, the GPU pool, nodes, quotas and queue), children of the
 * console layout. Each is its own lazily loaded chunk with its strings (`locales/workloads.ts`), so
 * they cost the dashboard's first load nothing; without the read permission a page says so instead
 * of loading (and failing on) its data.
 */
import { defineAsyncComponent, defineComponent, h, type Component } from 'vue';
import type { RouteRecordRaw } from 'vue-router';
import { session } from '@aiplat/plugin-sdk/web';

// Shown only to someone without the permission: loaded then, not with the dashboard.
const ForbiddenResult = defineAsyncComponent(() => import('../../components/identity/ForbiddenResult.vue'));

function gated(permission: string, loader: () => Promise<{ default: Component }>): Component {
  const Inner = defineAsyncComponent(loader);
  return defineComponent({
    name: 'WorkloadsPermissionGate',
    inheritAttrs: false,
    setup(_props, { attrs }) {
      return () => (session.can(permission) ? h(Inner, attrs) : h(ForbiddenResult, { permission }));
    },
  });
}

export const workloadRoutes: RouteRecordRaw[] = [
  {
    path: 'workloads',
    name: 'workloads',
    component: gated('workloads:read', () => import('./WorkloadsView.vue')),
    meta: { messages: ['workloads'], titleKey: 'nav.workloads', permission: 'workloads:read' },
  },
  {
    path: 'workloads/:id',
    name: 'workload-details',
    component: gated('workloads:read', () => import('./WorkloadDetailView.vue')),
    props: true,
    meta: { messages: ['workloads'], titleKey: 'nav.workloads', permission: 'workloads:read' },
  },
  {
    path: 'gpus',
    name: 'gpus',
    component: gated('nodes:read', () => import('./GpusView.vue')),
    meta: { messages: ['workloads'], titleKey: 'nav.gpus', permission: 'nodes:read' },
  },
  {
    path: 'nodes',
    name: 'nodes',
    component: gated('nodes:read', () => import('./NodesView.vue')),
    meta: { messages: ['workloads', 'nodes'], titleKey: 'nav.nodes', permission: 'nodes:read' },
  },
  {
    path: 'quotas',
    name: 'quotas',
    component: gated('workloads:read', () => import('./QuotasView.vue')),
    meta: { messages: ['workloads'], titleKey: 'nav.quotas', permission: 'workloads:read' },
  },
];
