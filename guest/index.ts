// guest/: what makes a spawned child microVM a node — names (node paths and TLS names), the identity the
// parent mints for it, and the payload (config + PEMs) handed over through fw_cfg. See README.md.
export { GuestError, type GuestErrorCode } from './errors';
export { childLabelProblem, childPathOf, depthLeftOf, nodeDepth, nodeLabelOf, nodePathProblem, parentPathOf, tlsNameOf } from './names';
export {
  type ChildIdentity,
  type ChildRenewal,
  type ParentIdentity,
  type SpawnCa,
  mintChildIdentity,
  mintParentClientCert,
  renewChildIdentity,
} from './identity';
export {
  type GuestFile,
  type GuestPayload,
  type GuestPayloadOptions,
  GUEST_PAYLOAD_FW_CFG,
  GUEST_PAYLOAD_MAX_BYTES,
  GUEST_PAYLOAD_SYSFS_DIR,
  buildGuestPayload,
  guestPayloadParts,
  guestPayloadText,
  guestPkiFiles,
  parseGuestPayload,
  unpackGuestPayload,
} from './payload';
