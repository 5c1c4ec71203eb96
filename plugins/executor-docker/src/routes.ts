/**
 * Image routes, per node (`/api/plugins/executor-docker/nodes/:node/images...`): the images of the
 * engine a node's docker replicas run on. A node added as a remote Docker host uses its host's
 * engine; the core's own node and its simulated nodes use the core's engine.
 *
 * Pull, import and delete run outside a database transaction (`mutates: false`): a pull or an
 * import of many GiB must not hold the embedded database's only connection for minutes. Each
 * writes its own audit row (`executor-docker:images.pull`, `.import`, `.delete`), success or not.
 */
import { AiplatError, json, raw, reply, type PluginRegisterEnv, type RouteContext } from '@aiplat/plugin-sdk';
import { REMOTE_LABEL, type Engine } from './engine.js';
import type { DockerExecutor } from './executor.js';
import { IMAGE_ID, IMAGE_REFERENCE_PATTERN, importImages, isImageReference, listImages, pullImage, removeImage, type ImageSummary } from './images.js';

export interface ImageRouteDeps {
  executor(ctx: RouteContext<any, any, any>): DockerExecutor;
  /** Settings of the plugin now. */
  limits(ctx: RouteContext<any, any, any>): { importMaxBytes: number; pullStallMs: number };
}

/** The route's own cap; the `importMaxGiB` setting is enforced below it while the file streams. */
const IMPORT_ROUTE_LIMIT = 2 ** 40;
const IMPORT_TYPES = ['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip', 'application/octet-stream'];

const nodeParam = { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\s/]+$' };
const imageSummarySchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } },
    sizeBytes: { type: 'integer' },
    createdAt: { type: 'string', format: 'date-time' },
  },
};

interface NodeRow {
  id: string;
  provider: string;
  state: string;
  executors: string[] | string;
  labels: Record<string, string> | string | null;
}

function parsed<T>(value: T | string | null | undefined, fallback: T): T {
  if (typeof value === 'string') {
    try {
      return JSON.parse(value) as T;
    } catch {
      return fallback;
    }
  }
  return value ?? fallback;
}

/**
 * The engine of a node's docker replicas, or why there is none: a node added as a Docker host
 * (`provider` `connector:docker`) uses its host's client; the core's own node and its simulated
 * nodes (`local`, `simulated`) the core's engine.
 */
async function engineOfNode(ctx: RouteContext<any, any, { node: string }>, deps: ImageRouteDeps): Promise<Engine> {
  const nodeId = ctx.params.node;
  const row = (await ctx.db('nodes').where({ id: nodeId }).first('id', 'provider', 'state', 'executors', 'labels')) as NodeRow | undefined;
  if (!row || row.state === 'removed') throw new AiplatError('not_found', `there is no node ${nodeId} (GET /api/v1/nodes lists them)`);
  const executor = deps.executor(ctx);
  const labels = parsed<Record<string, string>>(row.labels, {});
  if (row.provider === 'connector:docker' || labels[REMOTE_LABEL]) {
    const host = executor.hosts.get(nodeId);
    if (host) return host.engine;
    const url = labels[REMOTE_LABEL];
    throw new AiplatError(
      'node_unreachable',
      `node ${nodeId} is ${url ? `the Docker host ${url}` : 'a Docker host'}, which this core has not connected (it connects the nodes it follows at every discovery round; GET /api/v1/nodes says why one is not ready)`,
    );
  }
  const executors = parsed<string[]>(row.executors, []);
  if (!executors.includes('docker')) throw new AiplatError('not_found', `node ${nodeId} is not a Docker node: it runs ${executors.join(', ') || 'no executor'}, not docker`);
  if (row.provider === 'local' || row.provider === 'simulated') return executor.localEngine();
  throw new AiplatError('not_found', `node ${nodeId} is not a Docker node of this plugin (it comes from ${row.provider})`);
}

/** Writes the route's audit row, then returns or rethrows. */
async function audited<T>(ctx: RouteContext<any, any, any>, action: string, details: Record<string, unknown>, work: () => Promise<T>, resourceOf: (result: T) => string | undefined): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (error) {
    await ctx
      .audit(action, { ...details, error: (error as Error).message }, { resource: { type: 'docker-image', id: details.reference as string | undefined }, outcome: 'failure' })
      .catch((auditError: unknown) => ctx.log.error({ err: auditError }, 'cannot write the audit row of a failed image action'));
    throw error;
  }
  await ctx.audit(action, details, { resource: { type: 'docker-image', id: resourceOf(result) } });
  return result;
}

export function registerImageRoutes(env: PluginRegisterEnv, deps: ImageRouteDeps): void {
  env.route({
    method: 'GET',
    path: '/nodes/:node/images',
    summary: "The images on a node's Docker engine",
    tags: ['executor-docker'],
    permission: 'nodes:read',
    params: { type: 'object', properties: { node: nodeParam }, required: ['node'] },
    responses: { 200: { description: 'its images', schema: { type: 'object', properties: { items: { type: 'array', items: imageSummarySchema } } } } },
    handler: async (ctx: RouteContext<undefined, Record<string, never>, { node: string }>) => ({ items: await listImages(await engineOfNode(ctx, deps)) }),
  });

  env.route({
    method: 'POST',
    path: '/nodes/:node/images/pull',
    summary: "Pull an image from a registry onto a node's Docker engine",
    description: 'Fails with 503 when the registry cannot be reached from the engine (offline sites: import a docker save file instead).',
    tags: ['executor-docker'],
    permission: 'nodes:manage',
    mutates: false,
    audit: 'explicit',
    params: { type: 'object', properties: { node: nodeParam }, required: ['node'] },
    body: json({
      type: 'object',
      additionalProperties: false,
      required: ['reference'],
      properties: { reference: { type: 'string', minLength: 1, maxLength: 255, pattern: IMAGE_REFERENCE_PATTERN } },
    }),
    responses: { 201: { description: 'the image, all there', schema: { type: 'object', properties: { image: imageSummarySchema } } } },
    handler: async (ctx: RouteContext<{ reference: string }, Record<string, never>, { node: string }>) => {
      const { reference } = ctx.body;
      if (!isImageReference(reference)) throw new AiplatError('validation_failed', `"${reference}" is not an image reference (name[:tag][@digest])`);
      const engine = await engineOfNode(ctx, deps);
      const image = await audited(
        ctx,
        'images.pull',
        { node: ctx.params.node, reference },
        () => pullImage(engine, reference, { stallMs: deps.limits(ctx).pullStallMs }),
        (i) => i.id,
      );
      return reply(201, { image });
    },
  });

  env.route({
    method: 'POST',
    path: '/nodes/:node/images/import',
    summary: "Import images from a file into a node's Docker engine",
    description:
      'The body is what `docker save` writes (tar, or gzip of one): its images are loaded. With `?reference=name:tag` it is a root file system tarball instead, imported as that image (`docker import`).',
    tags: ['executor-docker'],
    permission: 'nodes:manage',
    mutates: false,
    audit: 'explicit',
    params: { type: 'object', properties: { node: nodeParam }, required: ['node'] },
    query: { type: 'object', additionalProperties: false, properties: { reference: { type: 'string', minLength: 1, maxLength: 255, pattern: IMAGE_REFERENCE_PATTERN } } },
    body: raw({ limit: IMPORT_ROUTE_LIMIT, contentTypes: IMPORT_TYPES, stream: true }),
    responses: { 201: { description: 'the images it held', schema: { type: 'object', properties: { images: { type: 'array', items: imageSummarySchema } } } } },
    handler: async (ctx: RouteContext<undefined, { reference?: string }, { node: string }>) => {
      const { reference } = ctx.query;
      if (reference !== undefined && (!isImageReference(reference) || reference.includes('@'))) {
        throw new AiplatError('validation_failed', `"${reference}" is not a name[:tag] to import the file as`);
      }
      const { importMaxBytes } = deps.limits(ctx);
      const declared = Number(ctx.headers['content-length'] ?? 0);
      if (declared > importMaxBytes) {
        throw new AiplatError('payload_too_large', `the file has ${declared} bytes, more than the ${importMaxBytes} this plugin accepts (its importMaxGiB setting)`);
      }
      const engine = await engineOfNode(ctx, deps);
      const images = await audited<ImageSummary[]>(
        ctx,
        'images.import',
        { node: ctx.params.node, ...(reference ? { reference } : {}), bytes: declared || undefined },
        () => importImages(engine, ctx.bodyStream!, { maxBytes: importMaxBytes, ...(reference ? { reference } : {}) }),
        (list) => list.map((i) => i.id).join(','),
      );
      return reply(201, { images });
    },
  });

  env.route({
    method: 'DELETE',
    path: '/nodes/:node/images/:image',
    summary: "Remove an image from a node's Docker engine",
    description: 'By id (sha256:...) the image with all its tags; by name:tag (URL-encoded) that tag. 409 while a container uses it.',
    tags: ['executor-docker'],
    permission: 'nodes:manage',
    mutates: false,
    audit: 'explicit',
    params: {
      type: 'object',
      required: ['node', 'image'],
      properties: { node: nodeParam, image: { type: 'string', minLength: 1, maxLength: 255, pattern: IMAGE_REFERENCE_PATTERN } },
    },
    handler: async (ctx: RouteContext<undefined, Record<string, never>, { node: string; image: string }>) => {
      const { image } = ctx.params;
      if (!IMAGE_ID.test(image) && !isImageReference(image)) throw new AiplatError('validation_failed', `"${image}" is neither an image id nor a name:tag`);
      const engine = await engineOfNode(ctx, deps);
      await audited(
        ctx,
        'images.delete',
        { node: ctx.params.node, reference: image },
        () => removeImage(engine, image),
        () => image,
      );
      return undefined;
    },
  });
}
