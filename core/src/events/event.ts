import type { EventAudience, StreamEvent } from '@aiplat/plugin-sdk';

/**
 * One published event as the core carries it: the payload stays JSON text, parsed only for
 * in-process subscribers, and the WebSocket frame is built once and shared by every connection.
 */
export class BusEvent {
  private wire: Buffer | undefined;

  constructor(
    readonly topic: string,
    readonly seq: number,
    /** RFC 3339 UTC time of publishing. */
    readonly at: string,
    readonly audience: EventAudience | undefined,
    readonly payloadJson: string,
  ) {}

  /** The stream's event message `{ topic, seq, at, payload }` as UTF-8 JSON. */
  get frame(): Buffer {
    // Topic names (TOPIC_PATTERN) and RFC 3339 times hold nothing JSON would escape.
    return (this.wire ??= Buffer.from(`{"topic":"${this.topic}","seq":${this.seq},"at":"${this.at}","payload":${this.payloadJson}}`));
  }

  /** A fresh copy for an in-process subscriber (each gets its own payload object). */
  toStreamEvent<T>(): StreamEvent<T> {
    return { topic: this.topic, seq: this.seq, at: this.at, payload: JSON.parse(this.payloadJson) as T };
  }

  /** Approximate bytes held in memory while retained. */
  get size(): number {
    return this.payloadJson.length + this.topic.length + 96 + (this.wire?.length ?? 0);
  }
}

/**
 * The text carried through Redis and kept for replay: `<seq>\n<at>\n<audience JSON or empty>\n<payload JSON>`.
 * JSON.stringify never emits a raw newline, so the first three newlines split it.
 */
export function encodeBody(at: string, audience: EventAudience | undefined, payloadJson: string): string {
  return `${at}\n${audience ? JSON.stringify(audience) : ''}\n${payloadJson}`;
}

export function decodeMessage(topic: string, message: string): BusEvent | undefined {
  const a = message.indexOf('\n');
  const b = message.indexOf('\n', a + 1);
  const c = message.indexOf('\n', b + 1);
  if (a <= 0 || b < 0 || c < 0) return undefined;
  const seq = Number(message.slice(0, a));
  if (!Number.isSafeInteger(seq) || seq <= 0) return undefined;
  const audienceJson = message.slice(b + 1, c);
  return new BusEvent(
    topic,
    seq,
    message.slice(a + 1, b),
    audienceJson ? (JSON.parse(audienceJson) as EventAudience) : undefined,
    message.slice(c + 1),
  );
}
