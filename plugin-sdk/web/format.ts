/**
 * Dates, sizes and numbers as the shell shows them, in its current language: date and time as
 * `11/26/2026, 18:22:19` (24-hour, with seconds), a date as `11/26/2026`, relative times as
 * `3 days ago`, sizes in decimal units (`1.2 MB`, as the marketplace and Docker images show them),
 * numbers grouped. A missing value (null, undefined, empty) shows as `—`.
 */
import { useLocale } from './composables.ts';

/** A point in time: an ISO string (as the API gives), epoch milliseconds or a Date. */
export type DateInput = string | number | Date | null | undefined;

export interface Formatter {
  /** A date without the time. */
  date(value: DateInput): string;
  /** A date and time. */
  dateTime(value: DateInput): string;
  /** Relative to now: "3 days ago", "in 2 hours", "now". */
  relative(value: DateInput): string;
  /** A size in bytes: "999 B", "1.2 kB", "34 MB". */
  bytes(value: number | null | undefined): string;
  /** A number, grouped (`options` as for `Intl.NumberFormat`, e.g. `{ notation: 'compact' }`). */
  number(value: number | null | undefined, options?: Intl.NumberFormatOptions): string;
}

const EMPTY = '—';
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
/** Relative time: the largest unit (in seconds) that fits, down to seconds. */
const RELATIVE: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 86_400 * 365],
  ['month', 86_400 * 30],
  ['day', 86_400],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
];
const made = new Map<string, Formatter>();

/** The formatter for one language (`en`, `zh-CN`); {@link useFormat} follows the shell's instead. */
export function createFormat(locale: string): Formatter {
  let format = made.get(locale);
  if (format) return format;
  const day = { year: 'numeric', month: '2-digit', day: '2-digit' } as const;
  const date = new Intl.DateTimeFormat(locale, day);
  const dateTime = new Intl.DateTimeFormat(locale, { ...day, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const relative = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' });
  const number = (value: number | null | undefined, options?: Intl.NumberFormatOptions) =>
    value == null || !Number.isFinite(value) ? EMPTY : new Intl.NumberFormat(locale, options).format(value);
  const when = (show: (d: Date) => string) => (value: DateInput) => {
    if (value == null || value === '') return EMPTY;
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? String(value) : show(d);
  };
  format = {
    date: when((d) => date.format(d)),
    dateTime: when((d) => dateTime.format(d)),
    relative: when((d) => {
      const diff = (d.getTime() - Date.now()) / 1000;
      const [unit, size] = RELATIVE.find(([, size]) => Math.abs(diff) >= size) ?? RELATIVE[5]!;
      return relative.format(Math.round(diff / size), unit);
    }),
    bytes(value) {
      let unit = 0;
      while (value != null && Math.abs(value) >= 1000 && unit < 5) {
        value /= 1000;
        unit++;
      }
      return value == null || !Number.isFinite(value) ? EMPTY : `${number(value, { maximumFractionDigits: Math.abs(value) < 10 && unit ? 1 : 0 })} ${UNITS[unit]}`;
    },
    number,
  };
  made.set(locale, format);
  return format;
}

/** {@link Formatter} in the shell's current language (follows a language switch). */
export function useFormat(): Formatter {
  const locale = useLocale();
  const format = {} as Record<keyof Formatter, (...args: never[]) => string>;
  for (const key of ['date', 'dateTime', 'relative', 'bytes', 'number'] as const) format[key] = (...args) => (createFormat(locale.value)[key] as (...a: never[]) => string)(...args);
  return format as Formatter;
}
