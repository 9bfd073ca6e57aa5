import { describe, expect, it } from 'vitest';
import { shellStatus } from './exec';

describe('aer exec status', () => {
  it('follows the shell: the exit code, or 128 + the signal number', () => {
    expect(shellStatus(0, null)).toBe(0);
    expect(shellStatus(3, null)).toBe(3);
    expect(shellStatus(null, 'SIGKILL')).toBe(137);
    expect(shellStatus(null, 'SIGTERM')).toBe(143);
    expect(shellStatus(null, null)).toBe(1);
  });
});
