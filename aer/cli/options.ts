// commander parsers shared by the command groups. Numeric options take their bounds from the API's table of
// ranges (RANGES, re-exported by the SDK), so aer refuses what auraed would refuse, with the same numbers.
import { InvalidArgumentError } from 'commander';

/** commander parser: a whole number in [min, max]; a usage error naming the range otherwise. */
export function intIn(min: number, max: number) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return Number(value);
  };
}
