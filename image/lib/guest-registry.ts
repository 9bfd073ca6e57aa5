// How a booted node reaches an OCI registry on the host (`npm start -- --registry PORT`, the pods QEMU tests):
// QEMU's user network, restricted to the forwards we name, relays the guest's 10.0.2.100:5000 to 127.0.0.1:PORT
// on the host (guestfwd, one tcp-relay.cjs per connection), and a node config that marks that address as a
// plain-HTTP registry is appended to a copy of the initramfs (the later /etc/aurae/config.json wins).
import fs from 'node:fs';
import path from 'node:path';
import { IMAGE_CONFIG_PATH, parseNodeConfig, type NodeConfigInput } from '../../supervisor/config';
import type { GuestForward } from '../../supervisor/vms';
import { imageNodeConfig, REPO_ROOT, type BuiltImage } from '../build';
import { writeCpio } from '../initramfs/cpio';

/** Where the guest sees the host's registry. */
export const GUEST_REGISTRY = { address: '10.0.2.100', port: 5000 } as const;
/** The registry part of image references inside the guest, e.g. `10.0.2.100:5000/busybox:latest`. */
export const GUEST_REGISTRY_HOST = `${GUEST_REGISTRY.address}:${GUEST_REGISTRY.port}`;

const RELAY = path.join(REPO_ROOT, 'image/lib/tcp-relay.cjs');

/** A QEMU guest forward: connections to `guestAddress:guestPort` in the guest reach 127.0.0.1:`hostPort`. */
export function relayForward(guestAddress: string, guestPort: number, hostPort: number): GuestForward {
  return { guestAddress, guestPort, command: `${process.execPath} ${RELAY} ${hostPort}` };
}

/** The node config change that lets the node pull from the host's registry over plain HTTP. */
export function withGuestRegistry(config: NodeConfigInput): NodeConfigInput {
  return { ...config, images: { registries: { [GUEST_REGISTRY_HOST]: { insecure: true, caFile: null, auth: null } } } };
}

/** A copy of the image's initramfs in `dir` with an archive appended that replaces /etc/aurae/config.json. */
export async function initramfsWithConfig(image: BuiltImage, patch: (config: NodeConfigInput) => NodeConfigInput, dir: string): Promise<string> {
  const config = patch(imageNodeConfig(image.manifest.node));
  parseNodeConfig(config, 'the patched node config'); // refuse a bad config here, not as a node that reboots
  const out = path.join(dir, 'initramfs-with-config');
  fs.copyFileSync(image.initramfs, out);
  // Each archive of a concatenated initramfs starts on a 4-byte boundary; the kernel skips zero padding.
  const pad = (4 - (fs.statSync(out).size % 4)) % 4;
  if (pad) fs.appendFileSync(out, Buffer.alloc(pad));
  const extra = path.join(dir, 'config.cpio');
  await writeCpio([{ path: IMAGE_CONFIG_PATH.slice(1), type: 'file', mode: 0o644, data: Buffer.from(`${JSON.stringify(config, null, 2)}\n`) }], extra, { mtime: 0 });
  fs.appendFileSync(out, fs.readFileSync(extra));
  return out;
}
