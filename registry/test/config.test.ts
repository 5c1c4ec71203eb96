import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '@aiplat/plugin-sdk/package';
import { loadRegistryConfig, parseByteSize, RegistryConfigError } from '../src/config.js';
import { hashToken, parsePublishers } from '../src/publishers.js';

describe('loadRegistryConfig', () => {
  it('has the documented defaults', () => {
    expect(loadRegistryConfig({}, '/srv')).toEqual({
      port: 8090,
      host: '0.0.0.0',
      dataDir: '/srv/.aiplat-registry',
      publishersFile: '/srv/.aiplat-registry/publishers.json',
      maxUploadBytes: 512 * 1024 ** 2,
      publicUrl: undefined,
      logLevel: 'info',
    });
  });

  it('reads every variable', () => {
    const config = loadRegistryConfig(
      { REGISTRY_PORT: '9000', REGISTRY_HOST: '127.0.0.1', REGISTRY_DATA_DIR: 'data', REGISTRY_PUBLISHERS: '/etc/aiplat/publishers.json', REGISTRY_MAX_UPLOAD: '2GiB', REGISTRY_PUBLIC_URL: 'https://registry.example.com/', LOG_LEVEL: 'warn' },
      '/srv',
    );
    expect(config).toEqual({ port: 9000, host: '127.0.0.1', dataDir: '/srv/data', publishersFile: '/etc/aiplat/publishers.json', maxUploadBytes: 2 * 1024 ** 3, publicUrl: 'https://registry.example.com', logLevel: 'warn' });
  });

  it('lists every problem at once', () => {
    try {
      loadRegistryConfig({ REGISTRY_PORT: '-1', REGISTRY_HOST: 'http://x', REGISTRY_MAX_UPLOAD: '0' });
      throw new Error('expected a RegistryConfigError');
    } catch (error) {
      expect(error).toBeInstanceOf(RegistryConfigError);
      expect((error as RegistryConfigError).problems).toHaveLength(3);
    }
  });

  it('parses sizes', () => {
    expect(parseByteSize('1048576')).toBe(1048576);
    expect(parseByteSize('512MiB')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('1.5 GB')).toBe(1.5e9);
    expect(parseByteSize('10 parsecs')).toBeUndefined();
    expect(parseByteSize('0')).toBeUndefined();
  });
});

describe('parsePublishers', () => {
  const key = generateKeyPair('acme');
  const { privateKey: _private, ...publicKey } = key;

  it('accepts a valid list', () => {
    const list = parsePublishers([{ name: 'acme', tokenSha256: hashToken('t'), keys: [publicKey] }], 'publishers.json');
    expect(list).toEqual([{ name: 'acme', tokenSha256: hashToken('t'), keys: [publicKey] }]);
  });

  it('names the entry and field of every problem', () => {
    const other = generateKeyPair('other');
    const { privateKey: _p, ...otherKey } = other;
    expect(() =>
      parsePublishers(
        [
          { name: 'acme', tokenSha256: hashToken('a'), keys: [] },
          { name: 'acme', tokenSha256: hashToken('a'), keys: [otherKey] },
          { name: 'bad name!', tokenSha256: 'plain-token', keys: [{ publicKey: 'short' }] },
        ],
        'publishers.json',
      ),
    ).toThrow(
      /publishers\.json\[1\]\.name "acme" appears twice[\s\S]*\[1\]\.tokenSha256 is the same as another publisher's[\s\S]*\[1\]\.keys\[0\] belongs to publisher "other", not "acme"[\s\S]*\[2\]\.name must be[\s\S]*\[2\]\.tokenSha256 must be the hex SHA-256[\s\S]*\[2\]\.keys\[0\]: publicKey must be/,
    );
    expect(() => parsePublishers({}, 'publishers.json')).toThrow(/must hold a JSON array/);
  });
});
