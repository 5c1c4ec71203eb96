/** Formatting that follows the shell's language: sizes, parameter counts, dates, compared values. */
import { useI18n } from 'vue-i18n';
import { session, useFormat } from '@aiplat/plugin-sdk/web';
import type { ModelStage, VersionMetadata, VersionSource } from './types.ts';

export function useModelFormat() {
  const { t, te } = useI18n();
  // Dates, sizes and plain numbers as the shell shows them (the SDK's useFormat).
  const format = useFormat();

  const bytes = format.bytes;
  /** A parameter count, short (`1.6K`, `7B`, `70亿`). */
  const parameters = (n: number | null | undefined) => format.number(n, { notation: 'compact', maximumFractionDigits: 1 });
  const number = (n: number | null | undefined) => format.number(n);
  const metric = (n: number | null | undefined) => format.number(n, { maximumFractionDigits: 4 });
  const date = format.dateTime;
  const stage = (s: ModelStage | string) => (te(`models.stage.${s}`) ? t(`models.stage.${s}`) : s);
  const source = (s: VersionSource) => {
    const kind = te(`models.source.${s.kind}`) ? t(`models.source.${s.kind}`) : s.kind;
    return s.ref ? `${kind}: ${s.ref}` : kind;
  };
  const quantisation = (q: VersionMetadata['quantisation']) =>
    q ? `${q.method}${q.name ? ` ${q.name}` : ''}${q.bits ? ` ${t('models.version.bits', { bits: q.bits })}` : ''}` : t('models.version.noQuantisation');
  /** The label of a compared row (`models.compare.fields.<field>`, else the metric's own name). */
  const field = (group: string, name: string) => (group !== 'evaluation' && group !== 'speed' && te(`models.compare.fields.${name}`) ? t(`models.compare.fields.${name}`) : name);
  /** A compared value: sizes as bytes, parameters short with the full count, numbers grouped. */
  function compared(group: string, name: string, value: unknown): string {
    if (value === null || value === undefined) return '—';
    if (typeof value === 'number') {
      if (group === 'size' && name !== 'files') return bytes(value);
      if (name === 'parameters') return Math.abs(value) < 10_000 ? number(value) : `${parameters(value)} (${number(value)})`;
      if (group === 'evaluation' || group === 'speed') return metric(value);
      return number(value);
    }
    return typeof value === 'string' ? value : JSON.stringify(value);
  }
  /** Who did something: the signed-in user by name, anyone else by id (the API gives ids). */
  const who = (id: string | null | undefined) => (!id ? '—' : id === session.state.user?.id ? session.state.user.username : id);
  return { bytes, parameters, number, metric, date, stage, source, quantisation, field, compared, who };
}
