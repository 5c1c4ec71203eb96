import type en from './en.ts';

const zhCN: typeof en = {
  title: '血缘',
  description: '数据集版本、训练运行、模型版本、变体或部署修订从何而来，以及由它产生了什么。',
  depth: '深度',
  direction: {
    up: '上游',
    down: '下游',
    both: '双向',
  },
  lookup: {
    direction: '方向',
    kindPlaceholder: '例如 models.version',
    idPlaceholder: '对象的 ID',
    show: '查看血缘',
  },
  node: {
    kind: '类型',
    id: 'ID',
    team: '团队',
    position: '位置',
  },
  graph: {
    pick: '选择类型并输入 ID 以查看其血缘。',
    none: '此对象尚无血缘记录。',
    noneHint: '插件在由一个对象生成另一个对象时记录关系，例如由数据集版本产生的训练运行。',
    truncated: '部分血缘未显示：它超出了所选深度，或图中的节点多于一次可显示的数量。',
    this: '当前对象',
    upstreamBy: '上游 {n} 层',
    downstreamBy: '下游 {n} 层',
    focus: '查看其血缘',
    close: '关闭',
  },
};

export default zhCN;
