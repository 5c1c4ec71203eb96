import { computed, onScopeDispose, unref, watch, type ComputedRef, type MaybeRef } from 'vue';
import { useI18n } from 'vue-i18n';
import type { LocalizedText } from '../src/manifest.ts';
import { coreApi, pluginApi, type ApiClient } from './api.ts';
import { ApiError } from './errors.ts';
import type { Locale } from './messages.ts';
import { session, type SessionUser } from './session.ts';
import { stream, type StreamEvent, type SubscribeOptions } from './stream.ts';

/** The core's API client (`/api/v1`), with the session's token and refresh. */
export function useApi(): ApiClient {
  return coreApi;
}

/** A plugin's API client (`/api/plugins/<id>`). */
export function usePluginApi(pluginId: string): ApiClient {
  return pluginApi(pluginId);
}

/** The signed-in user (null while signed out), reactive. */
export function useCurrentUser(): ComputedRef<SessionUser | null> {
  return computed(() => (session.state.user as SessionUser | null) ?? null);
}

/** Whether the signed-in user holds the permission; reactive. */
export function usePermission(permission: MaybeRef<string>): ComputedRef<boolean> {
  return computed(() => {
    void session.state.user;
    return session.can(unref(permission));
  });
}

/** The shell's language, reactive (`en` or `zh-CN`). */
export function useLocale(): ComputedRef<Locale> {
  const { locale } = useI18n({ useScope: 'global' });
  return computed(() => locale.value as Locale);
}

/** Pick the current language's text of a manifest's `{ en, "zh-CN" }`. */
export function useLocalized(): (text: LocalizedText | string | undefined) => string {
  const locale = useLocale();
  return (text) => (text === undefined ? '' : typeof text === 'string' ? text : (text[locale.value] ?? text.en));
}

/**
 * A person-readable message for an error in the shell's language: known error codes are translated
 * (the catalog's `errors.<code>`), with the server's own message added for validation errors, whose
 * details matter; anything else shows its message.
 */
export function useErrorMessage(): (error: unknown) => string {
  const { t, te } = useI18n({ useScope: 'global' });
  return (error) => {
    if (error instanceof ApiError) {
      const key = `errors.${error.code}`;
      if (!te(key)) return error.message;
      const translated = t(key);
      return error.code === 'validation_failed' || error.code === 'bad_request' || error.code === 'plugin_failed' || error.code === 'conflict'
        ? `${translated} ${error.message}`
        : translated;
    }
    return error instanceof Error ? error.message : String(error);
  };
}

/**
 * Receive a stream topic's events while the calling component (or effect scope) lives. The topic
 * may be reactive: the subscription follows it. Reconnects replay what was missed.
 */
export function useStream<T = unknown>(
  topic: MaybeRef<string | null | undefined>,
  handler: (event: StreamEvent<T>) => void,
  options: SubscribeOptions = {},
): void {
  let stop: (() => void) | undefined;
  watch(
    () => unref(topic),
    (name) => {
      stop?.();
      stop = name ? stream.subscribe<T>(name, handler, options) : undefined;
    },
    { immediate: true },
  );
  onScopeDispose(() => stop?.());
}
