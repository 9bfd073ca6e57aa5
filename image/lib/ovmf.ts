// The UEFI firmware for booting disk.raw like real hardware (q35): Debian's ovmf package (image/setup.sh installs it).
/** The firmware code (read-only pflash). */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
/** The template of its variable store: each VM gets its own writable copy (the firmware writes boot entries). */
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
