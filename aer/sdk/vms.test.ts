// The SDK's VmSpec is the generated VirtualMachine (memory_mib spelled memoryMiB, as in VmInfo and the CLI):
// no field of its own, none dropped on the way to the API.
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { VirtualMachine } from '../../supervisor/gen/aurae/vms/v0/vms';
import { toVirtualMachine, type VmSpec } from './vms';

describe('VmSpec', () => {
  it("has the proto's fields, memoryMib spelled memoryMiB", () => {
    expectTypeOf<keyof VmSpec>().toEqualTypeOf<Exclude<keyof VirtualMachine, 'memoryMib'> | 'memoryMiB'>();
    expectTypeOf<VmSpec['restart']>().toEqualTypeOf<'never' | 'on-failure' | 'always' | undefined>();
  });

  it('goes out as the API message, unset fields as zero values (the server applies the defaults)', () => {
    expect(toVirtualMachine({ name: 'web', memoryMiB: 512, cpus: 2, restart: 'on-failure' })).toEqual({ name: 'web', memoryMib: 512, cpus: 2, restart: 'on-failure' });
    expect(toVirtualMachine({ name: 'web' })).toEqual({ name: 'web', memoryMib: 0, cpus: 0, restart: '' });
  });
});
