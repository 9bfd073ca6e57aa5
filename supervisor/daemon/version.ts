// The auraed version is the package version: one place to bump. esbuild inlines it into the bundle.
import pkg from '../../package.json';

export const AURAED_VERSION: string = pkg.version;
