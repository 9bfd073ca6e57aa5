// The aer SDK: typed, promise-based access to auraed.
//   const aurae = await connect();            // ~/.config/aurae/client.json, or AURAE_CONFIG
//   const info = await aurae.discovery.discover();
//   aurae.close();
export { type AuraeClient, type ConnectOptions, type HealthStatus, type NodeInfo, type PowerOptions, connect } from './connect';
export {
  type ClientConfig,
  type ClientConfigOverrides,
  type ResolvedClientConfig,
  ClientConfigError,
  ClientConfigSchema,
  clientConfigPath,
  loadClientConfig,
  parseClientConfigText,
} from './client-config';
export { AuraeApiError, type GrpcStatusName } from './errors';
