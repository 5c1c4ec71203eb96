/**
 * The SDK's web part (`@aiplat/plugin-sdk/web`): what a plugin's UI remote builds on. The shell
 * provides it as a shared singleton, so the session, the API client and the stream connection are
 * the shell's own, and a remote never carries a copy.
 */
export { defineUiPlugin, isUiPlugin } from './define.ts';
export type { ComponentLoader, UiPlugin, UiPluginContext, UiPluginDefinition } from './define.ts';
export { bootInfo, withBase } from './boot.ts';
export type { BootInfo } from './boot.ts';
export { ApiError, isApiError } from './errors.ts';
export { coreApi, createApiClient, pluginApi } from './api.ts';
export type { ApiClient, Page, Query, RequestOptions } from './api.ts';
export { session } from './session.ts';
export type { SessionUser } from './session.ts';
export { stream } from './stream.ts';
export type { StreamEvent, StreamStatus, SubscribeOptions } from './stream.ts';
export { sdkMessages, SUPPORTED_LOCALES } from './messages.ts';
export type { Locale } from './messages.ts';
export { useApi, useCurrentUser, useErrorMessage, useLocale, useLocalized, usePermission, usePluginApi, useStream } from './composables.ts';
export { default as AipPageHeader } from './components/AipPageHeader.vue';
export { default as AipDataTable } from './components/AipDataTable.vue';
export { default as AipStatusTag } from './components/AipStatusTag.vue';
export { default as AipEmptyState } from './components/AipEmptyState.vue';
export { default as AipConfirmDialog } from './components/AipConfirmDialog.vue';
export { default as AipChart } from './components/AipChart.vue';
export type { EChartsOption } from './components/echarts.ts';
export type { LocalizedText, WebContribution, WebContributionKind } from '../src/manifest.ts';
