import type { PermissionDeclaration, Principal } from '@aiplat/plugin-sdk';

/** The core's own permissions. Plugins add theirs in their manifests. */
export const corePermissions: PermissionDeclaration[] = [
  { id: 'self:read', title: { en: 'See your own account', 'zh-CN': '查看自己的账户' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'plugins:read', title: { en: 'See installed plugins', 'zh-CN': '查看已安装插件' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'plugins:manage', title: { en: 'Enable, disable and configure plugins', 'zh-CN': '启用、停用和配置插件' }, defaultRoles: [] },
  { id: 'audit:read', title: { en: 'Read the audit log', 'zh-CN': '查看审计日志' }, defaultRoles: [] },
  { id: 'operations:read', title: { en: 'See your own operations', 'zh-CN': '查看自己的操作' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'operations:cancel', title: { en: 'Cancel your own operations', 'zh-CN': '取消自己的操作' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'operations:manage', title: { en: "See and cancel every user's operations", 'zh-CN': '查看和取消所有用户的操作' }, defaultRoles: [] },
];

/**
 * Role → permissions from the declarations' default roles. `admin` holds every permission.
 * The identity issue replaces this with stored roles; the check stays a pure function.
 */
export class PermissionIndex {
  private byRole = new Map<string, Set<string>>();

  rebuild(declarations: PermissionDeclaration[]): void {
    const byRole = new Map<string, Set<string>>();
    for (const permission of declarations) {
      for (const role of permission.defaultRoles ?? []) {
        if (!byRole.has(role)) byRole.set(role, new Set());
        byRole.get(role)!.add(permission.id);
      }
    }
    this.byRole = byRole;
    this.all = new Set(declarations.map((d) => d.id));
  }

  private all = new Set<string>();

  /** Every permission the principal holds (admins: every declared one), sorted. */
  permissionsOf(principal: Principal): string[] {
    if (principal.roles.includes('admin')) return [...this.all].sort();
    const out = new Set<string>();
    for (const role of principal.roles) for (const permission of this.byRole.get(role) ?? []) out.add(permission);
    return [...out].sort();
  }

  can = (principal: Principal, permission: string): boolean => {
    if (principal.roles.includes('admin')) return true;
    return principal.roles.some((role) => this.byRole.get(role)?.has(permission) ?? false);
  };
}
