// Keeping children's inherited rules current: after every change of this node's effective rules, and whenever a
// child becomes ready, send that child the whole effective rule set (AuthzService/SetParentRules, over the
// router's client, which presents this node's own certificate: the only caller the child accepts for it).
// One push per child at a time; a change during a push is sent right after it (the latest set wins); a failed
// push is retried with a doubling delay while the child is still running.
import type { Client, Metadata } from '@grpc/grpc-js';
import { Metadata as GrpcMetadata } from '@grpc/grpc-js';
import { AuthzServiceService, Effect as ProtoEffect, type PolicyRule as ProtoRule, RuleSource } from '../gen/aurae/authz/v0/authz';
import type { Logger } from '../log';
import type { InheritedRule } from './rule-store';

export interface ParentRulePusherOptions {
  /** The current effective rules (Authz.inheritable). */
  rules(): InheritedRule[];
  /** Labels of the children that are running now. */
  runningChildren(): string[];
  /** A client to the running child `label` (the router's). */
  clientFor(label: string): Promise<Client>;
  log: Logger;
  /** Delay before retry n (1-based); default 1 s doubling, at most 5 attempts. null: give up. */
  retryDelayMs?(attempt: number): number | null;
  /** Timers (tests). */
  setTimer?(fn: () => void, ms: number): { unref?(): void };
}

export interface ParentRulePusher {
  /** Push to every running child. */
  pushAll(): void;
  /** Push to one child (e.g. when it became ready). */
  pushTo(label: string): void;
  /** Resolves once no push is in flight or waiting (tests). */
  idle(): Promise<void>;
  /** Stop retrying. */
  close(): void;
}

export function protoRules(rules: readonly InheritedRule[]): ProtoRule[] {
  return rules.map((r) => ({
    identity: r.identity,
    effect: r.effect === 'allow' ? ProtoEffect.EFFECT_ALLOW : ProtoEffect.EFFECT_DENY,
    method: r.method,
    source: RuleSource.RULE_SOURCE_PARENT,
    createdBy: '',
    createdAt: '',
    cells: [...(r.cells ?? [])],
    vms: [...(r.vms ?? [])],
    pods: [...(r.pods ?? [])],
    nodes: [...(r.nodes ?? [])],
    uids: [...(r.uids ?? [])],
    gids: [...(r.gids ?? [])],
  }));
}

const PUSH_DEADLINE_MS = 10_000;

export function createParentRulePusher(options: ParentRulePusherOptions): ParentRulePusher {
  const retryDelay = options.retryDelayMs ?? ((attempt: number) => (attempt <= 5 ? 1000 * 2 ** (attempt - 1) : null));
  const setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  const def = AuthzServiceService.setParentRules;
  /** Per child: a push in flight, and whether another must follow it. */
  const state = new Map<string, { again: boolean }>();
  const waiters: Array<() => void> = [];
  let closed = false;

  const settle = () => {
    if (state.size === 0) for (const w of waiters.splice(0)) w();
  };

  async function send(label: string): Promise<void> {
    const client = await options.clientFor(label);
    const request = { rules: protoRules(options.rules()) };
    await new Promise<void>((resolve, reject) => {
      const metadata: Metadata = new GrpcMetadata();
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, { deadline: Date.now() + PUSH_DEADLINE_MS }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  function run(label: string, attempt: number): void {
    const entry = state.get(label)!;
    entry.again = false;
    send(label).then(
      () => {
        options.log.debug('inherited rules pushed', { child: label });
        if (entry.again && !closed) return run(label, 1);
        state.delete(label);
        settle();
      },
      (err: unknown) => {
        const running = options.runningChildren().includes(label);
        const delay = running && !closed ? retryDelay(attempt) : null;
        options.log.warn('pushing inherited rules to a child failed', { child: label, attempt, err: (err as Error).message, retryInMs: delay ?? undefined });
        if (delay === null) {
          state.delete(label);
          settle();
          return;
        }
        setTimer(() => (closed ? (state.delete(label), settle()) : run(label, attempt + 1)), delay).unref?.();
      },
    );
  }

  const pusher: ParentRulePusher = {
    pushAll() {
      for (const label of options.runningChildren()) pusher.pushTo(label);
    },
    pushTo(label) {
      if (closed) return;
      const entry = state.get(label);
      if (entry) {
        entry.again = true;
        return;
      }
      state.set(label, { again: false });
      run(label, 1);
    },
    idle: () => (state.size === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))),
    close() {
      closed = true;
    },
  };
  return pusher;
}
