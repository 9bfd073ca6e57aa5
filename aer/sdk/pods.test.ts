// The seeds' builders and the wire mapping of pods and images (no node: the protos round-trip through the
// generated codecs, as grpc-js would send them).
import { describe, expect, it } from 'vitest';
import { Pod, PodStatus } from '../../supervisor/gen/aurae/pods/v0/pods';
import { ImageServicePullResponse } from '../../supervisor/gen/aurae/images/v0/images';
import { fromProtoImage, fromProtoProgress, toProtoAuth } from './images';
import { container, fromProtoPod, fromProtoPodStatus, nameFromImage, pod, toProtoPod } from './pods';

describe('container() and pod()', () => {
  it("build the seeds' example as written", () => {
    // let helloContainer = container(); helloContainer.image("busybox");
    const helloContainer = container();
    helloContainer.image('busybox');
    // let helloPod = pod(); helloPod.env("key", "value"); … helloPod.expose(80); helloPod.add(helloContainer);
    const helloPod = pod();
    helloPod.env('key', 'value');
    helloPod.env('foo', 'bar');
    helloPod.expose(80);
    helloPod.expose(8080);
    helloPod.add(helloContainer);
    const spec = helloPod.build();
    expect(spec.name).toMatch(/^pod-[0-9a-f]{6}$/);
    expect(spec).toEqual({ name: spec.name, containers: [{ name: 'busybox', image: 'busybox' }], env: { key: 'value', foo: 'bar' }, expose: [80, 8080] });
  });

  it('chain, name containers after their images without clashes, and carry every option', () => {
    const spec = pod('web')
      .add(container().image('127.0.0.1:5000/team/Web_App:1.0').args('serve'), container().image('docker.io/library/web@sha256:' + 'a'.repeat(64)))
      .add({ name: 'side', image: 'busybox', command: ['/bin/sh'], env: { A: '1' }, readOnlyRootfs: true })
      .restart('always')
      .memory(64 << 20)
      .pids(32)
      .cpuWeight(200)
      .expose(80)
      .expose(80)
      .build();
    expect(spec.containers.map((c) => c.name)).toEqual(['web-app', 'web', 'side']);
    expect(spec.containers[2]).toEqual({ name: 'side', image: 'busybox', command: ['/bin/sh'], env: { A: '1' }, readOnlyRootfs: true });
    expect(spec).toMatchObject({ name: 'web', restart: 'always', limits: { memoryMax: 64 << 20, pidsMax: 32, cpuWeight: 200 }, expose: [80] });
    expect(pod('w').add(container().image('busybox')).sandbox('vm').build().sandbox).toBe('vm');
    expect(pod('w').add(container().image('busybox')).build()).not.toHaveProperty('sandbox');
    const twins = pod('t').add(container().image('busybox'), container().image('busybox')).build();
    expect(twins.containers.map((c) => c.name)).toEqual(['busybox', 'busybox-2']);
  });

  it('say what is missing', () => {
    expect(() => pod('x').build()).toThrow('pod(): no container');
    expect(() => pod('x').add(container()).build()).toThrow('container(): no image');
  });

  it('nameFromImage gives a DNS label', () => {
    expect(nameFromImage('busybox')).toBe('busybox');
    expect(nameFromImage('host:5000/a/b.c:tag')).toBe('b-c');
    expect(nameFromImage('___')).toBe('app');
  });
});

describe('wire mapping', () => {
  it('a PodSpec survives the trip through the wire and back', () => {
    const spec = pod('web').add(container('app').image('busybox').args('sh', '-c', 'echo hi').env('X', '1').workingDir('/tmp').user('1000')).env('key', 'value').memory(1024).expose(80).restart('on-failure').build();
    const wire = Pod.decode(Pod.encode(toProtoPod(spec)).finish());
    expect(wire.limits?.memoryMax).toBe(1024n);
    expect(fromProtoPod(wire)).toEqual(spec);
  });

  it('publish(node, pod, proto) maps node ports (a later one replaces the same node port); the ip comes back', () => {
    const spec = pod('web').add(container('app').image('busybox')).expose(80).publish(8080, 80).publish(53, 53, 'udp').publish(8080, 81).publish(9000).build();
    expect(spec.publish).toEqual([
      { nodePort: 53, podPort: 53, protocol: 'udp' },
      { nodePort: 8080, podPort: 81, protocol: 'tcp' },
      { nodePort: 9000, podPort: 9000, protocol: 'tcp' },
    ]);
    const wire = Pod.decode(Pod.encode(toProtoPod(spec)).finish());
    expect(wire.publish).toEqual([
      { nodePort: 53, podPort: 53, protocol: 'udp' },
      { nodePort: 8080, podPort: 81, protocol: 'tcp' },
      { nodePort: 9000, podPort: 9000, protocol: 'tcp' },
    ]);
    expect(fromProtoPod(wire)).toEqual(spec);
    expect(fromProtoPodStatus(PodStatus.fromPartial({ name: 'web', ip: '10.88.0.2' })).ip).toBe('10.88.0.2');
    expect(fromProtoPodStatus(PodStatus.fromPartial({ name: 'web' })).ip).toBeNull();
  });

  it('a status maps states, pids and exits; unknown states stay visible as unknown', () => {
    const status = PodStatus.fromPartial({
      name: 'web',
      sandbox: 'cell',
      state: 'running',
      createdAt: 5n,
      containers: [
        { name: 'app', image: 'busybox', imageDigest: 'sha256:x', state: 'exited', pid: 0, exit: { code: 0, oomKilled: false }, restarts: 1 },
        { name: 'b', image: 'busybox', state: 'hibernating', pid: 7 },
      ],
    });
    const info = fromProtoPodStatus(status);
    expect(info).toMatchObject({ name: 'web', state: 'running', createdAt: 5, spec: null });
    expect(info.containers[0]).toEqual({ name: 'app', image: 'busybox', imageDigest: 'sha256:x', state: 'exited', pid: null, exit: { code: 0, signal: null, oomKilled: false }, restarts: 1 });
    expect(info.containers[1]).toMatchObject({ state: 'unknown', pid: 7, exit: null });
  });

  it('images: progress and images as numbers; auth only when given', () => {
    const m = ImageServicePullResponse.fromPartial({ progress: { layer: 'sha256:l', done: 3n, total: 9n, state: 'downloading' } });
    expect(fromProtoProgress(m.progress!)).toEqual({ layer: 'sha256:l', done: 3, total: 9, state: 'downloading' });
    const image = fromProtoImage({ name: 'n', tags: ['t'], digest: 'd', configDigest: 'c', config: undefined, layers: [{ digest: 'l', size: 5n, mediaType: 'm', diffId: 'x' }], size: 5n, pulledAt: 7n });
    expect(image).toMatchObject({ size: 5, pulledAt: 7, layers: [{ size: 5 }], config: { cmd: [], stopSignal: '' } });
    expect(toProtoAuth(undefined)).toBeUndefined();
    expect(toProtoAuth({ username: 'u', password: 'p' })).toEqual({ username: 'u', password: 'p', registryToken: '' });
  });
});
