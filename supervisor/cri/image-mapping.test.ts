import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { findImage, groupImages, imageUser, pullAuth, serverAddressHost, toCriImage } from './image-mapping';
import { criSocketPath } from './socket-path';
import { hex, record } from './testing';

const CONFIG_A = `sha256:${hex('a')}`;
const CONFIG_B = `sha256:${hex('b')}`;
const busybox = record({ name: 'docker.io/library/busybox', tags: ['1.36', 'latest'], digest: `sha256:${hex('1')}`, configDigest: CONFIG_A, size: 2000 });
// The same config under another name (pushed to a local registry).
const localBusybox = record({ name: '127.0.0.1:5000/busybox', tags: ['latest'], digest: `sha256:${hex('2')}`, configDigest: CONFIG_A, size: 2100 });
const app = record({ name: '127.0.0.1:5000/app', tags: ['v1'], digest: `sha256:${hex('3')}`, configDigest: CONFIG_B, config: { ...busybox.config, user: '1000:1000' } });
const records = [app, busybox, localBusybox];
const get = (ref: string) => {
  if (ref === 'busybox:1.36' || ref === 'busybox') return busybox;
  if (ref === '127.0.0.1:5000/app:v1') return app;
  return undefined;
};

describe('CRI images from image records', () => {
  it('is one image per config digest, named by every tag and manifest digest, as containerd reports them', () => {
    const groups = groupImages(records);
    expect(groups.map((g) => g.id)).toEqual([CONFIG_A, CONFIG_B]);
    expect(toCriImage(groups[0]!)).toEqual({
      id: CONFIG_A,
      repoTags: ['127.0.0.1:5000/busybox:latest', 'docker.io/library/busybox:1.36', 'docker.io/library/busybox:latest'],
      repoDigests: [`127.0.0.1:5000/busybox@sha256:${hex('2')}`, `docker.io/library/busybox@sha256:${hex('1')}`],
      size: 2100n,
      username: '',
      spec: { image: CONFIG_A, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
      pinned: false,
    });
    expect(toCriImage(groups[1]!)).toMatchObject({ uid: { value: 1000n }, username: '' });
  });

  it('splits the image user like containerd: uid, name, or neither', () => {
    expect(imageUser('')).toEqual({ uid: null, username: '' });
    expect(imageUser('0')).toEqual({ uid: 0n, username: '' });
    expect(imageUser('33:33')).toEqual({ uid: 33n, username: '' });
    expect(imageUser('www-data')).toEqual({ uid: null, username: 'www-data' });
    expect(imageUser('nginx:nginx')).toEqual({ uid: null, username: 'nginx' });
  });
});

describe('findImage: which image an ImageSpec names', () => {
  it('finds by id, id prefix (crictl shows 13 hex digits), manifest digest and reference', () => {
    expect(findImage(records, CONFIG_B, 'image.image', get)?.id).toBe(CONFIG_B);
    expect(findImage(records, hex('b').slice(0, 13), 'image.image', get)?.id).toBe(CONFIG_B);
    expect(findImage(records, `sha256:${hex('b').slice(0, 20)}`, 'image.image', get)?.id).toBe(CONFIG_B);
    expect(findImage(records, `sha256:${hex('2')}`, 'image.image', get)?.id).toBe(CONFIG_A);
    expect(findImage(records, 'busybox:1.36', 'image.image', get)?.id).toBe(CONFIG_A);
    expect(findImage(records, '127.0.0.1:5000/app:v1', 'image.image', get)?.id).toBe(CONFIG_B);
  });

  it('is null for an image that is not there', () => {
    expect(findImage(records, 'nginx:1.25', 'image.image', get)).toBeNull();
    expect(findImage(records, `sha256:${hex('9')}`, 'image.image', get)).toBeNull();
    expect(findImage([], 'busybox', 'image.image', get)).toBeNull();
  });

  it('names the field for an empty spec, a malformed reference and an ambiguous prefix', () => {
    expect(() => findImage(records, '', 'image.image', get)).toThrow(/^image\.image: required/);
    expect(() => findImage(records, 'Not A Ref!', 'filter.image.image', get)).toThrow(/^filter\.image\.image: "Not A Ref!" is not a valid image reference/);
    const twins = [record({ name: 'x/a', digest: `sha256:${hex('1')}`, configDigest: `sha256:${'c'.repeat(12)}${hex('1').slice(12)}` }), record({ name: 'x/b', digest: `sha256:${hex('2')}`, configDigest: `sha256:${'c'.repeat(12)}${hex('2').slice(12)}` })];
    expect(() => findImage(twins, 'c'.repeat(12), 'image.image', get)).toThrow(/matches 2 images: give more digits/);
  });
});

describe('pullAuth: CRI AuthConfig to pull credentials', () => {
  const none = { username: '', password: '', auth: '', serverAddress: '', identityToken: '', registryToken: '' };
  it('takes username/password, or decodes auth, or a registry token', () => {
    expect(pullAuth(undefined, 'docker.io')).toBeUndefined();
    expect(pullAuth(none, 'docker.io')).toBeUndefined();
    expect(pullAuth({ ...none, username: 'u', password: 'p' }, 'docker.io')).toEqual({ username: 'u', password: 'p' });
    expect(pullAuth({ ...none, auth: Buffer.from('tester:s3cr:et').toString('base64') }, '127.0.0.1:5000')).toEqual({ username: 'tester', password: 's3cr:et' });
    expect(pullAuth({ ...none, username: 'u', password: 'p', auth: Buffer.from('x:y').toString('base64') }, 'docker.io')).toEqual({ username: 'u', password: 'p' });
    expect(pullAuth({ ...none, registryToken: 'tok' }, 'ghcr.io')).toEqual({ registryToken: 'tok' });
  });

  it('ignores credentials meant for another registry (server_address), Docker Hub spelled any way', () => {
    expect(pullAuth({ ...none, username: 'u', password: 'p', serverAddress: 'https://other.example.com' }, 'docker.io')).toBeUndefined();
    expect(pullAuth({ ...none, username: 'u', password: 'p', serverAddress: 'https://index.docker.io/v1/' }, 'docker.io')).toEqual({ username: 'u', password: 'p' });
    expect(pullAuth({ ...none, username: 'u', password: 'p', serverAddress: '127.0.0.1:5000' }, '127.0.0.1:5000')).toEqual({ username: 'u', password: 'p' });
    expect(serverAddressHost('https://Registry.Example.com:5000/v2/')).toBe('registry.example.com:5000');
  });

  it('refuses a malformed auth and an identity token, naming the field and never the secret', () => {
    const bad = (a: Partial<typeof none>) => {
      try {
        pullAuth({ ...none, ...a }, 'docker.io');
      } catch (err) {
        return err as AuraeError;
      }
      throw new Error('expected a refusal');
    };
    expect(bad({ auth: Buffer.from('no-colon').toString('base64') }).message).toMatch(/^auth\.auth: expected base64/);
    expect(bad({ auth: '%%%' }).code).toBe('INVALID_ARGUMENT');
    const idt = bad({ identityToken: 'refresh-secret-123' });
    expect(idt.message).toMatch(/^auth\.identity_token: identity tokens are not supported/);
    expect(idt.message).not.toContain('refresh-secret-123');
    expect(bad({ username: 'a:b', password: 'p' }).message).toMatch(/^auth\.username/);
  });
});

describe('criSocketPath', () => {
  const base = { cri: { enabled: true, socket: null }, listen: { socket: '/run/aurae/aurae.sock', tcp: null } };
  it('is cri.sock beside the API socket unless cri.socket says otherwise; null when disabled', () => {
    expect(criSocketPath(base)).toBe('/run/aurae/cri.sock');
    expect(criSocketPath({ ...base, listen: { socket: '/tmp/node-1/run/aurae.sock', tcp: null } })).toBe('/tmp/node-1/run/cri.sock');
    expect(criSocketPath({ ...base, listen: { socket: null, tcp: '0.0.0.0:8443' } })).toBe('/run/aurae/cri.sock');
    expect(criSocketPath({ ...base, cri: { enabled: true, socket: '/var/run/k8s/cri.sock' } })).toBe('/var/run/k8s/cri.sock');
    expect(criSocketPath({ ...base, cri: { enabled: false, socket: '/x.sock' } })).toBeNull();
  });
});
