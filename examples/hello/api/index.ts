/**
 * The contract of the hello plugin: what other plugins may import instead of the plugin itself.
 */
import { defineWaterfallHook } from '@aiplat/plugin-sdk';

export interface GreetingContext {
  /** The name being greeted. */
  name: string;
}

/** Each tap receives the greeting so far and returns the greeting to use. */
export const greetingHook = defineWaterfallHook<string, [GreetingContext]>('hello.greeting');

/** The topic hello publishes each recorded greeting on (after it commits); stream clients need `greetings:read`. */
export const GREETINGS_TOPIC = 'hello.greetings';

/** The payload of a {@link GREETINGS_TOPIC} event. */
export interface GreetingEvent {
  name: string;
  greeting: string;
  /** How many times this name has been greeted, this greeting included. */
  count: number;
}
