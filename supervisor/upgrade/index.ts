// In-place upgrades of the node's boot image (issue 14): the A/B slots model (slots.ts), signed releases
// (release.ts), the resumable upload and rollback core (upgrade-core.ts) and its gRPC service.
export { type Esp, type EspTrace, fsEsp, type Remount, readBootedBy } from './esp';
export { fsPartialStore, type PartialStore } from './partial-store';
export { MAX_RELEASE_BYTES, parseReleaseManifest, RELEASE_MANIFEST_FILE, RELEASE_SIGNATURE_FILE, type ReleaseManifest, releaseManifestText, signRelease, verifyRelease } from './release';
export { type BootEntryView, createUpgradeCore, type UpgradeCore, type UpgradeDeps, type UpgradeStatus } from './upgrade-core';
export { createUpgradeService } from './upgrade-service';
export { createNodeUpgrade } from './node-upgrade';
export { UpgradeServiceService } from '../gen/aurae/upgrade/v0/upgrade';
