// The hello UI's strings in Simplified Chinese: the same keys as en.ts.
import type en from './en.ts';

const zhCN: typeof en = {
  title: '问候',
  description: '输入名字向对方问好。hello 插件会记下每一次问候，并实时告知所有正在查看的人。',
  form: {
    title: '发送问候',
    name: '名字',
    placeholder: '例如：李雷',
    submit: '问候',
    required: '请输入要问候的名字。',
    tooLong: '名字最多 {max} 个字符。',
    readOnly: '你可以查看问候记录，但记录问候需要“greetings:write”权限。',
    failed: '问候未能记录',
  },
  result: {
    title: '已记录问候',
    count: '已问候 {count} 次',
  },
  list: {
    title: '问候记录',
    search: '搜索名字',
    name: '名字',
    count: '问候次数',
    lastGreeting: '最近一次问候',
    updatedAt: '最近问候时间',
    empty: '还没有问候过任何人',
    noMatch: '没有包含“{q}”的名字',
    live: '实时更新',
  },
  widget: {
    greetings: '问候总数',
    names: '人数',
    recent: '最近问候',
    empty: '还没有问候过任何人',
    open: '打开问候页',
    times: '× {count}',
  },
};

export default zhCN;
