/**
 * What the datasets pages share: the API client (its `fetch` and `download` carry the bearer token
 * the file, preview image and archive routes need), formatting and errors in the shell's language.
 */
import { useI18n } from 'vue-i18n';
import { createApiClient, isApiError, session, useErrorMessage, useFormat, usePluginApi, withBase } from '@aiplat/plugin-sdk/web';

export const PLUGIN = 'datasets';
export const API_PREFIX = `/api/plugins/${PLUGIN}`;

export function useDatasetsApi() {
  return usePluginApi(PLUGIN);
}

export const enc = encodeURIComponent;

/** The client for a path the server handed over whole (`/api/plugins/datasets/…`, as a preview's `contentUrl`). */
export const serverApi = createApiClient();

/** An absolute path under the base path for one of our routes, or a URL the server gave us. */
export function apiUrl(pathOrUrl: string): string {
  if (/^https?:\/\//.test(pathOrUrl)) return pathOrUrl;
  if (pathOrUrl.startsWith('/api/')) return withBase(pathOrUrl);
  return withBase(`${API_PREFIX}${pathOrUrl.startsWith('/') ? pathOrUrl : `/${pathOrUrl}`}`);
}

/** Numbers, sizes and dates as the shell shows them (the SDK's useFormat), plus the datasets' own words. */
export function useDatasetFormat() {
  const { t } = useI18n();
  return {
    ...useFormat(),
    taskType: (type: string) => t(`datasets.taskTypes.${type}`),
    retention: (keep: number | null) => (keep === null ? t('datasets.retention.all') : t('datasets.retention.newest', { n: keep }, keep)),
  };
}

/** `useErrorMessage` plus the server's own words for the errors whose message says what was wrong (a bad path, a checksum mismatch). */
export function useShownError() {
  const errorMessage = useErrorMessage();
  return (error: unknown): string => {
    const shown = errorMessage(error);
    if (isApiError(error) && error.message && !shown.includes(error.message)) return `${shown} ${error.message}`;
    return shown;
  };
}

/** The team's name, for the teams the signed-in user belongs to (else its id). */
export function teamName(id: string): string {
  return session.state.user?.teams.find((team) => team.id === id)?.name ?? id;
}
