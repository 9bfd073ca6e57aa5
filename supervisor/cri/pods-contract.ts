// What the CRI needs of the pods runtime (supervisor/pods PodRuntime): the whole-pod calls plus the incremental
// sandbox/container API (createSandbox, createContainer, startContainer, stopContainer, removeContainer) with the
// containers' timestamps and the ContainerSpec/PodSpec extensions (mounts, security, resources, sysctls; hostname,
// dns). A narrow Pick, so tests give a fake and the VM sandbox's runtime fits too.
import type { ContainerSpec, ContainerStatus, PodRuntime, PodSpec, SandboxedPodRuntime } from '../pods';

export type CriContainerSpec = ContainerSpec;
export type CriPodSpec = PodSpec;
export type CriContainerStatus = ContainerStatus;
export type ContainerSecuritySpec = NonNullable<ContainerSpec['security']>;
export type ContainerResourcesSpec = NonNullable<ContainerSpec['resources']>;
export type MountPropagationMode = NonNullable<ContainerSpec['mounts']>[number]['propagation'];

export type CriPods = Pick<
  PodRuntime,
  'list' | 'get' | 'createSandbox' | 'createContainer' | 'startContainer' | 'stopContainer' | 'removeContainer' | 'stop' | 'remove' | 'execTarget' | 'updateContainerResources'
> & {
  /** Fetch the status of VM-sandboxed pods from their child VMs (sandboxedPodRuntime); absent: nothing to fetch. */
  refresh?(name?: string): Promise<void>;
} & Partial<Pick<SandboxedPodRuntime, 'execRelay' | 'metricsReader' | 'followOutput' | 'openPort'>>;
// execRelay, metricsReader, followOutput, openPort (sandboxedPodRuntime): where a pod's containers run elsewhere (a VM
// sandbox's child), exec, metrics and output are served from there; absent: every pod's run on this node.
