/**
 * Image preview: format and size from the file's head (`image-size` reads headers only), so a
 * 50 MB photo costs one read of at most 512 KB. The caller fills `contentUrl`.
 */
import { open } from 'node:fs/promises';
import { imageSize } from 'image-size';
import { DatasetInspectError, type Preview } from './types.js';

/** How much of the file is read: JPEG's size can sit after a large EXIF block. */
export const IMAGE_HEAD_BYTES = 512 * 1024;

export async function previewImage(file: string, options: { path: string }): Promise<Preview> {
  const handle = await open(file, 'r');
  let head: Uint8Array;
  try {
    const { size } = await handle.stat();
    head = new Uint8Array(Math.min(size, IMAGE_HEAD_BYTES));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  if (head.length === 0) throw new DatasetInspectError(`${options.path} is not an image: the file is empty`, { path: options.path });
  let result: ReturnType<typeof imageSize>;
  try {
    result = imageSize(head);
  } catch (error) {
    throw new DatasetInspectError(`${options.path} is not a readable image: ${(error as Error).message}`, { path: options.path });
  }
  const { width, height, type, orientation } = result;
  if (!type || !(width > 0) || !(height > 0)) {
    throw new DatasetInspectError(`${options.path} is not a readable image: no width and height in its header`, { path: options.path });
  }
  // EXIF orientations 5 to 8 turn the picture a quarter: browsers show it with width and height swapped.
  const turned = orientation !== undefined && orientation >= 5;
  return {
    kind: 'image',
    path: options.path,
    format: type,
    width: turned ? height : width,
    height: turned ? width : height,
    contentUrl: '',
  };
}
