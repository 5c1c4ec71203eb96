/**
 * A container's output as the engine's logs endpoint gives it: frames of stdout and stderr
 * (an 8-byte header: stream type, three zero bytes, the payload's size big-endian, then the
 * payload). Both streams are merged in the order the engine logged them, and offsets count the
 * payload bytes of that merged output from the container's start: the same numbers whether it is
 * read live or again after a core restart, because both read the engine's one log.
 */

/** A "line" this long without a newline (progress bars redrawn with \r) is delivered anyway. */
export const MAX_PARTIAL_LINE_BYTES = 64 * 1024;

/** Splits the multiplexed stream into payloads, whatever the chunking. */
export class Demuxer {
  private header = Buffer.alloc(0);
  private remaining = 0;

  constructor(private readonly onPayload: (payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - at);
        this.onPayload(chunk.subarray(at, at + take));
        this.remaining -= take;
        at += take;
        continue;
      }
      const need = 8 - this.header.length;
      const part = chunk.subarray(at, at + need);
      at += part.length;
      this.header = this.header.length === 0 ? Buffer.from(part) : Buffer.concat([this.header, part]);
      if (this.header.length < 8) return;
      this.remaining = this.header.readUInt32BE(4);
      this.header = Buffer.alloc(0);
    }
  }
}

/**
 * Turns the merged output into complete lines and their end offsets. `skip` bytes (output already
 * stored before a restart) are passed over. A log read again from the start (a dropped follow
 * stream) calls `restart()` first: bytes taken before are not taken twice.
 */
export class LineAssembler {
  /** Bytes of the merged output taken so far (skipped, delivered or waiting in `pending`). */
  private consumed: number;
  /** Where the current read of the log is, in the same bytes. */
  private readAt = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    skip: number,
    private readonly deliver: (text: string, endOffset: number) => void,
  ) {
    this.consumed = skip;
  }

  /** The offset just after the last delivered byte. */
  get delivered(): number {
    return this.consumed - this.pendingBytes;
  }

  restart(): void {
    this.readAt = 0;
  }

  take(payload: Buffer): void {
    const start = Math.max(0, this.consumed - this.readAt);
    this.readAt += payload.length;
    if (start >= payload.length) return;
    const fresh = payload.subarray(start);
    this.consumed += fresh.length;
    this.pending.push(Buffer.from(fresh));
    this.pendingBytes += fresh.length;
    if (fresh.includes(0x0a) || this.pendingBytes >= MAX_PARTIAL_LINE_BYTES) this.flush(false);
  }

  /** Delivers the complete lines waiting; with `final`, the unterminated rest too. */
  flush(final: boolean): void {
    if (this.pendingBytes === 0) return;
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    let end = final ? all.length : all.lastIndexOf(0x0a) + 1;
    if (end === 0 && all.length >= MAX_PARTIAL_LINE_BYTES) end = utf8Boundary(all);
    if (end === 0) {
      this.pending = [all];
      return;
    }
    const rest = all.subarray(end);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    this.deliver(all.subarray(0, end).toString('utf8'), this.delivered);
  }
}

/** The longest prefix of `chunk` that does not cut a UTF-8 character in two. */
export function utf8Boundary(chunk: Buffer): number {
  const end = chunk.length;
  // Back over continuation bytes (10xxxxxx) to the lead byte of the last character.
  let i = end - 1;
  while (i > 0 && end - i < 4 && ((chunk[i] ?? 0) & 0xc0) === 0x80) i--;
  const lead = chunk[i] ?? 0;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return i + length > end ? i : end;
}
