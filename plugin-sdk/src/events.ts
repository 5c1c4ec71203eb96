/**
 * The event stream: plugins publish, the core delivers in process (and through Redis pub/sub
 * across core processes when REDIS_URL is set) and to WebSocket clients of `/api/v1/stream`.
 */

export interface StreamEvent<T = unknown> {
  topic: string;
  /** Per-topic sequence number, increasing by one per event: the replay cursor. */
  seq: number;
  /** RFC 3339 UTC time of publishing. */
  at: string;
  payload: T;
}

/** Who may see an event. Without any of these, every signed-in user may. */
export interface EventAudience {
  /** Only members of this team (and admins). */
  team?: string;
  /** Only callers holding this permission. */
  permission?: string;
  /** Only this user (and admins), e.g. the owner of an operation. */
  user?: string;
}

export interface EventSubscription {
  unsubscribe(): void;
}

/**
 * Told to a subscriber that asked for a replay it cannot fully have: `gap` when events `from`–`to`
 * are older than the retention window (they are lost to it), `reset` when its cursor is ahead of
 * the topic (the topic's numbering restarted; `seq` is the topic's latest). Reload state from the
 * owner's API in both cases.
 */
export type EventGap =
  | { kind: 'gap'; topic: string; from: number; to: number }
  | { kind: 'reset'; topic: string; seq: number };

export interface EventBus {
  /**
   * Publish to a topic. A plugin publishes to topics named `<plugin id>.<name>`, optionally with
   * `/`-separated sub-topics (`training.runs/42/logs`). Resolves with the event's sequence number.
   * Throws at once for a topic the caller does not own, a payload that is not JSON or is larger
   * than 64 KiB as JSON; rejects when the transport (Redis) fails.
   */
  publish<T>(topic: string, payload: T, audience?: EventAudience): Promise<number>;
  /**
   * Receive a topic's events in order, starting after `since` when given (replayed from the
   * retention window), else with the next event published. `onGap` hears of events a replay
   * could not deliver. Any topic may be subscribed to; subscriptions end when the plugin stops.
   */
  subscribe<T>(
    topic: string,
    handler: (event: StreamEvent<T>) => void,
    options?: { since?: number; onGap?: (gap: EventGap) => void },
  ): EventSubscription;
}

export const TOPIC_PATTERN = '^[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)?(/[A-Za-z0-9._-]+)*$';

/** Topics the core publishes. */
export const coreTopics = {
  /** Every plugin state change: `{ id, state, reason? }`. Needs `plugins:read`. */
  plugins: 'plugins',
  /** Operation progress and results: the operation itself. Its owner and admins see it. */
  operations: 'operations',
  /** The web shell's contributions changed (a plugin with a UI was enabled or disabled): `{ pluginId, state }`. Every signed-in user sees it. */
  ui: 'ui',
  /** Nodes added, removed, changed by an administrator, or gone not ready / ready again: `{ ids }`. Needs `nodes:read`. */
  nodes: 'nodes',
} as const;
