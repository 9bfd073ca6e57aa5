// aurae.images.v0.ImageService: decode → validate → Images core → response. No logic beyond mapping (and
// thinning the progress stream). Images are node-wide, content-addressed and shared by every pod, so Pull, List
// and Inspect are 'shared': any rule allowing the method allows them, whatever its cell/VM/pod scope (a tenant
// allowed her pods "nova-*" can pull and see the images they need; PodService/Run pulls them anyway). Remove
// touches what other tenants' pods use: it stays on the node itself (admins, rules without a resource scope).
// Consequence, documented in the README: an image pulled with credentials is listed to, and runnable by, every
// tenant of the node (as with Kubernetes without AlwaysPullImages).
// Credentials in a request are handed to the core for one pull and never summarized, audited or logged.
import type { ServerWritableStream } from '@grpc/grpc-js';
import type {
  Image,
  ImageServiceInspectRequest,
  ImageServiceInspectResponse,
  ImageServiceListRequest,
  ImageServiceListResponse,
  ImageServicePullRequest,
  ImageServicePullResponse,
  ImageServiceRemoveRequest,
  ImageServiceRemoveResponse,
  ImageServiceServer,
  PullProgress as PullProgressProto,
  RegistryAuth,
} from '../gen/aurae/images/v0/images';
import { AuraeError, toInt64 } from '../errors';
import { type RpcContext, serverStream, unary } from '../server';
import { checkRequired, checkText, invalid } from '../validation';
import type { ImageRecord, Images, PullAuth, PullProgress } from './index';

const SERVICE = 'aurae.images.v0.ImageService';

/** Longest image reference accepted (registry host + repository + tag or digest stay far below). */
export const MAX_REFERENCE_CHARS = 512;
/** Longest credential fields (a registry identity token can be a long JWT). */
const MAX_USERNAME_CHARS = 256;
const MAX_SECRET_CHARS = 16_384;
/** A downloading layer reports at most this often (the final 'done' and state changes always go out). */
export const PROGRESS_INTERVAL_MS = 200;

export const REFERENCE_FORM = 'an image reference such as "busybox", "docker.io/library/busybox:1.36", "host:5000/name@sha256:<hex>", or a manifest digest';

/**
 * An image reference or digest as the request carries it: required, printable ASCII without spaces, at most
 * MAX_REFERENCE_CHARS. The core parses it further (and names what is wrong with it).
 */
export function validateReference(field: string, value: unknown): string {
  const ref = checkRequired(field, value, REFERENCE_FORM);
  if (ref.length > MAX_REFERENCE_CHARS) throw invalid(field, `too long: at most ${MAX_REFERENCE_CHARS} characters (got ${ref.length})`);
  if (!/^[\x21-\x7e]+$/.test(ref)) throw invalid(field, `spaces, control and non-ASCII characters are not allowed: expected ${REFERENCE_FORM}`);
  return ref;
}

/**
 * Credentials for one pull, or undefined when none were given (empty fields count as unset). Messages name the
 * field, never its value. A username without a password (or the reverse) is refused: it would fail at the
 * registry with a less useful message.
 */
export function validateAuth(field: string, auth: RegistryAuth | undefined): PullAuth | undefined {
  if (!auth) return undefined;
  const username = auth.username ?? '';
  const password = auth.password ?? '';
  const registryToken = auth.registryToken ?? '';
  if (username === '' && password === '' && registryToken === '') return undefined;
  if (username !== '') {
    checkText(`${field}.username`, username, MAX_USERNAME_CHARS);
    if (username.includes(':')) throw invalid(`${field}.username`, 'must not contain ":" (HTTP Basic authentication)');
  }
  if (password.length > MAX_SECRET_CHARS) throw invalid(`${field}.password`, `too long: at most ${MAX_SECRET_CHARS} characters`);
  if (/[\0\r\n]/.test(password)) throw invalid(`${field}.password`, 'NUL, CR and LF are not allowed');
  if (registryToken.length > MAX_SECRET_CHARS) throw invalid(`${field}.registry_token`, `too long: at most ${MAX_SECRET_CHARS} characters`);
  if (!/^[\x21-\x7e]*$/.test(registryToken)) throw invalid(`${field}.registry_token`, 'printable ASCII without spaces only');
  if ((username === '') !== (password === '')) throw invalid(`${field}.${username === '' ? 'username' : 'password'}`, 'required with the other (username and password go together)');
  return { ...(username ? { username, password } : {}), ...(registryToken ? { registryToken } : {}) };
}

export interface PullInput {
  reference: string;
  auth?: PullAuth;
}

export function validatePullRequest(request: ImageServicePullRequest): PullInput {
  const reference = validateReference('reference', request.reference);
  const auth = validateAuth('auth', request.auth);
  return auth ? { reference, auth } : { reference };
}

export function createImageService(ctx: RpcContext, images: Pick<Images, 'pull' | 'list' | 'get' | 'remove'>, clock: () => number = Date.now): ImageServiceServer {
  return {
    pull: serverStream(ctx, {
      method: `${SERVICE}/Pull`,
      access: 'admin',
      validate: validatePullRequest,
      // The reference only: the credentials never reach the audit log.
      summary: ({ reference }) => reference,
      resource: () => 'shared',
      run: async ({ reference, auth }, call: ServerWritableStream<ImageServicePullRequest, ImageServicePullResponse>) => {
        const abort = new AbortController();
        const onCancelled = () => abort.abort(new AuraeError('UNAVAILABLE', `pulling ${reference}: the client cancelled the call`));
        call.on('cancelled', onCancelled);
        try {
          const report = progressThrottle(clock, (p) => void call.write({ progress: progressToProto(p) }));
          const image = await images.pull(reference, { ...(auth ? { auth } : {}), onProgress: (p) => !call.cancelled && report(p), signal: abort.signal });
          if (call.cancelled) return;
          call.write({ image: imageToProto(image) });
          call.end();
        } finally {
          call.off('cancelled', onCancelled);
        }
      },
    }),
    list: unary(ctx, {
      method: `${SERVICE}/List`,
      access: 'read',
      validate: (_request: ImageServiceListRequest) => undefined,
      resource: () => 'shared',
      run: (): ImageServiceListResponse => ({ images: images.list().map(imageToProto) }),
    }),
    inspect: unary(ctx, {
      method: `${SERVICE}/Inspect`,
      access: 'read',
      validate: (request: ImageServiceInspectRequest) => validateReference('reference', request.reference),
      resource: () => 'shared',
      run: (reference): ImageServiceInspectResponse => {
        const image = images.get(reference);
        if (!image) throw new AuraeError('NOT_FOUND', `image ${JSON.stringify(reference)} is not stored on this node: pull it first (aer image pull ${reference})`);
        return { image: imageToProto(image) };
      },
    }),
    remove: unary(ctx, {
      method: `${SERVICE}/Remove`,
      access: 'admin',
      validate: (request: ImageServiceRemoveRequest) => ({ reference: validateReference('reference', request.reference), force: request.force === true }),
      summary: ({ reference, force }) => (force ? `${reference} (force)` : reference),
      run: async ({ reference, force }): Promise<ImageServiceRemoveResponse> => images.remove(reference, { force }),
    }),
  };
}

/**
 * Thin a pull's progress for the wire: state changes and finished layers always pass; a downloading layer's
 * byte counts pass at most every PROGRESS_INTERVAL_MS (a fast registry would otherwise send one per chunk).
 */
export function progressThrottle<P extends PullProgress>(clock: () => number, send: (p: P) => void): (p: P) => void {
  const last = new Map<string, { state: string; at: number }>();
  return (p) => {
    const prev = last.get(p.layer);
    const now = clock();
    if (prev && prev.state === p.state && p.state === 'downloading' && p.done < p.total && now - prev.at < PROGRESS_INTERVAL_MS) return;
    last.set(p.layer, { state: p.state, at: now });
    send(p);
  };
}

export function progressToProto(p: PullProgress): PullProgressProto {
  return { layer: p.layer, done: toInt64(p.done), total: toInt64(p.total), state: p.state };
}

export function imageToProto(image: ImageRecord): Image {
  const c = image.config;
  return {
    name: image.name,
    tags: [...image.tags],
    digest: image.digest,
    configDigest: image.configDigest,
    config: {
      entrypoint: [...(c.entrypoint ?? [])],
      cmd: [...(c.cmd ?? [])],
      env: [...(c.env ?? [])],
      workingDir: c.workingDir ?? '',
      user: c.user ?? '',
      exposedPorts: [...(c.exposedPorts ?? [])],
      labels: { ...(c.labels ?? {}) },
      stopSignal: c.stopSignal ?? '',
    },
    layers: image.layers.map((l) => ({ digest: l.digest, size: toInt64(l.size), mediaType: l.mediaType, diffId: l.diffId })),
    size: toInt64(image.size),
    pulledAt: toInt64(image.pulledAt),
  };
}
