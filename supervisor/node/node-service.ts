import type {
  NodeServiceRebootRequest,
  NodeServiceRebootResponse,
  NodeServiceServer,
  NodeServiceShutdownRequest,
  NodeServiceShutdownResponse,
} from '../gen/aurae/node/v0/node';
import { type RpcContext, unary } from '../server';
import { type PowerControl, validateReason } from './power';

export function createNodeService(ctx: RpcContext, power: PowerControl): NodeServiceServer {
  return {
    shutdown: unary(ctx, {
      method: 'aurae.node.v0.NodeService/Shutdown',
      access: 'admin',
      validate: (request: NodeServiceShutdownRequest) => validateReason(request.reason),
      run: async (reason, caller): Promise<NodeServiceShutdownResponse> => {
        await power.request('poweroff', reason, caller);
        return {};
      },
    }),
    reboot: unary(ctx, {
      method: 'aurae.node.v0.NodeService/Reboot',
      access: 'admin',
      validate: (request: NodeServiceRebootRequest) => validateReason(request.reason),
      run: async (reason, caller): Promise<NodeServiceRebootResponse> => {
        await power.request('reboot', reason, caller);
        return {};
      },
    }),
  };
}
