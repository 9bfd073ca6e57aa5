// What connect() hands each service client: the shared channel, the error mapping and the deadlines.
import type { CallOptions, ChannelCredentials, ChannelOptions, ServiceError } from '@grpc/grpc-js';

/** How connect() lets a service client make calls: its error mapping, deadlines and shared channel. */
export interface SdkCallContext {
  address: string;
  credentials: ChannelCredentials;
  /** Channel options, including channelOverride (one connection for every service client). */
  options: ChannelOptions;
  unary<Res>(method: string, start: (done: (err: ServiceError | null, res: Res) => void) => void): Promise<Res>;
  callOptions(): Partial<CallOptions>;
}
