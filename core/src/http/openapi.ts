import { routeMutates, type JsonSchema, type RouteDefinition } from '@aiplat/plugin-sdk';
import { closeObjects } from './validation.js';

export interface RouteGroup {
  /** The mount prefix: `/api/v1` for the core, `/api/plugins/<id>` for a plugin, or an alias. */
  prefix: string;
  owner: string;
  routes: RouteDefinition[];
}

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {}, requestId: { type: 'string' } },
    },
  },
};

function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)(\([^)]*\))?\??/g, '{$1}');
}

function pathParams(path: string, schema: JsonSchema | undefined): unknown[] {
  const names = [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
  const props = (schema?.properties ?? {}) as Record<string, JsonSchema>;
  return names.map((name) => ({ name, in: 'path', required: true, schema: props[name] ?? { type: 'string' } }));
}

function queryParams(schema: JsonSchema | undefined): unknown[] {
  if (!schema) return [];
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  return Object.entries(props).map(([name, s]) => ({ name, in: 'query', required: required.has(name), schema: s }));
}

/** OpenAPI 3.1 of the core's and the enabled plugins' routes, built from the same schemas that validate requests. */
export function buildOpenApi(groups: RouteGroup[], info: { version: string; serverUrl?: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const group of groups) {
    for (const route of group.routes) {
      const full = toOpenApiPath(`${group.prefix}${route.path === '/' ? '' : route.path}`) || '/';
      const body = route.body;
      const requestBody =
        body?.mode === 'json'
          ? { required: true, content: { 'application/json': { schema: closeObjects(body.schema) } } }
          : body?.mode === 'raw'
            ? { required: true, content: Object.fromEntries((body.contentTypes ?? ['application/octet-stream']).map((t) => [t, { schema: { type: 'string', format: 'binary' } }])) }
            : body?.mode === 'multipart'
              ? { required: true, content: { 'multipart/form-data': { schema: { type: 'object' } } } }
              : undefined;
      const responses: Record<string, unknown> = {};
      for (const [status, r] of Object.entries(route.responses ?? {})) {
        responses[status] = { description: r.description, ...(r.schema ? { content: { 'application/json': { schema: r.schema } } } : {}) };
      }
      if (Object.keys(responses).length === 0) responses['200'] = { description: 'OK' };
      responses['4XX'] = { description: 'Client error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
      const operation: Record<string, unknown> = {
        operationId: `${group.owner}.${route.method.toLowerCase()}${full.replace(/[^A-Za-z0-9]+/g, '_')}`,
        tags: route.tags ?? [group.owner],
        summary: route.summary,
        description: route.description,
        parameters: [...pathParams(route.path, route.params), ...queryParams(route.query)],
        ...(requestBody ? { requestBody } : {}),
        responses,
        security: route.permission ? [{ bearer: [] }] : [],
        'x-aiplat-auth': route.permission ? { permission: route.permission } : route.public ? { public: route.public.reason } : { custom: route.custom!.reason },
        'x-aiplat-mutates': routeMutates(route),
      };
      (paths[full] ??= {})[route.method.toLowerCase()] = operation;
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'aiplat API', version: info.version },
    ...(info.serverUrl ? { servers: [{ url: info.serverUrl }] } : {}),
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: errorSchema },
    },
  };
}
