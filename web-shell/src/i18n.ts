import { createI18n } from 'vue-i18n';
import { sdkMessages, setErrorMessagesLoader, SUPPORTED_LOCALES, type Locale } from '@aiplat/plugin-sdk/web';
import shell from './locales/shell.ts';

/**
 * The shell's message files, each `{ en, "zh-CN" }` with the same keys (a test checks it). `shell`
 * (layout, sign-in, dashboard, navigation) is in every first load; the others are loaded with the
 * pages that use them (a route's `meta.messages`), so their strings cost the dashboard nothing.
 */
export const messageFiles = { shell };

const lazyMessageFiles = {
  plugins: () => import('./locales/plugins.ts'),
  operations: () => import('./locales/operations.ts'),
  identity: () => import('./locales/identity.ts'),
  workloads: () => import('./locales/workloads.ts'),
  nodes: () => import('./locales/nodes.ts'),
  marketplace: () => import('./locales/marketplace.ts'),
  // The error catalog by code: loaded before the first error is shown (setErrorMessagesLoader below).
  errors: () => import('@aiplat/plugin-sdk/web/error-messages').then((m) => ({ default: m.sdkErrorMessages as unknown as Record<Locale, Tree> })),
} satisfies Record<string, () => Promise<{ default: Record<Locale, Tree> }>>;

export type MessageFile = keyof typeof lazyMessageFiles;
const loadedFiles = new Map<MessageFile, Promise<void>>();

type Tree = Record<string, unknown>;

function merge(target: Tree, source: Tree): Tree {
  for (const [key, value] of Object.entries(source)) {
    target[key] = value && typeof value === 'object' && !Array.isArray(value) ? merge((target[key] as Tree | undefined) ?? {}, value as Tree) : value;
  }
  return target;
}

export function allMessages(): Record<Locale, Tree> {
  const out = { en: {}, 'zh-CN': {} } as Record<Locale, Tree>;
  for (const locale of SUPPORTED_LOCALES) {
    merge(out[locale], sdkMessages[locale] as unknown as Tree);
    for (const file of Object.values(messageFiles)) merge(out[locale], (file as Record<Locale, Tree>)[locale]);
  }
  return out;
}

const STORAGE_KEY = 'aiplat.locale';

/** The language to start in: the one chosen before, else the browser's (Chinese → zh-CN), else en. */
export function initialLocale(): Locale {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved === 'en' || saved === 'zh-CN') return saved;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

export function saveLocale(locale: Locale): void {
  localStorage.setItem(STORAGE_KEY, locale);
  document.documentElement.lang = locale;
}

export const i18n = createI18n({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: 'en',
  messages: allMessages() as Record<string, any>,
  missingWarn: false,
  fallbackWarn: false,
});

/** Load message files (once) and merge them into every language. */
export function loadMessages(...names: MessageFile[]): Promise<void> {
  return Promise.all(
    names.map((name) => {
      let loading = loadedFiles.get(name);
      if (!loading) {
        loading = lazyMessageFiles[name]().then(({ default: file }) => {
          for (const locale of SUPPORTED_LOCALES) i18n.global.mergeLocaleMessage(locale, file[locale] as Record<string, any>);
        });
        loading.catch(() => loadedFiles.delete(name));
        loadedFiles.set(name, loading);
      }
      return loading;
    }),
  ).then(() => undefined);
}

// The API client and the session wait for the error translations before handing out an error.
setErrorMessagesLoader(() => loadMessages('errors'));
