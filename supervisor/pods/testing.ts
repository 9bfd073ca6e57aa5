// Fakes for the pods runtime's unit tests.
import type { PodNetwork } from './network';
import type { NetworkedPod, PodLinkInput, PodNetworkConfig } from './network-plan';

/** A fake for unit tests: records what it was asked, keeps the connected pods and the last ruleset. */
export class FakePodNetwork implements PodNetwork {
  readonly calls: string[] = [];
  readonly connected = new Map<string, string>();
  ruleset: NetworkedPod[] | null = null;
  nodeReady = false;
  resolv: string | null = null;
  async ensureNode(): Promise<void> {
    this.calls.push('ensureNode');
    this.nodeReady = true;
  }
  async connectPod(_config: PodNetworkConfig, input: PodLinkInput): Promise<void> {
    this.calls.push(`connect ${input.pod} ${input.address}`);
    this.connected.set(input.pod, input.address);
  }
  async disconnectPod(pod: string): Promise<void> {
    this.calls.push(`disconnect ${pod}`);
    this.connected.delete(pod);
  }
  async applyRuleset(_config: PodNetworkConfig, pods: readonly NetworkedPod[]): Promise<void> {
    this.calls.push(`ruleset ${pods.map((p) => `${p.name}=${p.address}${p.publish.map((m) => `,${m.nodePort}:${m.podPort}/${m.protocol}`).join('')}`).join(' ')}`);
    this.ruleset = pods.map((p) => ({ ...p, publish: [...p.publish] }));
  }
  nodeResolvConf(): string | null {
    return this.resolv;
  }
}
