/** What every redacted value is shown as. */
export const REDACTED = '••••';

/**
 * Plaintexts shorter than this are not searched for in text: replacing every "ab" in every log
 * line would destroy the logs without protecting much. Such values are still redacted by field name.
 */
export const MIN_REDACTED_LENGTH = 4;

/** Field names whose string values are always redacted (compared without case, `-` and `_`; suffixes count: `smtpPassword`). */
const SENSITIVE_NAME = /(password|passwd|passphrase|secret|secretkey|token|apikey|accesskey|privatekey|authorization|cookie|credential|credentials)$/;

const MAX_DEPTH = 12;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The one redactor of the core. It knows the plaintexts of the current secrets (the stored secret
 * settings, the master key, the bootstrap password) and the field names that always hold secrets,
 * and it is applied to log lines, audit details and error bodies.
 */
export class Redactor {
  private readonly plaintexts = new Set<string>();
  private pattern: RegExp | undefined;

  /** Remember a secret's plaintext; from now on it is replaced wherever it appears. */
  addSecret(value: unknown): void {
    if (typeof value !== 'string' || value.length < MIN_REDACTED_LENGTH) return;
    const before = this.plaintexts.size;
    this.plaintexts.add(value);
    // As it appears inside serialized JSON (a log line), quotes and backslashes escaped.
    const escaped = JSON.stringify(value).slice(1, -1);
    if (escaped !== value) this.plaintexts.add(escaped);
    if (this.plaintexts.size !== before) {
      // Longest first, so a secret that contains another is replaced whole.
      const alternatives = [...this.plaintexts].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.pattern = new RegExp(alternatives.join('|'), 'g');
    }
  }

  get size(): number {
    return this.plaintexts.size;
  }

  /** Answers per field name, remembered: log lines repeat the same few names. */
  private readonly nameAnswers = new Map<string, boolean>();

  isSensitiveName(name: string): boolean {
    let answer = this.nameAnswers.get(name);
    if (answer === undefined) {
      answer = SENSITIVE_NAME.test(name.toLowerCase().replace(/[-_]/g, ''));
      if (this.nameAnswers.size < 10_000) this.nameAnswers.set(name, answer);
    }
    return answer;
  }

  /** Replace every known plaintext in `text`. */
  redactText(text: string): string {
    if (!this.pattern) return text;
    this.pattern.lastIndex = 0;
    return this.pattern.test(text) ? text.replace(this.pattern, REDACTED) : text;
  }

  /**
   * `value` with known plaintexts replaced in every string and the values of sensitive field names
   * replaced, through plain objects and arrays. Returns the same object when nothing changed.
   */
  redactValue<T>(value: T): T {
    return this.walk(value, true, 0) as T;
  }

  /** Only the sensitive field names (cheap: for every log line, whose text is searched separately). */
  redactNames<T>(value: T): T {
    return this.walk(value, false, 0) as T;
  }

  private walk(value: unknown, texts: boolean, depth: number): unknown {
    if (typeof value === 'string') return texts ? this.redactText(value) : value;
    if (depth > MAX_DEPTH) return value;
    if (Array.isArray(value)) {
      let changed = false;
      const out = value.map((item) => {
        const next = this.walk(item, texts, depth + 1);
        if (next !== item) changed = true;
        return next;
      });
      return changed ? out : value;
    }
    if (!isPlainObject(value)) return value;
    let out: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const next = (typeof item === 'string' || typeof item === 'number') && item !== '' && this.isSensitiveName(key) ? REDACTED : this.walk(item, texts, depth + 1);
      if (next !== item) {
        out ??= { ...value };
        out[key] = next;
      }
    }
    return out ?? value;
  }
}
