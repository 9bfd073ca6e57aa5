import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { MEDIA_TYPES, checkLayers, parseImageConfig, parseManifest, selectPlatform } from './manifest';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AuraeError);
    return (err as AuraeError).code;
  }
  throw new Error('expected a throw');
}

describe('parseManifest', () => {
  const manifest = {
    schemaVersion: 2,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d(1), size: 10 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(2), size: 20 }],
  };
  it('reads an OCI manifest without mediaType using the Content-Type', () => {
    const m = parseManifest(json(manifest), `${MEDIA_TYPES.ociManifest}; charset=utf-8`);
    expect(m).toMatchObject({ kind: 'manifest', mediaType: MEDIA_TYPES.ociManifest, config: { digest: d(1) }, layers: [{ digest: d(2), size: 20 }] });
  });
  it('reads a Docker schema 2 manifest and a manifest list', () => {
    expect(parseManifest(json({ ...manifest, mediaType: MEDIA_TYPES.dockerManifest }), 'application/json').mediaType).toBe(MEDIA_TYPES.dockerManifest);
    const list = parseManifest(json({ schemaVersion: 2, mediaType: MEDIA_TYPES.dockerList, manifests: [{ mediaType: MEDIA_TYPES.dockerManifest, digest: d(3), size: 5, platform: { os: 'linux', architecture: 'amd64' } }] }), '');
    expect(list).toMatchObject({ kind: 'index', mediaType: MEDIA_TYPES.dockerList, manifests: [{ digest: d(3), platform: { os: 'linux', architecture: 'amd64' } }] });
  });
  it('refuses schema 1 (UNIMPLEMENTED), broken JSON and bad descriptors (FAILED_PRECONDITION)', () => {
    expect(code(() => parseManifest(json({ schemaVersion: 1, fsLayers: [] }), MEDIA_TYPES.dockerSchema1Signed))).toBe('UNIMPLEMENTED');
    expect(code(() => parseManifest(Buffer.from('{'), ''))).toBe('FAILED_PRECONDITION');
    expect(code(() => parseManifest(json({ ...manifest, layers: [{ mediaType: 'x', digest: 'sha256:zz', size: 1 }] }), ''))).toBe('FAILED_PRECONDITION');
    expect(code(() => parseManifest(json({ ...manifest, layers: [{ mediaType: 'x', digest: d(1), size: -1 }] }), ''))).toBe('FAILED_PRECONDITION');
  });
});

describe('selectPlatform', () => {
  const entry = (n: number, platform?: object, annotations?: object) => ({ mediaType: MEDIA_TYPES.ociManifest, digest: d(n), size: 1, ...(platform ? { platform } : {}), ...(annotations ? { annotations } : {}) });
  const index = [
    entry(1, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    entry(2, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' }),
    entry(3, { os: 'linux', architecture: 'amd64', variant: 'v3' }),
    entry(4, { os: 'linux', architecture: 'amd64' }),
    entry(5, { os: 'windows', architecture: 'amd64' }),
  ] as Parameters<typeof selectPlatform>[0];
  it('picks linux/amd64 without variant over variants, skips attestations and other OSes', () => {
    expect(selectPlatform(index, { os: 'linux', architecture: 'amd64' }, 'x').digest).toBe(d(4));
    expect(selectPlatform(index, { os: 'linux', architecture: 'amd64', variant: 'v3' }, 'x').digest).toBe(d(3));
    expect(selectPlatform(index.slice(0, 3), { os: 'linux', architecture: 'amd64' }, 'x').digest).toBe(d(3));
  });
  it('NOT_FOUND lists what the index offers', () => {
    try {
      selectPlatform([index[0]!, index[1]!], { os: 'linux', architecture: 'amd64' }, 'image x');
      throw new Error('expected a throw');
    } catch (err) {
      expect((err as AuraeError).code).toBe('NOT_FOUND');
      expect((err as Error).message).toContain('linux/arm64/v8');
      expect((err as Error).message).not.toContain('unknown');
    }
  });
});

describe('parseImageConfig and checkLayers', () => {
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], Env: ['PATH=/bin'], WorkingDir: '/w', User: '1000:1000', ExposedPorts: { '80/tcp': {}, '443/tcp': {} }, Labels: { a: 'b' }, StopSignal: 'SIGQUIT' },
    rootfs: { type: 'layers', diff_ids: [d(9)] },
  };
  it('maps the runtime config and diff_ids', () => {
    expect(parseImageConfig(json(config))).toEqual({
      os: 'linux',
      architecture: 'amd64',
      diffIds: [d(9)],
      runtime: { entrypoint: ['/bin/sh', '-c'], cmd: ['echo hi'], env: ['PATH=/bin'], workingDir: '/w', user: '1000:1000', exposedPorts: ['443/tcp', '80/tcp'], labels: { a: 'b' }, stopSignal: 'SIGQUIT' },
    });
    expect(parseImageConfig(json({ ...config, config: undefined })).runtime).toMatchObject({ entrypoint: [], cmd: [], env: [], user: '' });
  });
  it('refuses a missing rootfs, unknown layer types and a diff_ids count mismatch', () => {
    expect(code(() => parseImageConfig(json({ os: 'linux' })))).toBe('FAILED_PRECONDITION');
    const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(2), size: 1 };
    expect(() => checkLayers([layer], [d(9)], 'x')).not.toThrow();
    expect(code(() => checkLayers([{ ...layer, mediaType: 'application/x-squashfs' }], [d(9)], 'x'))).toBe('UNIMPLEMENTED');
    expect(code(() => checkLayers([layer], [], 'x'))).toBe('FAILED_PRECONDITION');
  });
});
