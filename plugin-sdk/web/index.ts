/**
 * The SDK's web part (`@aiplat/plugin-sdk/web`): what a plugin's UI remote builds on. The shell
 * provides it as a shared singleton, so the session, the API client and the stream connection are
 * the shell's own, and a remote never carries a copy.
 */
import { defineAsyncComponent } from 'vue';
export { defineUiPlugin, isUiPlugin } from './define.ts';
export type { ComponentLoader, UiPlugin, UiPluginContext, UiPluginDefinition } from './define.ts';
export { AipContribution, setContributionHost, useContributedTabs, useContribution } from './embed.ts';
export type { ContributionHost, EmbeddableContribution } from './embed.ts';
export { bootInfo, withBase } from './boot.ts';
export type { BootInfo } from './boot.ts';
export { ApiError, apiErrorFromText, apiErrorOf, errorMessagesReady, isApiError, setErrorMessagesLoader } from './errors.ts';
export { coreApi, createApiClient, pluginApi, saveBlob } from './api.ts';
export type { ApiClient, FetchInit, Page, Query, RequestOptions } from './api.ts';
export { useOperation } from './operations.ts';
export type { Operation, OperationStarted, OperationState, UseOperationOptions } from './operations.ts';
export { createFormat, useFormat } from './format.ts';
export type { DateInput, Formatter } from './format.ts';
export { session } from './session.ts';
export type { SessionUser } from './session.ts';
export { stream } from './stream.ts';
export type { StreamEvent, StreamStatus, SubscribeOptions } from './stream.ts';
export { sdkMessages, SUPPORTED_LOCALES } from './messages.ts';
export type { Locale } from './messages.ts';
export { useApi, useCurrentUser, useErrorMessage, useLocale, useLocalized, usePermission, usePluginApi, useStream } from './composables.ts';
export { default as AipPageHeader } from './components/AipPageHeader.vue';
// The heavier components load on first use (a table, a dialog, a chart), so the SDK costs a page
// that shows none of them nothing; a template ref on them reaches the component once it is there.
export const AipDataTable = defineAsyncComponent(() => import('./components/AipDataTable.vue'));
export { default as AipStatusTag } from './components/AipStatusTag.vue';
export { default as AipEmptyState } from './components/AipEmptyState.vue';
export const AipConfirmDialog = defineAsyncComponent(() => import('./components/AipConfirmDialog.vue'));
export const AipChart = defineAsyncComponent(() => import('./components/AipChart.vue'));
/** Markdown rendered and sanitised (marked + DOMPurify, which load with it). */
export const AipMarkdown = defineAsyncComponent(() => import('./components/AipMarkdown.vue'));
export type { EChartsOption } from './components/echarts.ts';
export type { LocalizedText, WebContribution, WebContributionKind } from '../src/manifest.ts';
export type { AuditActorType, AuditOutcome, AuditRecord, ChainedAuditRecord } from '../src/audit.ts';
export type { ReplicaPlacement, Workload, WorkloadSpec, WorkloadState } from '../src/workload-types.ts';
