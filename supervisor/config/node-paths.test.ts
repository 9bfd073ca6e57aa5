import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMAGE_CA_CERT, IMAGE_PKI_DIR, inCheckout, locateInstalled, NODE_PKI_DIR, NODE_PKI_FILES } from './node-paths';

describe('node paths', () => {
  it('keeps the image\'s CA under the image PKI dir and every node PEM under the tmpfs PKI dir', () => {
    expect(path.dirname(IMAGE_CA_CERT)).toBe(IMAGE_PKI_DIR);
    for (const file of Object.values(NODE_PKI_FILES)) expect(path.dirname(file)).toBe(NODE_PKI_DIR);
  });
});

describe('locateInstalled', () => {
  it('tries the override, then beside the running code, then the checkout; the first that exists wins', () => {
    const tried: string[] = [];
    const located = locateInstalled('aurae-exec', 'native/build/aurae-exec', { override: '/opt/aurae-exec', exists: (f) => (tried.push(f), f.endsWith('native/build/aurae-exec')) });
    expect(located.candidates).toEqual(['/opt/aurae-exec', path.join(__dirname, 'aurae-exec'), inCheckout('native/build/aurae-exec')]);
    expect(located.found).toBe(inCheckout('native/build/aurae-exec'));
    expect(tried).toEqual(located.candidates);
  });

  it('without a checkout equivalent or an override, only beside the running code; null when absent', () => {
    expect(locateInstalled('better_sqlite3.node', null, { exists: () => false })).toEqual({ candidates: [path.join(__dirname, 'better_sqlite3.node')], found: null });
    expect(inCheckout('package.json')).toBe(path.resolve(__dirname, '..', '..', 'package.json'));
  });
});
