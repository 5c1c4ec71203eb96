import type { JsonSchema } from '@aiplat/plugin-sdk';
import { isSecretMarker, type SecretMarker } from './crypto.js';

export type SettingPath = readonly string[];

/** The paths of the fields a settings schema marks `"x-secret": true` (through nested object properties). */
export function secretPaths(schema: JsonSchema | undefined, prefix: SettingPath = []): SettingPath[] {
  const properties = schema?.properties;
  if (typeof properties !== 'object' || properties === null) return [];
  const out: SettingPath[] = [];
  for (const [name, sub] of Object.entries(properties as Record<string, JsonSchema>)) {
    if (typeof sub !== 'object' || sub === null) continue;
    if (sub['x-secret'] === true) out.push([...prefix, name]);
    else out.push(...secretPaths(sub, [...prefix, name]));
  }
  return out;
}

/** `smtp.password` for display and for the API's `secrets` report. */
export function pathName(path: SettingPath): string {
  return path.join('.');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function getAt(value: unknown, path: SettingPath): unknown {
  let current = value;
  for (const key of path) {
    if (!isPlainObject(current) || !Object.hasOwn(current, key)) return undefined;
    current = current[key];
  }
  return current;
}

export function setAt(target: Record<string, unknown>, path: SettingPath, value: unknown): void {
  let current = target;
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(current[key])) current[key] = {};
    current = current[key] as Record<string, unknown>;
  }
  current[path[path.length - 1]!] = value;
}

export function deleteAt(target: Record<string, unknown>, path: SettingPath): void {
  const parent = getAt(target, path.slice(0, -1));
  if (isPlainObject(parent)) delete parent[path[path.length - 1]!];
}

/** Every stored secret in a settings object, wherever it is (no schema needed: plugins may be gone). */
export function findSecretMarkers(value: unknown, prefix: SettingPath = []): { path: SettingPath; marker: SecretMarker }[] {
  if (isSecretMarker(value)) return [{ path: prefix, marker: value }];
  if (!isPlainObject(value)) return [];
  return Object.entries(value).flatMap(([key, sub]) => findSecretMarkers(sub, [...prefix, key]));
}

/** A copy of `value` with every secret marker replaced by `fn(path, marker)`. */
export function mapSecretMarkers(value: unknown, fn: (path: SettingPath, marker: SecretMarker) => unknown, prefix: SettingPath = []): unknown {
  if (isSecretMarker(value)) return fn(prefix, value);
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([key, sub]) => [key, mapSecretMarkers(sub, fn, [...prefix, key])]));
}
