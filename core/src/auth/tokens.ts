import { createHash, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Principal } from '@aiplat/plugin-sdk';

const ISSUER = 'aiplat';
const AUDIENCE = 'aiplat-api';

export interface AccessClaims {
  sub: string;
  name: string;
  roles: string[];
  exp: number;
}

/**
 * Signs and verifies access tokens (HS256). Verified tokens are cached until they expire, so the
 * per-request cost of authentication is a map lookup rather than an HMAC and a JSON parse.
 */
export class TokenService {
  private readonly cache = new Map<string, { principal: Principal; exp: number }>();
  private readonly maxCache = 10_000;

  /** The key imported once (jose would import raw bytes again on every call). */
  private readonly keyObject: KeyObject;

  constructor(
    key: Uint8Array,
    readonly accessTtlSeconds: number,
    private readonly makePrincipal?: (user: { id: string; username: string }) => Principal,
  ) {
    this.keyObject = createSecretKey(key);
  }

  async signAccess(user: { id: string; username: string; roles: string[] }): Promise<string> {
    return new SignJWT({ name: user.username, roles: user.roles })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setJti(randomBytes(9).toString('base64url'))
      .setExpirationTime(`${this.accessTtlSeconds}s`)
      .sign(this.keyObject);
  }

  /** The principal of a token verified earlier and not yet expired, synchronously. */
  cached(token: string): Principal | undefined {
    const hit = this.cache.get(token);
    return hit && hit.exp > Date.now() / 1000 ? hit.principal : undefined;
  }

  /** The principal behind a bearer token, or undefined when the token is not valid now. */
  async verifyAccess(token: string): Promise<Principal | undefined> {
    const now = Date.now() / 1000;
    const hit = this.cache.get(token);
    if (hit) {
      if (hit.exp > now) return hit.principal;
      this.cache.delete(token);
    }
    try {
      const { payload } = await jwtVerify(token, this.keyObject, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      const user = { id: String(payload.sub), username: String(payload.name) };
      const principal: Principal = this.makePrincipal
        ? this.makePrincipal(user)
        : { ...user, roles: Array.isArray(payload.roles) ? payload.roles.map(String) : [], via: 'session' };
      if (this.cache.size >= this.maxCache) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(token, { principal, exp: payload.exp ?? now });
      return principal;
    } catch {
      return undefined;
    }
  }

  /** Forget cached tokens of a user (disabled, roles changed). */
  forgetUser(userId: string): void {
    for (const [token, entry] of this.cache) if (entry.principal.id === userId) this.cache.delete(token);
  }
}

export function newRefreshToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The signing key: derived from AIPLAT_SECRET_KEY when set, else a random key kept in the database. */
export function deriveKey(secret: string, purpose: string): Uint8Array {
  return new Uint8Array(createHmac('sha256', secret).update(`aiplat:${purpose}`).digest());
}
