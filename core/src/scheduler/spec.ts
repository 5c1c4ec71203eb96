import type { JsonSchema, WorkloadSpec } from '@aiplat/plugin-sdk';

const NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';
const PORT_NAME = '^[a-z][a-z0-9-]{0,14}$';
const LABEL_KEY = '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$';

const labels = {
  type: 'object',
  maxProperties: 32,
  propertyNames: { pattern: LABEL_KEY },
  additionalProperties: { type: 'string', maxLength: 256 },
};

/** The workload spec (ARCHITECTURE §5) as the API takes it. `command` is argv: never run by a shell. */
export const workloadSpecSchema: JsonSchema = {
  type: 'object',
  required: ['name', 'command'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: NAME, description: 'letters, digits, ".", "_" and "-"; at most 63' },
    kind: { enum: ['job', 'service'], default: 'job' },
    team: { type: 'string', minLength: 1, maxLength: 100, description: "the team it belongs to; the submitter's default team when absent" },
    executor: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,39}$', default: 'local' },
    image: { type: 'string', minLength: 1, maxLength: 500 },
    command: {
      type: 'array',
      minItems: 1,
      maxItems: 1000,
      items: { type: 'string', maxLength: 65536 },
      description: 'argv: the first item is the program; nothing is interpreted by a shell',
    },
    env: {
      type: 'object',
      maxProperties: 200,
      propertyNames: { pattern: ENV_NAME },
      additionalProperties: { type: 'string', maxLength: 65536 },
    },
    workingDir: { type: 'string', minLength: 1, maxLength: 4096 },
    mounts: {
      type: 'array',
      maxItems: 50,
      items: {
        type: 'object',
        required: ['source', 'target'],
        additionalProperties: false,
        properties: {
          source: { type: 'string', minLength: 1, maxLength: 4096 },
          target: { type: 'string', minLength: 1, maxLength: 4096 },
          readOnly: { type: 'boolean' },
        },
      },
    },
    resources: {
      type: 'object',
      additionalProperties: false,
      properties: {
        gpus: { type: 'integer', minimum: 0, maximum: 64, description: 'whole cards per replica' },
        gpuMemoryMiB: { type: 'integer', minimum: 1, maximum: 1048576, description: 'a slice of one shared card' },
        cpu: { type: 'number', exclusiveMinimum: 0, maximum: 1024 },
        memoryMiB: { type: 'integer', minimum: 1, maximum: 16777216 },
      },
    },
    replicas: { type: 'integer', minimum: 1, maximum: 256, default: 1 },
    priority: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,39}$', default: 'normal' },
    retries: { type: 'integer', minimum: 0, maximum: 100, default: 0 },
    timeoutSeconds: { type: 'integer', minimum: 1, maximum: 31536000 },
    ports: {
      type: 'array',
      maxItems: 16,
      items: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: { type: 'string', pattern: PORT_NAME }, containerPort: { type: 'integer', minimum: 1, maximum: 65535 } },
      },
    },
    readiness: {
      type: 'object',
      additionalProperties: false,
      properties: {
        httpGet: {
          type: 'object',
          required: ['port', 'path'],
          additionalProperties: false,
          properties: { port: { type: 'string', pattern: PORT_NAME }, path: { type: 'string', pattern: '^/', maxLength: 2000 } },
        },
        tcpSocket: { type: 'object', required: ['port'], additionalProperties: false, properties: { port: { type: 'string', pattern: PORT_NAME } } },
        initialDelaySeconds: { type: 'number', minimum: 0, maximum: 3600 },
        periodSeconds: { type: 'number', minimum: 0.1, maximum: 3600 },
        timeoutSeconds: { type: 'number', minimum: 0.1, maximum: 600 },
        failureThreshold: { type: 'integer', minimum: 1, maximum: 1000 },
      },
    },
    restartPolicy: { enum: ['always', 'on-failure', 'never'] },
    nodeSelector: labels,
    labels,
  },
};

/** Problems a schema cannot express, each a sentence a person can act on. */
export function specProblems(spec: WorkloadSpec): string[] {
  const problems: string[] = [];
  const kind = spec.kind ?? 'job';
  const gpus = spec.resources?.gpus ?? 0;
  if (spec.resources?.gpuMemoryMiB !== undefined && gpus > 1) {
    problems.push('resources.gpuMemoryMiB asks for a slice of ONE shared card: use it with gpus 0 or 1, or ask for whole cards with gpus alone');
  }
  if (kind === 'job') {
    if (spec.ports?.length) problems.push('ports are for services (kind "service"); a job has none');
    if (spec.readiness) problems.push('readiness is for services (kind "service"); a job has none');
    if (spec.restartPolicy) problems.push('restartPolicy is for services; a job uses retries');
  }
  const portNames = new Set<string>();
  for (const port of spec.ports ?? []) {
    if (portNames.has(port.name)) problems.push(`port "${port.name}" is named twice`);
    portNames.add(port.name);
  }
  const readinessPort = spec.readiness?.httpGet?.port ?? spec.readiness?.tcpSocket?.port;
  if (readinessPort !== undefined && !portNames.has(readinessPort)) problems.push(`readiness checks port "${readinessPort}", which is not among the service's ports`);
  if (spec.readiness && !spec.readiness.httpGet && !spec.readiness.tcpSocket) problems.push('readiness needs httpGet or tcpSocket');
  if (spec.readiness?.httpGet && spec.readiness.tcpSocket) problems.push('readiness takes httpGet or tcpSocket, not both');
  for (const reserved of ['CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK', 'MASTER_ADDR', 'MASTER_PORT']) {
    if (spec.env && reserved in spec.env) problems.push(`env ${reserved} is set by the scheduler; remove it from the spec`);
  }
  return problems;
}

/** The spec with defaults filled in, as stored. */
export function normaliseSpec(spec: WorkloadSpec, team: string): WorkloadSpec {
  return {
    ...spec,
    kind: spec.kind ?? 'job',
    team,
    executor: spec.executor ?? 'local',
    replicas: spec.replicas ?? 1,
    priority: spec.priority ?? 'normal',
    retries: spec.retries ?? 0,
    env: spec.env ?? {},
    resources: { gpus: spec.resources?.gpus ?? 0, ...spec.resources },
    ...(spec.kind === 'service' ? { restartPolicy: spec.restartPolicy ?? 'always' } : {}),
  };
}
