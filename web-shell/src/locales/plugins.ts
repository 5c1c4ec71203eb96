// Filled by the page's own work.
export default { en: {}, 'zh-CN': {} };
