import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { Principal } from '@aiplat/plugin-sdk';
import { hashToken } from '../auth/tokens.js';

/** Seconds a stream ticket can be used, once. */
export const TICKET_TTL_SECONDS = 30;

const TICKET_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/**
 * Short-lived, single-use tickets for opening `/api/v1/stream`: a browser cannot set an
 * Authorization header on a WebSocket, and a long-lived token in a URL ends up in logs. Tickets
 * are stored hashed in the database, so any core replica can take one that another issued; taking
 * one is a single DELETE … RETURNING, so it works once even when two replicas race for it.
 */
export class StreamTickets {
  private lastSweep = 0;

  constructor(private readonly db: () => Knex) {}

  /** Issue a ticket for this caller, in the request's transaction. */
  async issue(db: Knex, principal: Principal): Promise<{ ticket: string; expiresIn: number }> {
    const ticket = randomBytes(32).toString('base64url');
    const stored = { id: principal.id, username: principal.username, roles: principal.roles, teams: principal.teams ?? [] };
    await db('stream_tickets').insert({
      token_hash: hashToken(ticket),
      principal: JSON.stringify(stored),
      expires_at: db.raw(`now() + interval '${TICKET_TTL_SECONDS} seconds'`),
    });
    if (Date.now() - this.lastSweep > 60_000) {
      this.lastSweep = Date.now();
      await db('stream_tickets').where('expires_at', '<', db.fn.now()).delete();
    }
    return { ticket, expiresIn: TICKET_TTL_SECONDS };
  }

  /** Take a ticket: the caller it was issued to, or undefined when it is unknown, used or expired. */
  async consume(ticket: string | null | undefined): Promise<Principal | undefined> {
    if (!ticket || !TICKET_SHAPE.test(ticket)) return undefined;
    const db = this.db();
    const rows = (await db('stream_tickets')
      .where('token_hash', hashToken(ticket))
      .andWhere('expires_at', '>', db.fn.now())
      .delete()
      .returning('principal')) as { principal: string | { id: string; username: string; roles: string[]; teams?: string[] } }[];
    const row = rows[0];
    if (!row) return undefined;
    const stored = typeof row.principal === 'string' ? (JSON.parse(row.principal) as { id: string; username: string; roles: string[]; teams?: string[] }) : row.principal;
    return { id: stored.id, username: stored.username, roles: stored.roles, teams: stored.teams ?? [], via: 'session' };
  }
}
