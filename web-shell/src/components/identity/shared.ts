/**
 * What the identity pages (users, roles, teams, API tokens, audit log) share: the API's shapes,
 * the role and permission catalogs, date formatting, and server errors in the shell's language.
 */
import { computed, ref, type Directive, type Ref } from 'vue';
import type { FormInstance } from 'element-plus';
import { useI18n } from 'vue-i18n';
import { coreApi, isApiError, session, useErrorMessage, useFormat, useLocale, type LocalizedText, type Page } from '@aiplat/plugin-sdk/web';

// ---- API shapes (core/src/auth/identity-routes.ts) ------------------------------------------

export interface TeamBinding {
  id: string;
  name?: string;
  roles: string[];
}

export interface User {
  id: string;
  username: string;
  displayName: string | null;
  email: string | null;
  /** Global role ids. */
  roles: string[];
  teams: TeamBinding[];
  defaultTeam: string | null;
  source: string;
  disabled: boolean;
  deleted: boolean;
  createdAt: string | null;
  lastLoginAt: string | null;
}

export interface Role {
  id: string;
  name: string;
  description: string | null;
  builtin: boolean;
  permissions: string[];
  allPermissions: boolean;
  users?: number;
}

export interface PermissionInfo {
  id: string;
  title: LocalizedText;
  defaultRoles: string[];
  /** `core` or the id of the plugin that declares it. */
  owner: string;
}

export interface Team {
  id: string;
  name: string;
  description: string | null;
  members: number;
  createdAt?: string | null;
}

export interface TeamMember {
  id: string;
  username: string;
  displayName: string | null;
  disabled: boolean;
  roles: string[];
}

export interface TeamDetails {
  id: string;
  name: string;
  description: string | null;
  createdAt: string | null;
  members: TeamMember[];
}

export interface ApiToken {
  id: string;
  name: string;
  permissions: string[];
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  createdAt: string;
}

/** The built-in role ids, in the order the console shows them. */
export const BUILTIN_ROLE_IDS = ['admin', 'operator', 'viewer'];

/** The password policy's length the hint names (the server's default; it checks the configured one). */
export const PASSWORD_MIN_LENGTH = 12;

// ---- catalogs --------------------------------------------------------------------------------

/** The roles (`GET /roles`), with a lookup from id to role; `load()` again after a change. */
export function useRoles() {
  const roles = ref<Role[]>([]);
  const loading = ref(false);
  const error = ref<unknown>(null);
  const byId = computed(() => new Map(roles.value.map((r) => [r.id, r])));
  async function load(): Promise<void> {
    loading.value = true;
    try {
      roles.value = (await coreApi.get<Page<Role>>('/roles')).items;
      error.value = null;
    } catch (e) {
      error.value = e;
    } finally {
      loading.value = false;
    }
  }
  /** A role's display name (its id while the catalog loads, or for a role since deleted). */
  const nameOf = (id: string) => byId.value.get(id)?.name ?? id;
  return { roles, byId, loading, error, load, nameOf };
}

/** A role's description in the shell's language (the built-in roles' are translated here). */
export function useRoleDescription(): (role: Role) => string {
  const { t, te } = useI18n();
  return (role) => (role.builtin && te(`identity.roles.builtinDescriptions.${role.id}`) ? t(`identity.roles.builtinDescriptions.${role.id}`) : (role.description ?? ''));
}

/** Every team (`GET /teams`, all pages): for pickers. */
export async function loadAllTeams(): Promise<Team[]> {
  const out: Team[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i++) {
    const page = await coreApi.get<Page<Team>>('/teams', { limit: 200, cursor });
    out.push(...page.items);
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  return out;
}

export interface PermissionGroup {
  owner: string;
  /** "Core" or the plugin's display name. */
  title: string;
  items: PermissionInfo[];
}

/**
 * The permission catalog (`GET /permissions`) grouped by owner: the core first, then each plugin
 * by name. Plugin names come from `GET /plugins` when the user may read it, else their ids.
 */
export function usePermissionCatalog() {
  const { t } = useI18n();
  const locale = useLocale();
  const items = ref<PermissionInfo[]>([]);
  const pluginNames = ref(new Map<string, LocalizedText | undefined>());
  const loading = ref(false);
  const error = ref<unknown>(null);

  async function load(): Promise<void> {
    loading.value = true;
    try {
      const [perms, plugins] = await Promise.all([
        coreApi.get<Page<PermissionInfo>>('/permissions'),
        session.can('plugins:read') ? coreApi.get<Page<{ id: string; displayName?: LocalizedText }>>('/plugins').catch(() => null) : Promise.resolve(null),
      ]);
      items.value = perms.items;
      if (plugins) pluginNames.value = new Map(plugins.items.map((p) => [p.id, p.displayName]));
      error.value = null;
    } catch (e) {
      error.value = e;
    } finally {
      loading.value = false;
    }
  }

  const titleOf = (p: PermissionInfo) => p.title[locale.value] ?? p.title.en ?? p.id;
  const ownerTitle = (owner: string) => {
    if (owner === 'core') return t('identity.common.core');
    const name = pluginNames.value.get(owner);
    return name ? (name[locale.value] ?? name.en) : owner;
  };
  const byId = computed(() => new Map(items.value.map((p) => [p.id, p])));

  /** Group some permissions (default: all) by owner: core first, then plugins by title. */
  function group(only?: Iterable<string>): PermissionGroup[] {
    const wanted = only ? new Set(only) : null;
    const groups = new Map<string, PermissionGroup>();
    const known = new Set<string>();
    for (const p of items.value) {
      known.add(p.id);
      if (wanted && !wanted.has(p.id)) continue;
      if (!groups.has(p.owner)) groups.set(p.owner, { owner: p.owner, title: ownerTitle(p.owner), items: [] });
      groups.get(p.owner)!.items.push(p);
    }
    // Permissions the catalog does not list (it could not be read): shown by id.
    if (wanted) {
      for (const id of wanted) {
        if (known.has(id)) continue;
        const owner = 'other';
        if (!groups.has(owner)) groups.set(owner, { owner, title: t('identity.common.otherPermissions'), items: [] });
        groups.get(owner)!.items.push({ id, title: { en: id, 'zh-CN': id }, defaultRoles: [], owner });
      }
    }
    for (const g of groups.values()) g.items.sort((a, b) => a.id.localeCompare(b.id));
    const rank = (o: string) => (o === 'core' ? 0 : o === 'other' ? 2 : 1);
    return [...groups.values()].sort((a, b) => rank(a.owner) - rank(b.owner) || a.title.localeCompare(b.title, locale.value));
  }

  return { items, byId, loading, error, load, titleOf, ownerTitle, group };
}

// ---- formatting ------------------------------------------------------------------------------

/** Dates and times in the shell's language (the SDK's formatting; an empty string for no date). */
export function useDateFormat() {
  const format = useFormat();
  const or = (show: (iso: string) => string) => (iso: string | null | undefined) => (iso ? show(iso) : '');
  return {
    format: or(format.dateTime),
    formatDate: or(format.date),
    /** "3 days ago", "in 2 months". */
    fromNow: or(format.relative),
  };
}

// ---- errors ----------------------------------------------------------------------------------

/**
 * Server errors of the identity API in the shell's language: the ones a person meets on these
 * pages (the last administrator, the password policy, a name in use, a role still held…) get a
 * sentence of their own; anything else is translated by code as everywhere in the shell.
 */
export function useIdentityError(): (error: unknown) => string {
  const { t } = useI18n();
  const generic = useErrorMessage();
  return (error) => {
    if (!isApiError(error)) return generic(error);
    const message = error.message;
    const details = (error.details ?? {}) as Record<string, unknown>;
    if (error.code === 'conflict') {
      if (/last active administrator/i.test(message)) return t('identity.errors.lastAdmin');
      if (/cannot delete your own account/i.test(message)) return t('identity.errors.deleteSelf');
      if (/single sign-on/i.test(message)) return t('identity.errors.ssoNoPassword');
      if (/default team cannot be deleted/i.test(message)) return t('identity.errors.defaultTeam');
      if (/built-in role/i.test(message)) return t('identity.errors.builtinRole');
      if (/still use the role/i.test(message)) return t('identity.errors.roleInUse', { count: Number(details.bindings ?? 0) || 1 });
      if (/^A user named/.test(message)) return t('identity.errors.usernameTaken');
      if (/^A role named/.test(message)) return t('identity.errors.roleNameTaken');
      if (/^A team named/.test(message)) return t('identity.errors.teamNameTaken');
    }
    if (error.code === 'validation_failed') {
      if (/current password is wrong/i.test(message)) return t('identity.errors.currentPasswordWrong');
      if (/^The password must have/.test(message)) {
        const rules: string[] = [];
        const length = /at least (\d+) characters/.exec(message);
        if (length) rules.push(t('identity.password.ruleLength', { n: Number(length[1]) }));
        if (/not the username/.test(message)) rules.push(t('identity.password.ruleNotUsername'));
        if (/not one character repeated/.test(message)) rules.push(t('identity.password.ruleNotRepeated'));
        return t('identity.errors.passwordPolicy', { rules: rules.join(t('identity.common.listSeparator')) });
      }
      if (details.field === 'email') return t('identity.errors.emailInvalid');
    }
    if (error.code === 'forbidden' && /token can only carry/i.test(message)) return t('identity.errors.tokenScopes');
    return generic(error);
  };
}

/** The rules of the local password policy, shown under password fields. */
export function usePasswordHint(): Ref<string> {
  const { t } = useI18n();
  return computed(() => t('identity.password.hint', { n: PASSWORD_MIN_LENGTH }));
}

/** A strong random password for the "generate" buttons: 20 characters without look-alikes. */
export function generatePassword(length = 20): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.@';
  const bytes = new Uint32Array(length);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}

/** `v-row-test="'user-row-ada'"`: a `data-test` on the table row (<tr>) the cell is in. */
export const vRowTest: Directive<HTMLElement, string> = {
  mounted: (el, { value }) => (el.closest('tr') ?? el).setAttribute('data-test', value),
  updated: (el, { value }) => (el.closest('tr') ?? el).setAttribute('data-test', value),
};

/** A deleted user's username carries a `~deleted~<random>` suffix: show the name it had. */
export const displayUsername = (username: string) => username.replace(/~deleted~[0-9a-f]+$/, '');

/**
 * The submit of a dialog's form: validate, show progress, run the action, close the dialog when it
 * succeeds, or show why it failed (translated by error code) above the form. One submit at a time.
 */
export function useFormSubmit(formRef: Ref<FormInstance | undefined>, open: Ref<boolean>) {
  const identityError = useIdentityError();
  const busy = ref(false);
  const error = ref<string>();
  async function run(action: () => Promise<unknown>): Promise<void> {
    if (busy.value) return;
    if (!(await formRef.value?.validate().catch(() => false))) return;
    busy.value = true;
    error.value = undefined;
    try {
      await action();
      open.value = false;
    } catch (e) {
      error.value = identityError(e);
    } finally {
      busy.value = false;
    }
  }
  return { busy, error, run };
}
