import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { familiarName, formatReference, parseReference } from './reference';

const D = `sha256:${'ab'.repeat(32)}`;

describe('parseReference', () => {
  it.each([
    ['busybox', { registry: 'docker.io', endpoint: 'registry-1.docker.io', repository: 'library/busybox', name: 'docker.io/library/busybox', tag: 'latest', digest: null }],
    ['docker.io/library/busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36', digest: null }],
    ['index.docker.io/team/app', { registry: 'docker.io', repository: 'team/app', name: 'docker.io/team/app', tag: 'latest' }],
    ['team/app:v1', { registry: 'docker.io', repository: 'team/app', tag: 'v1' }],
    [`127.0.0.1:5000/busybox@${D}`, { registry: '127.0.0.1:5000', endpoint: '127.0.0.1:5000', repository: 'busybox', name: '127.0.0.1:5000/busybox', tag: null, digest: D }],
    [`ghcr.io/org/sub/app:1.2@${D}`, { registry: 'ghcr.io', repository: 'org/sub/app', tag: '1.2', digest: D }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['localhost:5000/app', { registry: 'localhost:5000', repository: 'app' }],
    ['[::1]:5000/app:x', { registry: '[::1]:5000', repository: 'app', tag: 'x' }],
    ['10.0.2.100:5000/a.b/c__d/e-f:tag_1.0-x', { registry: '10.0.2.100:5000', repository: 'a.b/c__d/e-f', tag: 'tag_1.0-x' }],
  ])('%s', (input, expected) => {
    expect(parseReference(input)).toMatchObject(expected);
  });

  it.each([
    ['', 'empty'],
    [' busybox', 'whitespace'],
    ['Busybox', 'name component'],
    ['busybox:', 'tag'],
    ['busybox:-x', 'tag'],
    ['busybox@sha256:abc', '64 lowercase hex'],
    [`busybox@md5:${'a'.repeat(32)}`, 'only sha256'],
    ['host:99999/app', 'registry'],
    ['a//b', 'name component'],
    ['app/', 'name component'],
    ['-host.com/app', 'registry'],
    ['docker.io/', 'repository name is missing'],
  ])('refuses %j (%s) with INVALID_ARGUMENT naming the field', (input, why) => {
    let err: unknown;
    try {
      parseReference(input, 'container.image');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuraeError);
    expect((err as AuraeError).code).toBe('INVALID_ARGUMENT');
    expect((err as AuraeError).message).toMatch(/^container\.image: /);
    expect((err as AuraeError).message).toContain(why);
  });

  it('formats back and shortens Docker Hub names', () => {
    expect(formatReference(parseReference('busybox'))).toBe('docker.io/library/busybox:latest');
    expect(formatReference(parseReference(`h:1/x@${D}`))).toBe(`h:1/x@${D}`);
    expect(familiarName('docker.io/library/busybox')).toBe('busybox');
    expect(familiarName('docker.io/team/app')).toBe('team/app');
    expect(familiarName('127.0.0.1:5000/busybox')).toBe('127.0.0.1:5000/busybox');
  });
});
