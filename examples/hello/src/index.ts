import { coreServices, definePlugin, json, type Knex, type PluginContext } from '@aiplat/plugin-sdk';
import { greetingHook, GREETINGS_TOPIC, type GreetingEvent } from '../api/index.js';
import { greetingStats, listGreetings, listQuerySchema, type ListQuery } from './greetings.js';

export interface HelloConfig {
  greetingWord: string;
}

const nameSchema = { type: 'string', minLength: 1, maxLength: 64 } as const;

const greetingSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    count: { type: 'integer' },
    lastGreeting: { type: 'string' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

/** The greeting, passed through every tap of `hello.greeting` (hello-shout upper-cases it). */
function greet(plugin: PluginContext, name: string): Promise<string> {
  const { greetingWord } = plugin.config as unknown as HelloConfig;
  return plugin.hooks.call(greetingHook, `${greetingWord}, ${name}`, { name });
}

export default definePlugin<HelloConfig>({
  register(env) {
    env.declareHook(greetingHook);

    env.migrations([
      {
        name: '0001_counters',
        async up(db: Knex) {
          await db.schema.createTable('p_hello_counters', (t) => {
            t.text('name').primary();
            t.integer('count').notNullable().defaultTo(0);
            t.text('last_greeting').notNullable();
            t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          });
        },
      },
      {
        // GET /greetings pages by (sort key, name): keep both sorts on an index.
        name: '0002_list_indexes',
        async up(db: Knex) {
          await db.schema.alterTable('p_hello_counters', (t) => {
            t.index(['updated_at', 'name'], 'p_hello_counters_updated_at_name');
            t.index(['count', 'name'], 'p_hello_counters_count_name');
          });
        },
      },
    ]);

    env.route({
      method: 'GET',
      path: '/greeting',
      summary: 'Greet someone',
      permission: 'greetings:read',
      query: { type: 'object', required: ['name'], properties: { name: nameSchema } },
      responses: { 200: { description: 'The greeting', schema: { type: 'object', properties: { greeting: { type: 'string' } } } } },
      handler: async (ctx) => ({ greeting: await greet(ctx.plugin, ctx.query.name) }),
    });

    env.route({
      method: 'POST',
      path: '/greetings',
      summary: 'Greet someone and count how often they were greeted',
      permission: 'greetings:write',
      body: json({ type: 'object', required: ['name'], properties: { name: nameSchema } }),
      responses: {
        200: {
          description: 'The greeting and how many times this name has been greeted',
          schema: { type: 'object', properties: { greeting: { type: 'string' }, count: { type: 'integer' } } },
        },
      },
      handler: async (ctx) => {
        const greeting = await greet(ctx.plugin, ctx.body.name);
        const [row] = (await ctx
          .db('p_hello_counters')
          .insert({ name: ctx.body.name, count: 1, last_greeting: greeting })
          .onConflict('name')
          .merge({ count: ctx.db.raw('p_hello_counters.count + 1'), last_greeting: greeting, updated_at: ctx.db.fn.now() })
          .returning('count')) as { count: number }[];
        const event: GreetingEvent = { name: ctx.body.name, greeting, count: Number(row!.count) };
        // Published only once the count is durable; stream clients holding greetings:read see it.
        ctx.afterCommit(() => ctx.plugin.service(coreServices.events).publish(GREETINGS_TOPIC, event, { permission: 'greetings:read' }));
        return { greeting, count: event.count };
      },
    });

    env.route({
      method: 'GET',
      path: '/greetings',
      summary: 'The names greeted so far, with their counts',
      permission: 'greetings:read',
      query: listQuerySchema,
      responses: {
        200: {
          description: 'A page of greeted names',
          schema: { type: 'object', properties: { items: { type: 'array', items: greetingSchema }, nextCursor: { type: ['string', 'null'] } } },
        },
      },
      handler: (ctx) => listGreetings(ctx.db, ctx.query as ListQuery),
    });

    env.route({
      method: 'GET',
      path: '/stats',
      summary: 'How many names were greeted, and how many greetings in all',
      permission: 'greetings:read',
      responses: {
        200: { description: 'Totals', schema: { type: 'object', properties: { names: { type: 'integer' }, greetings: { type: 'integer' } } } },
      },
      handler: (ctx) => greetingStats(ctx.db),
    });
  },
});
