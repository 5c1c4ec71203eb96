export default {
  title: 'Lineage',
  description: 'Where a dataset version, run, model version, variant or deployment revision comes from, and what was made from it.',
  depth: 'Depth',
  direction: {
    up: 'Upstream',
    down: 'Downstream',
    both: 'Both ways',
  },
  lookup: {
    direction: 'Direction',
    kindPlaceholder: 'e.g. models.version',
    idPlaceholder: 'The object’s id',
    show: 'Show lineage',
  },
  node: {
    kind: 'Kind',
    id: 'Id',
    team: 'Team',
    position: 'Position',
  },
  graph: {
    pick: 'Choose a kind and an id to see their lineage.',
    none: 'No lineage recorded for this object yet.',
    noneHint: 'Plugins record links when they make something from something else, e.g. a training run from a dataset version.',
    truncated: 'Part of the lineage is not shown: it lies beyond the depth chosen, or the graph has more nodes than are shown at once.',
    this: 'this object',
    upstreamBy: '{n} up',
    downstreamBy: '{n} down',
    focus: 'Show its lineage',
    close: 'Close',
  },
};
