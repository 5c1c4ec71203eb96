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
