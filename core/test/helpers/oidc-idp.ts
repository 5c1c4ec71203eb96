/**
 * A real OpenID provider for tests (the npm package oidc-provider) on a random local port, with
 * one confidential client that must use PKCE, accounts whose claims a test may change between
 * sign-ins, and the package's development login and consent forms (any password is accepted;
 * the login names the account). Also a tiny cookie jar and a driver that walks those forms over
 * plain HTTP, redirect by redirect, as a browser would.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface TestAccount {
  preferred_username?: string;
  name?: string;
  email?: string;
  groups?: string[];
  [claim: string]: unknown;
}

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Account id (what the login form takes) → claims; change them between sign-ins. */
  accounts: Map<string, TestAccount>;
  /** Create the provider with its client, once the relying party's callback URL is known. */
  register(redirectUri: string): void;
  stop(): Promise<void>;
}

export async function startTestIdp(options: { clientId?: string; clientSecret?: string } = {}): Promise<TestIdp> {
  let handler: http.RequestListener | undefined;
  const server = http.createServer((req, res) => {
    if (handler) return handler(req, res);
    res.statusCode = 503;
    res.end('the test identity provider has no client yet');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const accounts = new Map<string, TestAccount>();
  const clientId = options.clientId ?? 'aiplat-test';
  const clientSecret = options.clientSecret ?? 'test-client-secret-0123456789abcdef';
  return {
    issuer,
    clientId,
    clientSecret,
    accounts,
    register(redirectUri) {
      const provider = new Provider(issuer, {
        clients: [
          {
            client_id: clientId,
            client_secret: clientSecret,
            redirect_uris: [redirectUri],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ],
        pkce: { required: () => true },
        claims: {
          openid: ['sub'],
          profile: ['preferred_username', 'name', 'department'],
          email: ['email', 'email_verified'],
          groups: ['groups'],
        },
        features: { devInteractions: { enabled: true } },
        cookies: { keys: ['test-idp-cookie-key-0123456789'] },
        ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 },
        findAccount: (_ctx, id) => {
          if (!accounts.has(id)) return undefined;
          return { accountId: id, claims: () => ({ sub: id, ...accounts.get(id)!, email_verified: true }) };
        },
      });
      handler = provider.callback();
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Cookies by name, for every host (a browser would not separate two ports of 127.0.0.1 either). */
export class CookieJar {
  private readonly cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=.*1970/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  has(name: string): boolean {
    return this.cookies.has(name);
  }
}

/** One request without following redirects, with and into the jar. */
export async function request(jar: CookieJar, url: string | URL, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
  const response = await fetch(url, {
    method: init.method ?? (init.form ? 'POST' : 'GET'),
    redirect: 'manual',
    headers: { cookie: jar.header(), ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: init.form ? new URLSearchParams(init.form).toString() : undefined,
  });
  jar.store(response);
  return response;
}

/**
 * Follow redirects from `url`, filling the provider's login form with `login` and accepting its
 * consent form (or, with `abort`, cancelling at the login form), until the next address satisfies
 * `stopAt`; that address is returned without being requested.
 */
export async function walkIdp(jar: CookieJar, url: string | URL, login: string, stopAt: (next: URL) => boolean, options: { abort?: boolean } = {}): Promise<URL> {
  let current = new URL(url);
  let response = await request(jar, current);
  for (let hops = 0; hops < 25; hops++) {
    if (response.status >= 300 && response.status < 400) {
      const next = new URL(response.headers.get('location')!, current);
      if (stopAt(next)) return next;
      current = next;
      response = await request(jar, current);
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) throw new Error(`the identity provider answered ${response.status} at ${current.href}: ${html.slice(0, 500)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
    if (!action || !prompt) throw new Error(`no login or consent form at ${current.href}: ${html.slice(0, 500)}`);
    const submit = new URL(action.replace(/&amp;/g, '&'), current);
    if (prompt === 'login' && options.abort) {
      current = new URL(`${submit.pathname}/abort`, current);
      response = await request(jar, current);
      continue;
    }
    current = submit;
    response = await request(jar, submit, { form: prompt === 'login' ? { prompt, login, password: 'any-password' } : { prompt } });
  }
  throw new Error(`too many redirects from ${String(url)}`);
}
