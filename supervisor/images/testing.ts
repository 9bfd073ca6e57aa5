// Test helpers shared by the images tests.
import { expect } from 'vitest';
import { AuraeError } from '../errors';

/** The AuraeError `p` rejects with (the test fails when it resolves or rejects with anything else). */
export async function failure(p: Promise<unknown>): Promise<AuraeError> {
  const err = await p.then(
    () => new Error('expected a failure'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuraeError);
  return err as AuraeError;
}
