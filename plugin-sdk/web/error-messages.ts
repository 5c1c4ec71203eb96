/**
 * The error catalog's translations by code (`errors.<code>`), in every shell language. Not in the
 * first load: the shell loads them (`setErrorMessagesLoader`) before the API client hands out its
 * first error, and with the pages that translate error codes themselves.
 */
import type { Locale } from './messages.ts';

const en = {
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
    unprocessable: 'What the request points at cannot be used as given.',
    unschedulable: 'The workload can never be scheduled as it is.',
    node_unreachable: 'The node could not be reached.',
    plugin_exists: 'A plugin with this id is already installed.',
    plugin_not_installed: 'This plugin was not installed from a package, so it cannot be upgraded, rolled back or uninstalled.',
    plugin_install_busy: 'Another plugin install, upgrade, rollback or uninstall is running.',
    plugin_incompatible: 'The plugin does not work with this core or with the installed plugins.',
    plugin_dependency_missing: 'A plugin this package needs is not installed and cannot be found in a registry.',
    package_invalid: 'The file is not a valid plugin package.',
    package_unsafe: 'The package holds paths or links that could write outside its folder.',
    package_too_large: 'The package is larger than this server accepts.',
    package_bundles_host_library: 'The package carries its own copy of a library the platform provides.',
    package_modified: 'The package was changed after it was signed.',
    package_unsigned: 'The package is not signed by a trusted publisher, and no administrator has allowed this plugin unsigned.',
    registry_unreachable: 'The plugin registry could not be reached.',
    version_not_found: 'No published version matches.',
    payload_too_large: 'The request is larger than this action accepts.',
    unsupported_media_type: 'The request has a content type this action does not accept.',
    rate_limited: 'Too many requests: slow down and try again.',
    internal: 'Something went wrong on the server. The request id identifies it in the logs.',
    unavailable: 'The service is not available right now.',
  },
};

type ErrorMessages = typeof en;

const zhCN: ErrorMessages = {
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
    unprocessable: '请求格式正确，但其指向的内容无法使用。',
    unschedulable: '该工作负载按当前配置永远无法调度。',
    node_unreachable: '无法连接到该节点。',
    plugin_exists: '已安装同一 ID 的插件。',
    plugin_not_installed: '此插件不是通过安装包安装的，无法升级、回滚或卸载。',
    plugin_install_busy: '另一个插件安装、升级、回滚或卸载正在进行。',
    plugin_incompatible: '该插件与当前核心或已安装的插件不兼容。',
    plugin_dependency_missing: '该安装包依赖的插件未安装，且在插件仓库中找不到。',
    package_invalid: '该文件不是有效的插件安装包。',
    package_unsafe: '安装包含有可能写到其目录之外的路径或链接。',
    package_too_large: '安装包超过了服务器允许的大小。',
    package_bundles_host_library: '安装包自带了平台已提供的库。',
    package_modified: '安装包在签名之后被修改过。',
    package_unsigned: '安装包没有受信任发布者的签名，且管理员未允许此插件以未签名方式安装。',
    registry_unreachable: '无法连接插件仓库。',
    version_not_found: '没有匹配的已发布版本。',
    payload_too_large: '请求内容超过此操作允许的大小。',
    unsupported_media_type: '此操作不接受该内容类型。',
    rate_limited: '请求过于频繁，请稍后重试。',
    internal: '服务器出错，可凭请求 ID 在日志中查找原因。',
    unavailable: '服务暂时不可用。',
  },
};

export const sdkErrorMessages: Record<Locale, ErrorMessages> = { en, 'zh-CN': zhCN };
