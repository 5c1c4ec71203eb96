import { definePlugin } from '@aiplat/plugin-sdk';
import { greetingHook } from '@aiplat-examples/hello/api';

export default definePlugin({
  register(env) {
    env.tap(greetingHook, (greeting) => greeting.toUpperCase());
  },
});
