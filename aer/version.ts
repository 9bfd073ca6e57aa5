// aer's version is the package version (esbuild inlines it into the bundle).
import pkg from '../package.json';

export const AER_VERSION: string = pkg.version;
