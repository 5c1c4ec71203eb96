import { TOPIC_PATTERN } from '@aiplat/plugin-sdk';

const TOPIC_RE = new RegExp(TOPIC_PATTERN);

/** Longest topic name accepted (the pattern has no bound of its own). */
export const MAX_TOPIC_LENGTH = 200;

/** Raised for a programming mistake in a publish or subscribe call (bad topic, foreign topic, bad payload). */
export class EventUsageError extends Error {
  override readonly name = 'EventUsageError';
}

export function isTopic(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_TOPIC_LENGTH && TOPIC_RE.test(value);
}

/** Why a value is not a topic name, for error messages. */
export function topicProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'a topic is a string';
  if (value.length > MAX_TOPIC_LENGTH) return `a topic has at most ${MAX_TOPIC_LENGTH} characters`;
  if (!TOPIC_RE.test(value)) return `topic "${value}" does not match ${TOPIC_PATTERN} (e.g. "plugins", "training.runs/42/logs")`;
  return undefined;
}

/**
 * Who owns a topic: the part before the dot (`training` for `training.runs/42`), or `core` for a
 * topic without one (`plugins`, `operations`, `operations/…`).
 */
export function topicOwner(topic: string): string {
  const slash = topic.indexOf('/');
  const head = slash === -1 ? topic : topic.slice(0, slash);
  const dot = head.indexOf('.');
  return dot === -1 ? 'core' : head.slice(0, dot);
}

/**
 * Refuse a publish to a topic the publisher does not own: a plugin publishes only to
 * `<its id>.<name>[/…]`; the core's own bus (`anyTopic`) publishes anywhere.
 */
export function checkPublishTopic(publisher: string, topic: string, anyTopic = false): void {
  const problem = topicProblem(topic);
  if (problem) throw new EventUsageError(`cannot publish: ${problem}`);
  if (anyTopic) return;
  // A topic without a dot is the core's, whatever the publisher calls itself.
  if (!topic.split('/', 1)[0]!.includes('.') || topicOwner(topic) !== publisher) {
    throw new EventUsageError(
      `plugin ${publisher} may publish only to its own topics "${publisher}.<name>" (optionally with /sub-topics), not to "${topic}"`,
    );
  }
}
