// Node: aurae.node.v0.NodeService (power off / reboot through aurae init).
export { MAX_REASON_CHARS, NOT_UNDER_INIT, type PowerControl, createPowerControl, validateReason } from './power';
export { createNodeService, validateRenewal } from './node-service';
export { type IdentityRenewal, type NodeIdentity, type NodeIdentityOptions, createNodeIdentity } from './identity-renewal';
export { NodeServiceService } from '../gen/aurae/node/v0/node';
