/**
 * The SDK's own strings (its components, the error catalog by code) in every shell language. The
 * shell merges them into its vue-i18n messages; plugins add theirs through `defineUiPlugin({ messages })`.
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
  errors: {
    network: 'The server cannot be reached. Check your connection and try again.',
    bad_request: 'The request is not valid.',
    invalid_json: 'The request body is not valid JSON.',
    validation_failed: 'Some fields are not valid.',
    unauthenticated: 'Your session has ended. Sign in again.',
    invalid_credentials: 'The username or password is wrong.',
    forbidden: 'You do not have the permission this action needs.',
    not_found: 'Nothing was found at this address.',
    plugin_not_found: 'No plugin with this id is installed.',
    method_not_allowed: 'This address does not accept this method.',
    conflict: 'The request conflicts with the current state.',
    plugin_has_dependents: 'Other enabled plugins depend on this plugin.',
    plugin_dependencies_disabled: 'This plugin needs plugins that are not enabled.',
    plugin_failed: 'The plugin could not be loaded.',
    secret_key_missing: 'Secret settings cannot be stored until the server has AIPLAT_SECRET_KEY set.',
    unschedulable: 'The workload can never be scheduled as it is.',
    node_unreachable: 'The node could not be reached.',
    payload_too_large: 'The request is larger than this action accepts.',
    unsupported_media_type: 'The request has a content type this action does not accept.',
    rate_limited: 'Too many requests: slow down and try again.',
    internal: 'Something went wrong on the server. The request id identifies it in the logs.',
    unavailable: 'The service is not available right now.',
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
  errors: {
    network: '无法连接服务器，请检查网络后重试。',
    bad_request: '请求无效。',
    invalid_json: '请求内容不是有效的 JSON。',
    validation_failed: '部分字段无效。',
    unauthenticated: '会话已结束，请重新登录。',
    invalid_credentials: '用户名或密码错误。',
    forbidden: '您没有执行此操作所需的权限。',
    not_found: '此地址下没有内容。',
    plugin_not_found: '未安装此 ID 的插件。',
    method_not_allowed: '此地址不接受该请求方法。',
    conflict: '请求与当前状态冲突。',
    plugin_has_dependents: '其他已启用的插件依赖此插件。',
    plugin_dependencies_disabled: '此插件依赖的插件未启用。',
    plugin_failed: '插件加载失败。',
    secret_key_missing: '服务器设置 AIPLAT_SECRET_KEY 之前无法保存密钥类配置。',
    unschedulable: '该工作负载按当前配置永远无法调度。',
    node_unreachable: '无法连接到该节点。',
    payload_too_large: '请求内容超过此操作允许的大小。',
    unsupported_media_type: '此操作不接受该内容类型。',
    rate_limited: '请求过于频繁，请稍后重试。',
    internal: '服务器出错，可凭请求 ID 在日志中查找原因。',
    unavailable: '服务暂时不可用。',
  },
};

export const sdkMessages: Record<Locale, Messages> = { en, 'zh-CN': zhCN };
