import type { PermissionDeclaration } from '@aiplat/plugin-sdk';

/** The core's own permissions. Plugins add theirs in their manifests. */
export const corePermissions: PermissionDeclaration[] = [
  { id: 'self:read', title: { en: 'See your own account', 'zh-CN': '查看自己的账户' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'plugins:read', title: { en: 'See installed plugins', 'zh-CN': '查看已安装插件' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'plugins:manage', title: { en: 'Enable, disable and configure plugins', 'zh-CN': '启用、停用和配置插件' }, defaultRoles: [] },
  { id: 'audit:read', title: { en: 'Read the audit log', 'zh-CN': '查看审计日志' }, defaultRoles: [] },
  { id: 'operations:read', title: { en: 'See your own operations', 'zh-CN': '查看自己的操作' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'operations:cancel', title: { en: 'Cancel your own operations', 'zh-CN': '取消自己的操作' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'operations:manage', title: { en: "See and cancel every user's operations", 'zh-CN': '查看和取消所有用户的操作' }, defaultRoles: [] },
  { id: 'users:read', title: { en: 'See users', 'zh-CN': '查看用户' }, defaultRoles: ['operator'] },
  { id: 'users:manage', title: { en: 'Create, change and delete users', 'zh-CN': '创建、修改和删除用户' }, defaultRoles: [] },
  { id: 'roles:read', title: { en: 'See roles and permissions', 'zh-CN': '查看角色和权限' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'roles:manage', title: { en: 'Create and change custom roles', 'zh-CN': '创建和修改自定义角色' }, defaultRoles: [] },
  { id: 'teams:read', title: { en: 'See your teams', 'zh-CN': '查看所在团队' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'teams:manage', title: { en: 'Create teams and manage their members', 'zh-CN': '创建团队并管理成员' }, defaultRoles: [] },
  { id: 'workloads:read', title: { en: 'See workloads, their logs and metrics, quotas and usage', 'zh-CN': '查看工作负载及其日志、指标、配额和用量' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'workloads:create', title: { en: 'Submit and retry workloads', 'zh-CN': '提交和重试工作负载' }, defaultRoles: ['operator'] },
  { id: 'workloads:cancel', title: { en: 'Cancel your own workloads', 'zh-CN': '取消自己的工作负载' }, defaultRoles: ['operator'] },
  { id: 'workloads:manage', title: { en: "Cancel and retry anyone's workloads", 'zh-CN': '取消和重试任何人的工作负载' }, defaultRoles: [] },
  { id: 'nodes:read', title: { en: 'See nodes, GPUs and reservations', 'zh-CN': '查看节点、GPU 和预留' }, defaultRoles: ['operator', 'viewer'] },
  { id: 'scheduler:manage', title: { en: 'Manage priority classes', 'zh-CN': '管理优先级类别' }, defaultRoles: [] },
  { id: 'nodes:manage', title: { en: 'Label, cordon and drain nodes', 'zh-CN': '为节点设置标签、封锁和排空' }, defaultRoles: [] },
  { id: 'quotas:manage', title: { en: "Set teams' GPU quotas", 'zh-CN': '设置团队 GPU 配额' }, defaultRoles: [] },
  { id: 'tokens:write', title: { en: 'Create and revoke your own API tokens', 'zh-CN': '创建和吊销自己的 API 令牌' }, defaultRoles: ['operator', 'viewer'] },
];
