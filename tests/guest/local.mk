# SPDX-License-Identifier: MIT
#
# Test guest build: tests/guest/kvmm-testguest.bzImage, and the same program
# as a PVH-bootable ELF, tests/guest/kvmm-testguest-pvh.elf.
#
# Plain GNU make, meant to be included by the top-level Makefile.am and
# usable on its own from the repository top directory:
#	make -f tests/guest/local.mk tests/guest/kvmm-testguest.bzImage
# Sources come from $(srcdir)/tests/guest when automake defines srcdir, so
# VPATH builds work; products go to tests/guest/ in the build tree.

GUEST_SRC ?= $(or $(srcdir),.)/tests/guest
GUEST_OUT ?= tests/guest
GUEST_CC ?= gcc
GUEST_LD ?= ld
GUEST_OBJCOPY ?= objcopy
GUEST_OPT ?= -O2 -g

GUEST_BZIMAGE = $(GUEST_OUT)/kvmm-testguest.bzImage
GUEST_ELF = $(GUEST_OUT)/kvmm-testguest.elf

GUEST_C_NAMES = acpi apic blk_bench bootparams cpu cpuhp crc32 fmt fwinfo highmem hotplug live main mmio net_bench net_offload pci pm pvh \
	report serial shell smp string timer virtio virtio_blk virtio_console \
	virtio_net virtio_rng virtio_balloon
GUEST_S_NAMES = header entry16 entry32 entry64 isr pagetables trampoline
GUEST_HDRS = $(addprefix $(GUEST_SRC)/,bootparam.h guest.h io.h layout.h \
	pci.h types.h virtio.h virtio_net.h)
GUEST_C_OBJS = $(GUEST_C_NAMES:%=$(GUEST_OUT)/%.o)
GUEST_S_OBJS = $(GUEST_S_NAMES:%=$(GUEST_OUT)/%.o)

# Freestanding, no SSE/x87 (never touched at CPL0 or anywhere else), no
# red zone (CPL0 interrupts land on the current stack), no CET endbr64
# (the CPL0 instruction emulator may not know it), no memset/memcpy calls
# synthesised from our own memset/memcpy loops.
GUEST_C_FLAGS = $(GUEST_OPT) -std=gnu11 -m64 -march=x86-64 -nostdinc \
	-ffreestanding -fno-pic -fno-pie -fno-common -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fcf-protection=none -fno-tree-loop-distribute-patterns \
	-mgeneral-regs-only -mno-red-zone -mcmodel=small \
	-Wall -Wextra -Wno-unused-parameter -Wmissing-prototypes \
	-Wstrict-prototypes
GUEST_AS_FLAGS = -m64 -nostdinc -D__ASSEMBLY__ -g
GUEST_LINK_FLAGS = -nostdlib -static -z noexecstack -z max-page-size=4096 \
	--build-id=none \
	$(shell $(GUEST_LD) --help 2>/dev/null | grep -q no-warn-rwx-segments \
		&& echo --no-warn-rwx-segments)

$(GUEST_BZIMAGE): $(GUEST_ELF)
	$(GUEST_OBJCOPY) -O binary $(GUEST_ELF) $@

$(GUEST_ELF): $(GUEST_S_OBJS) $(GUEST_C_OBJS) $(GUEST_SRC)/guest.ld
	$(GUEST_LD) $(GUEST_LINK_FLAGS) -T $(GUEST_SRC)/guest.ld -o $@ \
		$(GUEST_S_OBJS) $(GUEST_C_OBJS)

$(GUEST_C_OBJS): $(GUEST_OUT)/%.o: $(GUEST_SRC)/%.c $(GUEST_HDRS)
	@mkdir -p $(GUEST_OUT)
	$(GUEST_CC) $(GUEST_C_FLAGS) -c -o $@ $<

$(GUEST_S_OBJS): $(GUEST_OUT)/%.o: $(GUEST_SRC)/%.S $(GUEST_HDRS)
	@mkdir -p $(GUEST_OUT)
	$(GUEST_CC) $(GUEST_AS_FLAGS) -c -o $@ $<

# PVH ELF: no real-mode setup, plus the PVH entry and its ELF note.
GUEST_PVH_ELF = $(GUEST_OUT)/kvmm-testguest-pvh.elf
GUEST_PVH_OBJS = $(filter-out $(GUEST_OUT)/header.o $(GUEST_OUT)/entry16.o, \
	$(GUEST_S_OBJS)) $(GUEST_OUT)/entrypvh.o $(GUEST_C_OBJS)

$(GUEST_PVH_ELF): $(GUEST_PVH_OBJS) $(GUEST_SRC)/pvh.ld
	$(GUEST_LD) $(GUEST_LINK_FLAGS) -T $(GUEST_SRC)/pvh.ld -o $@ \
		$(GUEST_PVH_OBJS)

$(GUEST_OUT)/entrypvh.o: $(GUEST_SRC)/entrypvh.S $(GUEST_HDRS)
	@mkdir -p $(GUEST_OUT)
	$(GUEST_CC) $(GUEST_AS_FLAGS) -c -o $@ $<

# Test loader for the 32- and 64-bit entries under QEMU (see mbshim.c).
GUEST_MBSHIM = $(GUEST_OUT)/kvmm-testguest-mbshim.elf
GUEST_MBSHIM_OBJS = $(GUEST_OUT)/mbshim-S.o $(GUEST_OUT)/mbshim-c.o
GUEST_MBSHIM_CFLAGS = -O2 -m32 -march=i686 -nostdinc -ffreestanding -fno-pic \
	-fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fcf-protection=none -mgeneral-regs-only \
	-fno-tree-loop-distribute-patterns -Wall -Wextra

$(GUEST_MBSHIM): $(GUEST_MBSHIM_OBJS) $(GUEST_SRC)/mbshim.ld
	$(GUEST_LD) -m elf_i386 $(GUEST_LINK_FLAGS) -T $(GUEST_SRC)/mbshim.ld \
		-o $@ $(GUEST_MBSHIM_OBJS)

$(GUEST_OUT)/mbshim-S.o: $(GUEST_SRC)/mbshim.S
	@mkdir -p $(GUEST_OUT)
	$(GUEST_CC) -m32 -nostdinc -c -o $@ $<

$(GUEST_OUT)/mbshim-c.o: $(GUEST_SRC)/mbshim.c
	@mkdir -p $(GUEST_OUT)
	$(GUEST_CC) $(GUEST_MBSHIM_CFLAGS) -c -o $@ $<

.PHONY: guest guest-clean
guest: $(GUEST_BZIMAGE) $(GUEST_PVH_ELF) $(GUEST_MBSHIM)

guest-clean:
	rm -f $(GUEST_BZIMAGE) $(GUEST_ELF) $(GUEST_C_OBJS) $(GUEST_S_OBJS) \
		$(GUEST_MBSHIM) $(GUEST_MBSHIM_OBJS) $(GUEST_PVH_ELF) \
		$(GUEST_OUT)/entrypvh.o
