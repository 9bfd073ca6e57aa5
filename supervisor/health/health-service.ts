// grpc.health.v1.Health over the HealthRegistry, per the standard (doc/health-checking.md): Check answers
// NOT_FOUND for unknown services; Watch sends the current status (SERVICE_UNKNOWN if unknown) and then every
// change until the client cancels or the server shuts down; List returns at most 100 services.
import { AuraeError } from '../errors';
import {
  HealthCheckResponse_ServingStatus as ProtoStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListRequest,
  type HealthListResponse,
  type HealthServer,
} from '../gen/grpc/health/v1/health';
import { type RpcContext, serverStream, unary } from '../server';
import type { HealthRegistry, ServingStatus } from './health-registry';

export const HEALTH_LIST_LIMIT = 100;
const MAX_SERVICE_NAME = 256;

const TO_PROTO: Record<ServingStatus | 'SERVICE_UNKNOWN', ProtoStatus> = {
  SERVING: ProtoStatus.SERVING,
  NOT_SERVING: ProtoStatus.NOT_SERVING,
  SERVICE_UNKNOWN: ProtoStatus.SERVICE_UNKNOWN,
};

function validateService(request: HealthCheckRequest): string {
  if (request.service.length > MAX_SERVICE_NAME) {
    throw new AuraeError('INVALID_ARGUMENT', `service: at most ${MAX_SERVICE_NAME} characters (got ${request.service.length})`);
  }
  return request.service;
}

export function createHealthService(ctx: RpcContext, registry: HealthRegistry): HealthServer {
  return {
    check: unary(ctx, {
      method: 'grpc.health.v1.Health/Check',
      access: 'read',
      validate: validateService,
      run: (service): HealthCheckResponse => {
        const status = registry.get(service);
        if (status === undefined) throw new AuraeError('NOT_FOUND', `unknown service "${service}": use "" for the whole server`);
        return { status: TO_PROTO[status] };
      },
    }),

    list: unary(ctx, {
      method: 'grpc.health.v1.Health/List',
      access: 'read',
      validate: (_request: HealthListRequest) => undefined,
      run: (): HealthListResponse => {
        const entries = registry.list();
        if (entries.length > HEALTH_LIST_LIMIT) {
          throw new AuraeError('RESOURCE_EXHAUSTED', `${entries.length} services exceed the List limit of ${HEALTH_LIST_LIMIT}: use Check per service`);
        }
        return { statuses: Object.fromEntries(entries.map(([name, status]) => [name, { status: TO_PROTO[status] }])) };
      },
    }),

    watch: serverStream(ctx, {
      method: 'grpc.health.v1.Health/Watch',
      access: 'read',
      validate: validateService,
      run: (service, call) =>
        new Promise<void>((resolve) => {
          let last: ServingStatus | 'SERVICE_UNKNOWN' | undefined;
          const send = (status: ServingStatus | 'SERVICE_UNKNOWN') => {
            if (status === last || call.cancelled) return;
            last = status;
            call.write({ status: TO_PROTO[status] });
          };
          send(registry.get(service) ?? 'SERVICE_UNKNOWN');
          let finished = false;
          let unsubscribe = () => {};
          const finish = (end: boolean) => {
            if (finished) return;
            finished = true;
            unsubscribe();
            // Ending with OK tells the client to retry later (the server is going away), per the standard.
            if (end && !call.cancelled) call.end();
            resolve();
          };
          unsubscribe = registry.watch(service, { onStatus: send, onClose: () => finish(true) });
          if (finished) unsubscribe();
          call.on('cancelled', () => finish(false));
        }),
    }),
  };
}
