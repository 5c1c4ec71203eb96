import pino from 'pino';
import type { Redactor } from '../secrets/redactor.js';

export interface AccessEntry {
  requestId: string;
  method: string;
  url: string;
  status: number;
  ms: number;
  user: string | undefined;
}

/**
 * Lines handed to the destination in one write at most. A write to pino's destination (sonic-boom)
 * costs about as much for one line as for many: it measures its whole pending buffer each time.
 */
const BATCH_LINES = 32;
/** Access logs with lines not yet handed on, flushed at exit (before the core's destination is, being registered first). */
const pendingLogs = new Set<AccessLog>();
process.once('exit', () => {
  for (const log of pendingLogs) log.flush();
});

/**
 * One JSON line per request on the core logger's destination, in pino's format (level 30,
 * epoch-ms time, the logger's `service` binding). Written directly because it runs on every
 * request: building it through pino's generic serializer and formatter hooks cost several times
 * more (docs/adr/0006). Known secret plaintexts are redacted from the line like any other.
 *
 * Lines are handed to the destination together: after the current turn of the event loop
 * (setImmediate), or at once when 32 are waiting, so a busy server writes them in batches and a
 * quiet one within a turn. An access line can thus come after a line another part of the core
 * logged in the same turn. `flush()` hands on what waits (the core calls it when it stops, and
 * at exit).
 */
export class AccessLog {
  private readonly stream: { write(line: string): unknown };
  private pending = '';
  private count = 0;
  private scheduled = false;

  constructor(
    private readonly logger: pino.Logger,
    private readonly redactor?: Redactor,
  ) {
    this.stream = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym]!;
  }

  write(entry: AccessEntry): void {
    if (!this.logger.isLevelEnabled('info')) return;
    const user = entry.user === undefined ? '' : `,"user":${JSON.stringify(entry.user)}`;
    this.pending +=
      `{"level":30,"time":${Date.now()},"service":"aiplat","reqId":${JSON.stringify(entry.requestId)},` +
      `"method":${JSON.stringify(entry.method)},"url":${JSON.stringify(entry.url)},"status":${entry.status},"ms":${entry.ms}${user},"msg":"request"}\n`;
    if (this.count++ === 0) pendingLogs.add(this);
    if (this.count >= BATCH_LINES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  /** Hands the waiting lines to the destination now. */
  flush(): void {
    if (this.count === 0) return;
    const lines = this.pending;
    this.pending = '';
    this.count = 0;
    pendingLogs.delete(this);
    this.stream.write(this.redactor ? this.redactor.redactText(lines) : lines);
  }

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };
}
