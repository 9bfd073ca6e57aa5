export type GuestErrorCode = 'GUEST_INVALID_ARGUMENT' | 'GUEST_DEPTH_EXCEEDED' | 'GUEST_PAYLOAD_INVALID';

/** A guest/ failure; the message says what failed, on what, and what to do. */
export class GuestError extends Error {
  constructor(
    readonly code: GuestErrorCode,
    message: string,
    /** For GUEST_PAYLOAD_INVALID: one `field: problem` per issue. */
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'GuestError';
  }
}
