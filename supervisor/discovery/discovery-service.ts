import type { DiscoverRequest, DiscoverResponse, DiscoveryServiceServer } from '../gen/aurae/discovery/v0/discovery';
import { type RpcContext, unary } from '../server';
import { type DiscoveryDeps, discover } from './discovery';

export function createDiscoveryService(ctx: RpcContext, deps: DiscoveryDeps): DiscoveryServiceServer {
  return {
    discover: unary(ctx, {
      method: 'aurae.discovery.v0.DiscoveryService/Discover',
      access: 'read',
      validate: (_request: DiscoverRequest) => undefined,
      run: (): DiscoverResponse => discover(deps),
    }),
  };
}
