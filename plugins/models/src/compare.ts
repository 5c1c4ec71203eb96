/** Side-by-side comparison of model versions. */
import type { ComparedRow, Comparison, ModelVersion } from '../api/index.js';

export type { ComparedRow, Comparison };

const METADATA_FIELDS = [
  'format',
  'architecture',
  'modelType',
  'parameters',
  'dtype',
  'torchDtype',
  'contextLength',
  'hiddenSize',
  'layers',
  'attentionHeads',
  'keyValueHeads',
  'vocabSize',
] as const;

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function compareVersions(versions: (ModelVersion & { model: string })[]): Comparison {
  const rows: ComparedRow[] = [];
  const add = (group: ComparedRow['group'], field: string, values: unknown[]) => {
    rows.push({ group, field, values, differs: values.some((v) => !same(v, values[0])) });
  };
  for (const field of METADATA_FIELDS) add('metadata', field, versions.map((v) => v.metadata[field] ?? null));
  add('metadata', 'quantisation', versions.map((v) => (v.metadata.quantisation ? `${v.metadata.quantisation.method}${v.metadata.quantisation.name ? ` ${v.metadata.quantisation.name}` : ''}${v.metadata.quantisation.bits ? ` ${v.metadata.quantisation.bits}-bit` : ''}` : null)));
  add('size', 'totalBytes', versions.map((v) => v.totalSize));
  add('size', 'weightBytes', versions.map((v) => v.metadata.sizes?.weightBytes ?? null));
  add('size', 'files', versions.map((v) => v.files.length));
  for (const group of ['evaluation', 'speed'] as const) {
    const names = [...new Set(versions.flatMap((v) => Object.keys(v.metrics[group])))].sort();
    for (const name of names) add(group, name, versions.map((v) => v.metrics[group][name]?.value ?? null));
  }
  return {
    versions: versions.map((v) => ({ id: v.id, model: v.model, number: v.number, stage: v.stage, source: v.source })),
    rows,
    differences: rows.filter((r) => r.differs).length,
  };
}
