/* QEMU's firmware configuration interface (docs/specs/fw_cfg.rst in QEMU)
 * as far as the guest kernel's qemu_fw_cfg driver needs it for
 * <features><vmcoreinfo/>: the selector (port 0x510, 16-bit), the data
 * port (0x511) and the DMA interface (0x514, big-endian address, "QEMU
 * CFG" when read); keys signature, ID (traditional + DMA), the file
 * directory, and one writable file, etc/vmcoreinfo.  The DSDT describes
 * it as QEMU0002, the device Linux's driver binds to.
 *
 * Linux writes {guest_format 1 (ELF), size, paddr} of its VMCOREINFO
 * note into etc/vmcoreinfo when the driver loads; kvmm logs it, and
 * names it in its report when the guest crashes, so a dump of the
 * guest's memory can be read with the kernel's own description. */
#ifndef KVMM_FW_CFG_H
#define KVMM_FW_CFG_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct device;

#define FW_CFG_PORT_SEL		0x00	/* offsets from the base port */
#define FW_CFG_PORT_DATA	0x01
#define FW_CFG_PORT_DMA		0x04	/* 8 bytes: high, then low 32 bits */
#define FW_CFG_PORT_LEN		0x0C

#define FW_CFG_SIGNATURE	0x0000
#define FW_CFG_ID		0x0001
#define FW_CFG_FILE_DIR		0x0019
#define FW_CFG_FILE_FIRST	0x0020
#define FW_CFG_ENTRY_MASK	0x3FFF	/* without the write-channel and arch bits */

#define FW_CFG_VERSION		0x01	/* ID bits: the traditional interface */
#define FW_CFG_VERSION_DMA	0x02	/* ... and DMA */

#define FW_CFG_DMA_ERROR	0x01
#define FW_CFG_DMA_READ		0x02
#define FW_CFG_DMA_SKIP		0x04
#define FW_CFG_DMA_SELECT	0x08
#define FW_CFG_DMA_WRITE	0x10
#define FW_CFG_DMA_SIGNATURE	0x51454d5520434647ULL	/* "QEMU CFG" */

#define FW_CFG_VMCOREINFO_FILE	"etc/vmcoreinfo"
#define FW_CFG_VMCOREINFO_SIZE	16	/* le16 host_format, le16 guest_format, le32 size, le64 paddr */
#define FW_CFG_VMCOREINFO_ELF	1

struct device *fw_cfg_create(struct vm *vm, uint16_t port);

/* What the guest wrote into etc/vmcoreinfo: true and the note's guest
 * address and size if it gave an ELF note, false otherwise (or without
 * a fw_cfg device).  Safe from any thread. */
bool fw_cfg_vmcoreinfo(struct vm *vm, uint64_t *paddr, uint32_t *size);

#endif
