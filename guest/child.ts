// The child's side of guest/ (what init needs to enter guest mode), without the PKI: importing guest/index.ts
// would bundle @peculiar/x509 into init, and every 100 KB of JavaScript costs boot time under TCG.
export { GuestError, type GuestErrorCode } from './errors';
export { nodeLabelOf } from './names';
export {
  type GuestFile,
  type GuestPayload,
  GUEST_PAYLOAD_FW_CFG,
  GUEST_PAYLOAD_SYSFS_DIR,
  guestPkiFiles,
  parseGuestPayload,
  readGuestPayloadParts,
} from './payload';
