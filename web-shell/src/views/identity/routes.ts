/**
 * The identity and governance pages (users, roles, teams, audit log, my API tokens), children of
 * the console layout. Each page opens only with its read permission; without it the page says so
 * instead of loading (and failing on) its data.
 */
import { defineAsyncComponent, defineComponent, h, type Component } from 'vue';
import type { RouteRecordRaw } from 'vue-router';
import { session } from '@aiplat/plugin-sdk/web';

// Shown only to someone without the permission: loaded then, not with the dashboard.
const ForbiddenResult = defineAsyncComponent(() => import('../../components/identity/ForbiddenResult.vue'));

function gated(permission: string, loader: () => Promise<{ default: Component }>): Component {
  const Inner = defineAsyncComponent(loader);
  return defineComponent({
    name: 'PermissionGate',
    inheritAttrs: false,
    setup(_props, { attrs }) {
      return () => (session.can(permission) ? h(Inner, attrs) : h(ForbiddenResult, { permission }));
    },
  });
}

export const identityRoutes: RouteRecordRaw[] = [
  {
    path: 'admin/users',
    name: 'users',
    component: gated('users:read', () => import('./UsersView.vue')),
    meta: { messages: ['identity'], titleKey: 'identity.nav.users', permission: 'users:read' },
  },
  {
    path: 'admin/roles',
    name: 'roles',
    component: gated('roles:read', () => import('./RolesView.vue')),
    meta: { messages: ['identity'], titleKey: 'identity.nav.roles', permission: 'roles:read' },
  },
  {
    path: 'admin/teams',
    name: 'teams',
    component: gated('teams:read', () => import('./TeamsView.vue')),
    meta: { messages: ['identity'], titleKey: 'identity.nav.teams', permission: 'teams:read' },
  },
  {
    path: 'admin/teams/:id',
    name: 'team-details',
    component: gated('teams:read', () => import('./TeamDetailsView.vue')),
    props: true,
    meta: { messages: ['identity'], titleKey: 'identity.nav.teams', permission: 'teams:read' },
  },
  {
    path: 'admin/audit',
    name: 'audit',
    component: gated('audit:read', () => import('./AuditView.vue')),
    meta: { messages: ['identity'], titleKey: 'identity.nav.audit', permission: 'audit:read' },
  },
  {
    path: 'account/tokens',
    name: 'tokens',
    component: gated('tokens:write', () => import('./TokensView.vue')),
    meta: { messages: ['identity'], titleKey: 'identity.nav.tokens', permission: 'tokens:write' },
  },
];
