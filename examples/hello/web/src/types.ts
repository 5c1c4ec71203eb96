/** What hello's routes and its `hello.greetings` topic carry (see examples/hello/src and api/). */

/** One row of `GET /greetings`. */
export interface Greeting {
  name: string;
  count: number;
  lastGreeting: string;
  /** RFC 3339, UTC. */
  updatedAt: string;
}

/** `GET /stats`. */
export interface GreetingStats {
  names: number;
  greetings: number;
}

/** `POST /greetings` answers this; the `hello.greetings` event carries it with the name. */
export interface GreetingResult {
  greeting: string;
  count: number;
}

export interface GreetingEvent extends GreetingResult {
  name: string;
}

/** The stream topic hello publishes each recorded greeting on. */
export const GREETINGS_TOPIC = 'hello.greetings';

/** A name is 1 to 64 characters, as the backend's schema says. */
export const NAME_MAX_LENGTH = 64;
