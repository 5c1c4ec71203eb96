// Access and refresh tokens that must be refused (identity issue, "Tokens" tests).
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, TEST_ADMIN_PASSWORD, type TestCore } from '@aiplat/testing';
import { deriveKey } from '../src/auth/tokens.js';

const SECRET = 'tokens-test-secret-key-0123456789abcdef';

describe('token verification', () => {
  let core: TestCore;
  let userId: string;
  const key = deriveKey(SECRET, 'jwt');
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  beforeAll(async () => {
    core = await startTestCore({ plugins: [], config: { secretKey: SECRET } });
    userId = (await core.client.get('/api/v1/me')).body.user.id;
  });
  afterAll(() => core?.stop());

  const sign = (claims: { aud?: string; iss?: string; exp?: number }, signingKey = key) =>
    new SignJWT({ name: 'admin', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setIssuer(claims.iss ?? 'aiplat')
      .setAudience(claims.aud ?? 'aiplat-api')
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600)
      .sign(signingKey);

  it('accepts a token it signed, as the control', async () => {
    expect((await core.client.withToken(await sign({})).get('/api/v1/me')).status).toBe(200);
  });

  it('refuses an expired token, a wrong signature, alg none, a wrong audience and a wrong issuer', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bad = {
      expired: await sign({ exp: now - 5 }),
      'wrong signature': await sign({}, deriveKey('another-secret-entirely-0123456789', 'jwt')),
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: userId, name: 'admin', roles: ['admin'], iss: 'aiplat', aud: 'aiplat-api', exp: now + 600 })}.`,
      'wrong audience': await sign({ aud: 'someone-else' }),
      'wrong issuer': await sign({ iss: 'evil' }),
      'tampered payload': (await sign({})).replace(/\.([^.]+)\./, (_m, p: string) => `.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'other' })}.`),
      garbage: 'not-a-token',
    };
    for (const [label, token] of Object.entries(bad)) {
      const res = await core.client.withToken(token).get('/api/v1/me');
      expect(res.status, label).toBe(401);
      expect(res.body.error.code, label).toBe('unauthenticated');
    }
  });

  it('refuses a refresh token after logout, and a reused one revokes its whole family', async () => {
    const anon = core.client.anonymous();
    const first = (await anon.post('/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).body;
    expect((await anon.post('/api/v1/auth/logout', { refreshToken: first.refreshToken })).status).toBe(204);
    expect((await anon.post('/api/v1/auth/refresh', { refreshToken: first.refreshToken })).status).toBe(401);

    const second = (await anon.post('/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).body;
    const rotated = await anon.post('/api/v1/auth/refresh', { refreshToken: second.refreshToken });
    expect(rotated.status).toBe(200);
    const reused = await anon.post('/api/v1/auth/refresh', { refreshToken: second.refreshToken });
    expect(reused.status).toBe(401);
    expect(reused.body.error.message).toMatch(/already used/);
    // The thief's reuse ended the rightful holder's chain too.
    expect((await anon.post('/api/v1/auth/refresh', { refreshToken: rotated.body.refreshToken })).status).toBe(401);
  });
});
