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
 * One JSON line per request on the core logger's destination, in pino's format (level 30,
 * epoch-ms time, the logger's `service` binding). Written directly because it runs on every
 * request: building it through pino's generic serializer and formatter hooks cost several times
 * more (docs/adr/0006). Known secret plaintexts are redacted from the line like any other.
 */
export class AccessLog {
  private readonly stream: { write(line: string): unknown };

  constructor(
    private readonly logger: pino.Logger,
    private readonly redactor?: Redactor,
  ) {
    this.stream = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym]!;
  }

  write(entry: AccessEntry): void {
    if (!this.logger.isLevelEnabled('info')) return;
    const user = entry.user === undefined ? '' : `,"user":${JSON.stringify(entry.user)}`;
    const line =
      `{"level":30,"time":${Date.now()},"service":"aiplat","reqId":${JSON.stringify(entry.requestId)},` +
      `"method":${JSON.stringify(entry.method)},"url":${JSON.stringify(entry.url)},"status":${entry.status},"ms":${entry.ms}${user},"msg":"request"}\n`;
    this.stream.write(this.redactor ? this.redactor.redactText(line) : line);
  }
}
