/**
 * The signed-in session, shared by the shell and every plugin remote (the SDK's web part is a
 * shared singleton, so there is exactly one). Tokens come from `POST /api/v1/auth/login`; the access
 * token is refreshed shortly before it expires, and on a 401, by `POST /api/v1/auth/refresh` (which
 * rotates the refresh token). The session survives a reload in localStorage.
 */
import { reactive, readonly } from 'vue';
import { withBase } from './boot.ts';
import { ApiError, apiErrorOf as parseError, errorMessagesReady } from './errors.ts';

export interface SessionUser {
  id: string;
  username: string;
  displayName: string | null;
  /** Global roles. */
  roles: string[];
  /** Every permission held anywhere (globally or in a team). */
  permissions: string[];
  teams: { id: string; name: string; roles: string[] }[];
  /** Permissions per team id. */
  teamPermissions: Record<string, string[]>;
  defaultTeam: string | null;
}

interface MeResponse {
  user: { id: string; username: string; displayName: string | null; roles: string[] };
  teams: { id: string; name: string; roles: string[] }[];
  permissions: string[];
  teamPermissions: Record<string, string[]>;
  defaultTeam: string | null;
}

interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

interface SessionState {
  accessToken: string | null;
  refreshToken: string | null;
  /** Epoch milliseconds the access token expires at. */
  expiresAt: number;
  user: SessionUser | null;
}

const STORAGE_KEY = 'aiplat.session';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 30_000;

function load(): SessionState {
  try {
    const raw = typeof localStorage === 'undefined' ? null : localStorage.getItem(STORAGE_KEY);
    if (raw) return { user: null, ...(JSON.parse(raw) as Omit<SessionState, 'user'>) };
  } catch {
    /* a damaged entry is the same as none */
  }
  return { accessToken: null, refreshToken: null, expiresAt: 0, user: null };
}

const state = reactive<SessionState>(load());
const endListeners = new Set<(reason: 'signed-out' | 'expired') => void>();
let refreshing: Promise<void> | null = null;

function persist(): void {
  if (typeof localStorage === 'undefined') return;
  if (!state.refreshToken) localStorage.removeItem(STORAGE_KEY);
  else localStorage.setItem(STORAGE_KEY, JSON.stringify({ accessToken: state.accessToken, refreshToken: state.refreshToken, expiresAt: state.expiresAt }));
}

function apply(pair: TokenPair): void {
  state.accessToken = pair.accessToken;
  state.refreshToken = pair.refreshToken;
  state.expiresAt = Date.now() + pair.expiresIn * 1000;
  persist();
}

async function postJson(path: string, payload: unknown, token?: string): Promise<Response> {
  try {
    return await fetch(withBase(path), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(payload),
    });
  } catch (error) {
    await errorMessagesReady();
    throw new ApiError(0, 'network', (error as Error).message);
  }
}

function end(reason: 'signed-out' | 'expired'): void {
  state.accessToken = null;
  state.refreshToken = null;
  state.expiresAt = 0;
  state.user = null;
  persist();
  for (const listener of endListeners) listener(reason);
}

export const session = {
  /** Read-only view of the session (reactive). */
  state: readonly(state),

  get signedIn(): boolean {
    return state.refreshToken !== null;
  },

  async login(username: string, password: string): Promise<void> {
    const res = await postJson('/api/v1/auth/login', { username, password });
    if (!res.ok) throw await parseError(res);
    apply((await res.json()) as TokenPair);
    await session.loadUser();
  },

  /** Take over tokens from another way of signing in (single sign-on), then load the user. */
  async adopt(pair: TokenPair): Promise<SessionUser> {
    apply(pair);
    return session.loadUser();
  },

  /** Finish single sign-on: trade the one-time code from `/login/sso?code=` for tokens (`POST /api/v1/auth/oidc/exchange`). */
  async signInWithSsoCode(code: string): Promise<SessionUser> {
    const res = await postJson('/api/v1/auth/oidc/exchange', { code });
    if (!res.ok) throw await parseError(res);
    return session.adopt((await res.json()) as TokenPair);
  },

  /** Trade the refresh token for a new pair; one refresh at a time however many callers ask. */
  refresh(): Promise<void> {
    refreshing ??= (async () => {
      try {
        if (!state.refreshToken) throw new ApiError(401, 'unauthenticated', 'Not signed in');
        const res = await postJson('/api/v1/auth/refresh', { refreshToken: state.refreshToken });
        if (!res.ok) {
          const error = await parseError(res);
          if (res.status === 401 || res.status === 400) end('expired');
          throw error;
        }
        apply((await res.json()) as TokenPair);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  },

  /** A valid access token, refreshed first when it is about to expire. */
  async accessToken(): Promise<string> {
    if (!state.refreshToken) throw new ApiError(401, 'unauthenticated', 'Not signed in');
    if (!state.accessToken || Date.now() > state.expiresAt - REFRESH_MARGIN_MS) await session.refresh();
    return state.accessToken!;
  },

  /** Who is signed in, their teams and what they may do (`GET /api/v1/me`). */
  async loadUser(): Promise<SessionUser> {
    const token = await session.accessToken();
    let res: Response;
    try {
      res = await fetch(withBase('/api/v1/me'), { headers: { authorization: `Bearer ${token}` } });
    } catch (error) {
      throw new ApiError(0, 'network', (error as Error).message);
    }
    if (res.status === 401) {
      end('expired');
      throw await parseError(res);
    }
    if (!res.ok) throw await parseError(res);
    const me = (await res.json()) as MeResponse;
    state.user = {
      id: me.user.id,
      username: me.user.username,
      displayName: me.user.displayName,
      roles: me.user.roles,
      permissions: me.permissions,
      teams: me.teams,
      teamPermissions: me.teamPermissions,
      defaultTeam: me.defaultTeam,
    };
    return state.user;
  },

  async logout(): Promise<void> {
    const refreshToken = state.refreshToken;
    const token = state.accessToken;
    end('signed-out');
    if (refreshToken) await postJson('/api/v1/auth/logout', { refreshToken }, token ?? undefined).catch(() => undefined);
  },

  /** Called when the session ends (signed out here, or the refresh token was refused). */
  onEnd(listener: (reason: 'signed-out' | 'expired') => void): () => void {
    endListeners.add(listener);
    return () => endListeners.delete(listener);
  },

  /** Whether the signed-in user holds a permission: anywhere, or (with `teamId`) for one team's objects. */
  can(permission: string, teamId?: string): boolean {
    const user = state.user;
    if (!user) return false;
    if (user.roles.includes('admin')) return true;
    if (teamId === undefined) return user.permissions.includes(permission);
    return (user.teamPermissions[teamId] ?? []).includes(permission);
  },
};

export { parseError };
