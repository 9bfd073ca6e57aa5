// The UEFI firmware for booting disk.raw like real hardware (q35): Debian's ovmf package (image/setup.sh installs it).
/** The firmware code (read-only pflash). */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
/** The template of its variable store: each VM gets its own writable copy (the firmware writes boot entries). */
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

// Secure Boot (Debian's README.Debian in /usr/share/doc/ovmf). The plain build above can verify signatures too,
// but without SMM anything in the guest could rewrite its key store; the secboot build keeps the variable store
// behind SMM and refuses to start without it (QEMU: q35,smm=on and a secure pflash, supervisor/vms/qemu-args.ts).
/** The firmware code built with SMM and Secure Boot (OVMF_CODE_4M.snakeoil.fd and .ms.fd are links to it). */
export const OVMF_CODE_SECBOOT = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
/**
 * A variable store for testing only, with Secure Boot on from the first boot: PK, KEK and db each hold the one
 * "snakeoil" certificate below (O=SnakeOil, RSA 2048), dbx one placeholder hash (of the empty string),
 * SecureBootEnable 1, CustomMode 0. Its key is public: a store made from it (image/lib/ovmf-vars.ts) proves what
 * the firmware does, never that a machine is safe.
 */
export const OVMF_VARS_SNAKEOIL = '/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd';
/** The snakeoil private key (PEM, encrypted; passphrase OVMF_SNAKEOIL_PASSPHRASE) and its self-signed certificate. */
export const OVMF_SNAKEOIL_KEY = '/usr/share/ovmf/PkKek-1-snakeoil.key';
export const OVMF_SNAKEOIL_CERT = '/usr/share/ovmf/PkKek-1-snakeoil.pem';
export const OVMF_SNAKEOIL_PASSPHRASE = 'snakeoil';
