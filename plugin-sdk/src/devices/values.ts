/**
 * How nvidia-smi writes a value, shared by the XML (`-q -x`) and CSV (`--query-gpu`) readers:
 * units inside the value (`81559 MiB`, `68.32 W`, `0 %`), or none with `nounits`; a missing value
 * as a bare `N/A` (XML) or bracketed `[N/A]` (CSV), and other status words for fields a driver or
 * a board does not support.
 */

/**
 * What nvidia-smi prints where it has no value. `N/A` is the documented one; the others appear
 * for fields a driver or a board does not support, and mean "unknown" to us just the same. In CSV
 * they are bracketed (`[Not Supported]`); any bracketed value is such a status, never a reading.
 */
const NO_VALUE = new Set(['', 'N/A', 'Not Supported', 'Unknown Error', 'Insufficient Permissions', 'Requested functionality has been deprecated', 'GPU is lost', 'Not Available']);

/** A value's text, or null for a no-value marker (`N/A`, `[N/A]`, `[Not Supported]`, ...). */
export function valueText(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const trimmed = value.trim();
  if (/^\[.*\]$/.test(trimmed)) return null;
  return NO_VALUE.has(trimmed) ? null : trimmed;
}

const QUANTITY = /^(-?\d+(?:\.\d+)?)\s*([A-Za-z%/]*)$/;

/** The number in a value that may carry its unit inside (`68.32 W`, `0 %`, `27 C`, `27`); null when there is none. */
export function quantity(value: unknown): number | null {
  const match = QUANTITY.exec(valueText(value) ?? '');
  return match ? Number(match[1]) : null;
}

const MIB_PER_UNIT: Record<string, number> = { KiB: 1 / 1024, MiB: 1, GiB: 1024, TiB: 1024 * 1024 };

/** A memory size in whole MiB (a value without a unit is MiB, as nvidia-smi prints memory throughout). */
export function mebibytes(value: unknown): number | null {
  const match = QUANTITY.exec(valueText(value) ?? '');
  if (!match) return null;
  const factor = MIB_PER_UNIT[match[2] || 'MiB'];
  return factor === undefined ? null : Math.floor(Number(match[1]) * factor);
}

/** A whole number ≥ 0, or null. */
export function integer(value: unknown): number | null {
  const raw = valueText(value);
  return raw !== null && /^\d+$/.test(raw) ? Number(raw) : null;
}

/** `Enabled`/`Disabled` (MIG mode), or null for anything else (N/A on cards without MIG). */
export function migModeOf(value: unknown): 'Enabled' | 'Disabled' | null {
  const mode = valueText(value);
  return mode === 'Enabled' || mode === 'Disabled' ? mode : null;
}
