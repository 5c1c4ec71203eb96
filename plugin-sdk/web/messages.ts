/**
 * The SDK's own strings (its components) in every shell language. The shell merges them into its
 * vue-i18n messages; plugins add theirs through `defineUiPlugin({ messages })`. The error catalog's
 * translations are in `error-messages.ts`, loaded the first time an error is shown.
 */
export const SUPPORTED_LOCALES = ['en', 'zh-CN'] as const;
export type Locale = (typeof SUPPORTED_LOCALES)[number];

const en = {
  aip: {
    actions: { refresh: 'Refresh', cancel: 'Cancel', confirm: 'Confirm', retry: 'Try again', save: 'Save', reset: 'Reset', search: 'Search', clear: 'Clear' },
    table: { previous: 'Previous', next: 'Next', page: 'Page {page}', empty: 'Nothing here yet', loadFailed: 'Could not load the list', perPage: '{n} per page' },
    empty: { title: 'Nothing here yet' },
    chart: { loading: 'Loading chart…', noData: 'No data' },
    status: {
      enabled: 'Enabled',
      disabled: 'Disabled',
      failed: 'Failed',
      running: 'Running',
      pending: 'Pending',
      queued: 'Queued',
      succeeded: 'Succeeded',
      cancelled: 'Cancelled',
      cancelling: 'Cancelling',
      interrupted: 'Interrupted',
      ok: 'OK',
      degraded: 'Degraded',
      unknown: 'Unknown',
    },
  },
};

type Messages = typeof en;

const zhCN: Messages = {
  aip: {
    actions: { refresh: '刷新', cancel: '取消', confirm: '确定', retry: '重试', save: '保存', reset: '重置', search: '搜索', clear: '清除' },
    table: { previous: '上一页', next: '下一页', page: '第 {page} 页', empty: '暂无数据', loadFailed: '列表加载失败', perPage: '每页 {n} 条' },
    empty: { title: '暂无数据' },
    chart: { loading: '图表加载中…', noData: '暂无数据' },
    status: {
      enabled: '已启用',
      disabled: '已停用',
      failed: '失败',
      running: '运行中',
      pending: '等待中',
      queued: '排队中',
      succeeded: '成功',
      cancelled: '已取消',
      cancelling: '取消中',
      interrupted: '已中断',
      ok: '正常',
      degraded: '降级',
      unknown: '未知',
    },
  },
};

export const sdkMessages: Record<Locale, Messages> = { en, 'zh-CN': zhCN };
