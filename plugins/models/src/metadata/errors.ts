import path from 'node:path';

/**
 * The error every metadata reader throws for a file or folder it cannot read: a bad header, a
 * truncated file, a name that leaves the model folder. `message` is written for the person who gave
 * the file (it names the file and says what is wrong); `file` is the path concerned.
 */
export class ModelMetadataError extends Error {
  override readonly name = 'ModelMetadataError';
  constructor(
    message: string,
    /** The file or folder the message is about. */
    readonly file: string,
  ) {
    super(message);
  }
}

/**
 * Resolves `name` (a relative path read from a model's own files, such as a shard named in
 * `model.safetensors.index.json`) inside `root`, refusing absolute paths, `..` segments, backslashes
 * and NUL bytes with a clear message.
 */
export function resolveInside(root: string, name: string, context: string): string {
  const bad =
    name === '' ||
    name.includes('\0') ||
    name.includes('\\') ||
    path.isAbsolute(name) ||
    name.split('/').some((segment) => segment === '..');
  if (bad) {
    throw new ModelMetadataError(
      `${context} names the file ${JSON.stringify(name)}, which is not a plain relative path inside ${root} ` +
        `(no "..", no absolute path, no backslash): refused`,
      path.join(root, context),
    );
  }
  const resolved = path.resolve(root, name);
  const rel = path.relative(root, resolved);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new ModelMetadataError(`${context} names ${JSON.stringify(name)}, which lies outside ${root}: refused`, resolved);
  }
  return resolved;
}

/** Multiplies shape dimensions, checking that the product stays an exact JavaScript number. */
export function elementCount(shape: readonly number[], file: string, tensor: string): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) {
    throw new ModelMetadataError(`${file}: tensor ${JSON.stringify(tensor)} has shape [${shape.join(', ')}], too many elements to count`, file);
  }
  return n;
}
