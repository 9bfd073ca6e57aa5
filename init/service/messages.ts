// The auraed → init IPC messages (notes/common.md), validated: auraed is a separate
// program and a malformed message must be reported, not trusted.
import * as z from 'zod/mini';
// Loads the English messages zod/mini needs (one place for the whole program).
import '../../supervisor/config';

export const ReadyMessageSchema = z.object({
  type: z.literal('ready'),
  node: z.string(),
  version: z.string(),
  socket: z.nullable(z.string()),
  tcp: z.nullable(z.string()),
});

export const PowerMessageSchema = z.object({
  type: z.literal('power'),
  action: z.enum(['poweroff', 'reboot']),
  by: z.string(),
  /** Why, as the caller gave it (validated by auraed: printable, at most 256 characters). */
  reason: z.optional(z.string().check(z.maxLength(256))),
});

export const AuraedMessageSchema = z.discriminatedUnion('type', [ReadyMessageSchema, PowerMessageSchema]);

export type ReadyMessage = z.infer<typeof ReadyMessageSchema>;
export type PowerMessage = z.infer<typeof PowerMessageSchema>;
export type AuraedMessage = z.infer<typeof AuraedMessageSchema>;

/** The message, or a string saying what is wrong with it. */
export function parseAuraedMessage(value: unknown): AuraedMessage | string {
  const result = AuraedMessageSchema.safeParse(value);
  if (result.success) return result.data;
  return result.error.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; ');
}

/** The one machine-readable console line tests and the boot command wait for. */
export function readyLine(message: ReadyMessage, pid: number): string {
  const { node, version, socket, tcp } = message;
  return `AURAE_READY ${JSON.stringify({ node, version, socket, tcp, pid })}`;
}
