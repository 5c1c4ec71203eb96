/**
 * The shell's routes: its own pages, and one route per `page` contribution of an enabled plugin,
 * added and removed at run time as plugins are enabled and disabled.
 */
import { createRouter, createWebHistory, type RouteRecordRaw, type Router } from 'vue-router';
import { bootInfo, session } from '@aiplat/plugin-sdk/web';
import { useUi } from './stores/ui.ts';
import { loadMessages, type MessageFile } from './i18n.ts';
import ConsoleLayout from './layouts/ConsoleLayout.vue';
import DashboardView from './views/DashboardView.vue';
import { identityRoutes } from './views/identity/routes.ts';
import { workloadRoutes } from './views/workloads/routes.ts';

declare module 'vue-router' {
  interface RouteMeta {
    /** i18n key of the page title (core pages). */
    titleKey?: string;
    /** Permission needed to open the page. */
    permission?: string;
    /** Public pages (sign-in) need no session. */
    public?: boolean;
    /** Message files the page needs, loaded before it shows. */
    messages?: MessageFile[];
  }
}

const coreRoutes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true } },
  // Single sign-on lands here with a one-time code (core/src/auth/oidc.ts).
  { path: '/login/sso', name: 'login-sso', component: () => import('./views/SsoCallbackView.vue'), meta: { public: true } },
  {
    path: '/',
    name: 'console',
    component: ConsoleLayout,
    children: [
      { path: '', name: 'dashboard', component: DashboardView, meta: { titleKey: 'dashboard.title' } },
      { path: 'plugins', name: 'plugins', component: () => import('./views/PluginsView.vue'), meta: { titleKey: 'nav.plugins', permission: 'plugins:read', messages: ['plugins', 'marketplace', 'errors'] } },
      {
        path: 'plugins/:id',
        name: 'plugin-details',
        component: () => import('./views/PluginDetailsView.vue'),
        props: true,
        meta: { titleKey: 'nav.plugins', permission: 'plugins:read', messages: ['plugins', 'marketplace', 'errors'] },
      },
      // The marketplace (one chunk for both pages; the README renderer apart) loads only when opened.
      { path: 'marketplace', name: 'marketplace', component: () => import('./components/marketplace/pages.ts').then((m) => m.MarketplaceView), meta: { titleKey: 'nav.marketplace', permission: 'plugins:read', messages: ['marketplace', 'errors'] } },
      {
        path: 'marketplace/:id',
        name: 'marketplace-plugin',
        component: () => import('./components/marketplace/pages.ts').then((m) => m.MarketplacePluginView),
        props: true,
        meta: { titleKey: 'nav.marketplace', permission: 'plugins:read', messages: ['marketplace', 'errors'] },
      },
      { path: 'operations', name: 'operations', component: () => import('./views/OperationsView.vue'), meta: { titleKey: 'nav.operations', permission: 'operations:read', messages: ['operations', 'errors'] } },
      ...workloadRoutes,
      ...identityRoutes,
      { path: ':pathMatch(.*)*', name: 'not-found', component: () => import('./views/NotFoundView.vue') },
    ],
  },
];

const pluginRouteNames = new Set<string>();

/** Make the router's plugin routes match the `page` contributions now enabled. */
export function syncPluginRoutes(router: Router): void {
  const ui = useUi();
  const wanted = new Map(ui.ofKind('page').filter((c) => c.route?.startsWith('/')).map((c) => [`plugin:${c.pluginId}:${c.id}`, c]));
  for (const name of [...pluginRouteNames]) {
    if (!wanted.has(name)) {
      router.removeRoute(name);
      pluginRouteNames.delete(name);
    }
  }
  for (const [name, c] of wanted) {
    if (pluginRouteNames.has(name)) continue;
    router.addRoute('console', {
      path: c.route!.slice(1),
      name,
      component: () => import('./views/PluginPageView.vue'),
      props: { pluginId: c.pluginId, contributionId: c.id },
      meta: { permission: c.permission },
    });
    pluginRouteNames.add(name);
  }
}

export function createShellRouter(): Router {
  const router = createRouter({
    history: createWebHistory(`${bootInfo().basePath}/`),
    routes: coreRoutes,
    scrollBehavior: () => ({ top: 0 }),
  });

  router.beforeEach(async (to) => {
    const messages = to.meta.messages?.length ? loadMessages(...to.meta.messages) : undefined;
    if (to.meta.public) {
      await messages;
      return true;
    }
    if (!session.signedIn) return { name: 'login', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} };
    const ui = useUi();
    // Who the user is, what the plugins contribute and the page's strings: asked for together.
    const remotes = ui.loaded ? undefined : ui.load();
    if (!session.state.user) {
      try {
        await session.loadUser();
      } catch {
        return { name: 'login', query: { redirect: to.fullPath } };
      }
    }
    await messages;
    if (remotes) {
      await remotes;
      syncPluginRoutes(router);
      ui.follow();
      // The plugin routes exist now: resolve the address again.
      if (to.name === 'not-found') return to.fullPath;
    }
    return true;
  });

  // When the contributions change (a plugin enabled or disabled), routes follow; a page whose
  // plugin went away re-resolves to "not available".
  const ui = useUi();
  ui.onChange(() => {
    const current = router.currentRoute.value;
    syncPluginRoutes(router);
    if (typeof current.name === 'string' && current.name.startsWith('plugin:') && !router.hasRoute(current.name)) {
      void router.replace(current.fullPath);
    }
  });

  session.onEnd((reason) => {
    useUi().reset();
    const current = router.currentRoute.value;
    if (!current.meta.public) void router.replace({ name: 'login', query: { ...(reason === 'expired' ? { expired: '1' } : {}), redirect: current.fullPath } });
  });

  return router;
}
