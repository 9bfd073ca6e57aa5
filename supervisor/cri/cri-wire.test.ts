// The CRI's wire facts, pinned from the public runtime.v1 definition (k8s.io/cri-api): a renumbered field, a renamed
// method or a shifted enum in supervisor/proto/runtime/v1/api.proto fails here, before kubelet misreads a message.
// Each field is encoded alone and the tag on the wire is read back, so the check is of the bytes, not of names.
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import {
  AuthConfig,
  CgroupDriver,
  ContainerConfig,
  ContainerEventType,
  ContainerState,
  ContainerStatus,
  Image,
  ImageFsInfoResponse,
  ImageServiceService,
  ImageSpec,
  LinuxContainerSecurityContext,
  LinuxRuntimeConfiguration,
  MetricType,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfig,
  PodSandboxState,
  Protocol,
  RuntimeServiceService,
  SecurityProfile_ProfileType,
  StatusResponse,
  SupplementalGroupsPolicy,
  VersionResponse,
} from '../gen/runtime/v1/api';

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  fromPartial(object: never): T;
}

/** The field numbers on the wire when only `partial` is set. */
function wireFields<T>(codec: Codec<T>, partial: Record<string, unknown>): number[] {
  const bytes = codec.encode(codec.fromPartial(partial as never)).finish();
  const reader = new BinaryReader(bytes);
  const fields: number[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    fields.push(field);
    reader.skip(wireType);
  }
  return [...new Set(fields)];
}

function expectNumbers<T>(codec: Codec<T>, table: [field: string, number: number, sample: unknown][]): void {
  for (const [field, number, sample] of table) {
    expect({ field, numbers: wireFields(codec, { [field]: sample }) }).toEqual({ field, numbers: [number] });
  }
}

const map = { k: 'v' };

describe('runtime.v1 services', () => {
  it('RuntimeService has the 29 methods of the public definition (34 with the ImageService), by their wire paths', () => {
    expect(Object.values(RuntimeServiceService).map((m) => m.path)).toEqual(
      [
        'Version',
        'RunPodSandbox',
        'StopPodSandbox',
        'RemovePodSandbox',
        'PodSandboxStatus',
        'ListPodSandbox',
        'CreateContainer',
        'StartContainer',
        'StopContainer',
        'RemoveContainer',
        'ListContainers',
        'ContainerStatus',
        'UpdateContainerResources',
        'ReopenContainerLog',
        'ExecSync',
        'Exec',
        'Attach',
        'PortForward',
        'ContainerStats',
        'ListContainerStats',
        'PodSandboxStats',
        'ListPodSandboxStats',
        'UpdateRuntimeConfig',
        'Status',
        'CheckpointContainer',
        'GetContainerEvents',
        'ListMetricDescriptors',
        'ListPodSandboxMetrics',
        'RuntimeConfig',
      ].map((m) => `/runtime.v1.RuntimeService/${m}`),
    );
    expect(RuntimeServiceService.getContainerEvents.responseStream).toBe(true);
  });

  it('ImageService has its 5 methods', () => {
    expect(Object.values(ImageServiceService).map((m) => m.path)).toEqual(
      ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo'].map((m) => `/runtime.v1.ImageService/${m}`),
    );
  });
});

describe('runtime.v1 field numbers', () => {
  it('VersionResponse', () => {
    expectNumbers(VersionResponse, [
      ['version', 1, 'x'],
      ['runtimeName', 2, 'x'],
      ['runtimeVersion', 3, 'x'],
      ['runtimeApiVersion', 4, 'x'],
    ]);
  });

  it('PodSandboxConfig', () => {
    expectNumbers(PodSandboxConfig, [
      ['metadata', 1, {}],
      ['hostname', 2, 'x'],
      ['logDirectory', 3, 'x'],
      ['dnsConfig', 4, {}],
      ['portMappings', 5, [{}]],
      ['labels', 6, map],
      ['annotations', 7, map],
      ['linux', 8, {}],
      ['windows', 9, {}],
    ]);
  });

  it('ContainerConfig', () => {
    expectNumbers(ContainerConfig, [
      ['metadata', 1, {}],
      ['image', 2, {}],
      ['command', 3, ['x']],
      ['args', 4, ['x']],
      ['workingDir', 5, 'x'],
      ['envs', 6, [{}]],
      ['mounts', 7, [{}]],
      ['devices', 8, [{}]],
      ['labels', 9, map],
      ['annotations', 10, map],
      ['logPath', 11, 'x'],
      ['stdin', 12, true],
      ['stdinOnce', 13, true],
      ['tty', 14, true],
      ['linux', 15, {}],
      ['windows', 16, {}],
      ['CDIDevices', 17, [{}]],
    ]);
  });

  it('LinuxContainerSecurityContext (numbers out of order upstream)', () => {
    expectNumbers(LinuxContainerSecurityContext, [
      ['capabilities', 1, {}],
      ['privileged', 2, true],
      ['runAsUser', 5, {}],
      ['runAsUsername', 6, 'x'],
      ['readonlyRootfs', 7, true],
      ['supplementalGroups', 8, [1n]],
      ['noNewPrivs', 11, true],
      ['runAsGroup', 12, {}],
      ['maskedPaths', 13, ['x']],
      ['readonlyPaths', 14, ['x']],
      ['seccomp', 15, {}],
      ['apparmor', 16, {}],
      ['supplementalGroupsPolicy', 17, SupplementalGroupsPolicy.Strict],
    ]);
  });

  it('ContainerStatus', () => {
    expectNumbers(ContainerStatus, [
      ['id', 1, 'x'],
      ['state', 3, ContainerState.CONTAINER_EXITED],
      ['finishedAt', 6, 1n],
      ['exitCode', 7, 1],
      ['reason', 10, 'OOMKilled'],
      ['logPath', 15, 'x'],
      ['imageId', 17, 'x'],
      ['user', 18, {}],
    ]);
  });

  it('Image, ImageSpec, AuthConfig, ImageFsInfoResponse', () => {
    expectNumbers(Image, [
      ['id', 1, 'x'],
      ['repoTags', 2, ['x']],
      ['repoDigests', 3, ['x']],
      ['size', 4, 1n],
      ['uid', 5, {}],
      ['username', 6, 'x'],
      ['spec', 7, {}],
      ['pinned', 8, true],
    ]);
    expectNumbers(ImageSpec, [
      ['image', 1, 'x'],
      ['annotations', 2, map],
      ['userSpecifiedImage', 18, 'x'],
      ['runtimeHandler', 19, 'x'],
    ]);
    expectNumbers(AuthConfig, [
      ['username', 1, 'x'],
      ['password', 2, 'x'],
      ['auth', 3, 'x'],
      ['serverAddress', 4, 'x'],
      ['identityToken', 5, 'x'],
      ['registryToken', 6, 'x'],
    ]);
    expectNumbers(ImageFsInfoResponse, [
      ['imageFilesystems', 1, [{}]],
      ['containerFilesystems', 2, [{}]],
    ]);
  });

  it('StatusResponse and the runtime config', () => {
    expectNumbers(StatusResponse, [
      ['status', 1, {}],
      ['info', 2, map],
      ['runtimeHandlers', 3, [{}]],
      ['features', 4, {}],
    ]);
    expectNumbers(LinuxRuntimeConfiguration, [['cgroupDriver', 1, CgroupDriver.CGROUPFS]]);
  });
});

describe('runtime.v1 enum values', () => {
  it('match the public definition', () => {
    expect([ContainerState.CONTAINER_CREATED, ContainerState.CONTAINER_RUNNING, ContainerState.CONTAINER_EXITED, ContainerState.CONTAINER_UNKNOWN]).toEqual([0, 1, 2, 3]);
    expect([PodSandboxState.SANDBOX_READY, PodSandboxState.SANDBOX_NOTREADY]).toEqual([0, 1]);
    expect([CgroupDriver.SYSTEMD, CgroupDriver.CGROUPFS]).toEqual([0, 1]);
    expect([NamespaceMode.POD, NamespaceMode.CONTAINER, NamespaceMode.NODE, NamespaceMode.TARGET]).toEqual([0, 1, 2, 3]);
    expect([MountPropagation.PROPAGATION_PRIVATE, MountPropagation.PROPAGATION_HOST_TO_CONTAINER, MountPropagation.PROPAGATION_BIDIRECTIONAL]).toEqual([0, 1, 2]);
    expect([Protocol.TCP, Protocol.UDP, Protocol.SCTP]).toEqual([0, 1, 2]);
    expect([
      ContainerEventType.CONTAINER_CREATED_EVENT,
      ContainerEventType.CONTAINER_STARTED_EVENT,
      ContainerEventType.CONTAINER_STOPPED_EVENT,
      ContainerEventType.CONTAINER_DELETED_EVENT,
    ]).toEqual([0, 1, 2, 3]);
    expect([MetricType.COUNTER, MetricType.GAUGE]).toEqual([0, 1]);
    expect([SupplementalGroupsPolicy.Merge, SupplementalGroupsPolicy.Strict]).toEqual([0, 1]);
    expect([SecurityProfile_ProfileType.RuntimeDefault, SecurityProfile_ProfileType.Unconfined, SecurityProfile_ProfileType.Localhost]).toEqual([0, 1, 2]);
  });
});
