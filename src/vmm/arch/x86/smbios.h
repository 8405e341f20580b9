/* SMBIOS tables (DMTF DSP0134 3.x) from the "smbios" configuration: the
 * structures of types 0 (BIOS), 1 (system), 2 (baseboard, when given),
 * 3 (chassis), 11 (OEM strings, when given), 32 (boot) and 127 (end), and
 * two entry points to them: a 3.0 "_SM3_" one at the window's start and a
 * 2.8 "_SM_" one 32 bytes further.  kvmm has no firmware: the window is
 * in 0xF0000-0xFFFFF, where an OS booted without EFI (Linux's dmi_scan)
 * looks for the anchors on 16-byte boundaries. */
#ifndef KVMM_X86_SMBIOS_H
#define KVMM_X86_SMBIOS_H

#include <stdint.h>

#include "config.h"

#define SMBIOS3_EP_OFF		0x00	/* "_SM3_", 24 bytes */
#define SMBIOS2_EP_OFF		0x20	/* "_SM_", 31 bytes */
#define SMBIOS_TABLE_OFF	0x40	/* the structure table */

/* Strings kvmm fills in when the configuration leaves them out. */
#define SMBIOS_DEFAULT_VENDOR	"kvmm"
#define SMBIOS_DEFAULT_PRODUCT	"kvmm"

/* Writes the entry points and tables into BUF, SIZE bytes that the guest
 * sees at BASE (below 4 GiB).  Returns the bytes used, -ENOSPC when they do
 * not fit (nothing is written past SIZE) or -EINVAL for a BASE the 32-bit
 * entry point cannot address. */
int64_t smbios_build(const struct smbios_config *sm, void *buf, uint64_t base, uint64_t size);

#endif
