/**
 * Throttling of failed sign-ins, per account and per client address: after a few failures each
 * further attempt must wait longer (1 s, 2 s, 4 s … up to a minute), and past a limit the key is
 * locked for a while. The state is in the database, so every core replica applies it, and the
 * failure is recorded in the sign-in request's own transaction.
 */
import type { Knex } from 'knex';

export interface ThrottlePolicy {
  /** Failures allowed before delays start. */
  freeFailures: number;
  /** Failures after which the account is locked. */
  lockAfter: number;
  /** Seconds a lock lasts. */
  lockSeconds: number;
  /** The per-address limits are this many times the per-account ones (an office behind one NAT). */
  addressFactor: number;
}

export const DEFAULT_THROTTLE: ThrottlePolicy = { freeFailures: 3, lockAfter: 10, lockSeconds: 900, addressFactor: 5 };

interface Row {
  key: string;
  failures: number;
  last_failure_at: Date | string;
  locked_until: Date | string | null;
}

export interface ThrottleVerdict {
  /** Seconds to wait before the next attempt (0: go ahead). */
  retryAfter: number;
  locked: boolean;
}

export class LoginThrottle {
  constructor(private readonly policy: ThrottlePolicy = DEFAULT_THROTTLE) {}

  static keys(username: string, ip: string): { account: string; address: string } {
    return { account: `user:${username.toLowerCase()}`, address: `ip:${ip}` };
  }

  private limits(key: string): { free: number; lockAfter: number } {
    const factor = key.startsWith('ip:') ? this.policy.addressFactor : 1;
    return { free: this.policy.freeFailures * factor, lockAfter: this.policy.lockAfter * factor };
  }

  private verdictOf(row: Row | undefined, now: number): ThrottleVerdict {
    if (!row) return { retryAfter: 0, locked: false };
    if (row.locked_until && new Date(row.locked_until).getTime() > now) {
      return { retryAfter: Math.ceil((new Date(row.locked_until).getTime() - now) / 1000), locked: true };
    }
    const { free } = this.limits(row.key);
    if (row.failures < free) return { retryAfter: 0, locked: false };
    const delayMs = Math.min(60_000, 1000 * 2 ** (row.failures - free));
    const wait = new Date(row.last_failure_at).getTime() + delayMs - now;
    return { retryAfter: wait > 0 ? Math.ceil(wait / 1000) : 0, locked: false };
  }

  /** Whether a sign-in for these keys may be tried now. */
  async check(db: Knex, keys: string[]): Promise<ThrottleVerdict> {
    const rows = (await db('login_failures').whereIn('key', keys)) as Row[];
    const now = Date.now();
    let worst: ThrottleVerdict = { retryAfter: 0, locked: false };
    for (const row of rows) {
      const verdict = this.verdictOf(row, now);
      if (verdict.retryAfter > worst.retryAfter) worst = verdict;
    }
    return worst;
  }

  /** Count a failure on each key; returns the failures now counted on the first (the account). */
  async fail(db: Knex, keys: string[]): Promise<number> {
    const now = new Date();
    let first = 0;
    for (const key of keys) {
      const [row] = (await db('login_failures')
        .insert({ key, failures: 1, last_failure_at: now })
        .onConflict('key')
        .merge({
          // A lock that ran out starts the count again.
          failures: db.raw('case when login_failures.locked_until is not null and login_failures.locked_until <= ? then 1 else login_failures.failures + 1 end', [now]),
          locked_until: db.raw('case when login_failures.locked_until is not null and login_failures.locked_until <= ? then null else login_failures.locked_until end', [now]),
          last_failure_at: now,
        })
        .returning(['failures'])) as { failures: number }[];
      const failures = Number(row!.failures);
      if (failures >= this.limits(key).lockAfter) {
        await db('login_failures')
          .where({ key })
          .update({ locked_until: new Date(now.getTime() + this.policy.lockSeconds * 1000) });
      }
      if (key === keys[0]) first = failures;
    }
    return first;
  }

  /** A successful sign-in clears the account's count (the address keeps its count). */
  async succeed(db: Knex, accountKey: string): Promise<void> {
    await db('login_failures').where({ key: accountKey }).delete();
  }
}
