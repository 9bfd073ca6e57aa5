// Node paths: the root node is a DNS label (`aurae`); the child `web` it spawns is `aurae/web`, its child
// `aurae/web/db`. The path is the identity (certificate CN, routing key); the TLS server name is the DNS form.
import type { NodeConfig } from '../supervisor/config';
import { DNS_LABEL_FORM, expectedForm, isDnsLabel, isNodePath, NODE_PATH_FORM } from '../supervisor/validation';
import { GuestError } from './errors';

/** Why `path` is not a node path (prefixed with `field`), or null. */
export function nodePathProblem(path: string, field = 'node path'): string | null {
  return isNodePath(path) ? null : expectedForm(`${field}:`, path, NODE_PATH_FORM);
}

/** Why `label` is not a DNS label usable as a child's name, or null. */
export function childLabelProblem(label: string, field = 'child name'): string | null {
  return isDnsLabel(label) ? null : expectedForm(`${field}:`, label, DNS_LABEL_FORM);
}

function checkPath(path: string, field?: string): void {
  const problem = nodePathProblem(path, field);
  if (problem) throw new GuestError('GUEST_INVALID_ARGUMENT', problem);
}

/** Depth of a node path: the number of "/" (`aurae` 0, `aurae/web` 1). */
export function nodeDepth(nodePath: string): number {
  checkPath(nodePath);
  return nodePath.split('/').length - 1;
}

/** The TLS server name (and DNS SAN) of a node: its labels reversed and joined by "." (`aurae/web` → `web.aurae`). */
export function tlsNameOf(nodePath: string): string {
  checkPath(nodePath);
  return nodePath.split('/').reverse().join('.');
}

/** The node's own label: the last of its path (`aurae/web` → `web`); used as the child's hostname. */
export function nodeLabelOf(nodePath: string): string {
  checkPath(nodePath);
  return nodePath.slice(nodePath.lastIndexOf('/') + 1);
}

/** The parent's path, or null for a root node (`aurae/web` → `aurae`). */
export function parentPathOf(nodePath: string): string | null {
  checkPath(nodePath);
  const i = nodePath.lastIndexOf('/');
  return i < 0 ? null : nodePath.slice(0, i);
}

/** `parent/label`, checked. */
export function childPathOf(parentPath: string, label: string): string {
  checkPath(parentPath, 'parent node path');
  const problem = childLabelProblem(label);
  if (problem) throw new GuestError('GUEST_INVALID_ARGUMENT', problem);
  const path = `${parentPath}/${label}`;
  checkPath(path, 'child node path');
  return path;
}

/**
 * How many levels of descendants the node with `config` may still create: vms.maxDepth minus its own depth.
 * Spawning needs at least 1. Pass it to mintChildIdentity as depthLeft.
 */
export function depthLeftOf(config: NodeConfig): number {
  return config.vms.maxDepth - (config.guest?.depth ?? nodeDepth(config.node.name));
}
