import { describe, expect, it } from 'vitest';
import { eligible, imageAllowed, type NodeState } from './placement.js';

describe('image allow-lists', () => {
  it('matches globs: * within one path segment, ** across them, tags included', () => {
    expect(imageAllowed('local/busybox:1', ['local/*'])).toBe(true);
    expect(imageAllowed('local/team/busybox:1', ['local/*'])).toBe(false);
    expect(imageAllowed('registry.lan/team/a/b:2', ['registry.lan/team/**'])).toBe(true);
    expect(imageAllowed('pytorch/pytorch:2.3.1-cuda12.1', ['pytorch/pytorch:2.*'])).toBe(true);
    expect(imageAllowed('pytorch/pytorch:1.13', ['pytorch/pytorch:2.*'])).toBe(false);
    expect(imageAllowed('docker.io/evil/miner:1', ['local/*', 'registry.lan/**'])).toBe(false);
    // Patterns are never negations or comments.
    expect(imageAllowed('x', ['!local/*'])).toBe(false);
  });

  it('keeps a workload off a node whose list does not admit its image; an empty list admits any', () => {
    const node = (allowedImages: string[]): NodeState => ({ id: 'n', address: '127.0.0.1', executors: ['docker'], labels: {}, allowedImages, devices: [], cpuReplicas: 0 });
    expect(eligible(node(['local/*']), { gpus: 0, executor: 'docker', image: 'local/busybox:1' })).toBe(true);
    expect(eligible(node(['local/*']), { gpus: 0, executor: 'docker', image: 'other/busybox:1' })).toBe(false);
    expect(eligible(node([]), { gpus: 0, executor: 'docker', image: 'other/busybox:1' })).toBe(true);
    // Work without an image (the local executor's) is not an image question.
    expect(eligible(node(['local/*']), { gpus: 0, executor: 'docker' })).toBe(true);
  });
});
