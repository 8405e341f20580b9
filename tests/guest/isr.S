/* SPDX-License-Identifier: MIT */
/*
 * Interrupt entry stubs and the CPL0 -> CPL3 switch.  Every instruction at
 * CPL0 is emulated (~1 us each), so the two hot paths, the timer tick and
 * the "wait for interrupt" syscall, have short dedicated stubs; everything
 * else goes through the generic C dispatcher.
 */
#include "layout.h"

	.code64
	.text

	/* 256 stubs of 16 bytes each: isr_stubs + 16 * vector. */
	.balign	16
	.globl	isr_stubs
isr_stubs:
	.set	vec, 0
	.rept	256
	.balign	16
	.if	(vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	/* The CPU pushed an error code. */
	.else
	pushq	$0
	.endif
	pushq	$vec
	jmp	isr_common
	.set	vec, vec + 1
	.endr

isr_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi
	cld
	call	interrupt_dispatch
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	addq	$16, %rsp
	iretq

	/* LAPIC timer: count and EOI, nothing else. */
	.globl	isr_timer
isr_timer:
	pushq	%rax
	incq	jiffies(%rip)
	movq	lapic_base(%rip), %rax
	movl	$0, 0xb0(%rax)
	popq	%rax
	iretq

	/*
	 * Device interrupts (MSI-X): VEC_COUNT_NUM stubs of 32 bytes from
	 * VEC_COUNT_BASE on, each counting in irq_count[vector] and sending
	 * EOI; CPL3 reads the counts.
	 */
	.balign	32
	.globl	isr_count
isr_count:
	.set	vec, VEC_COUNT_BASE
	.rept	VEC_COUNT_NUM
	.balign	32
	pushq	%rax
	incq	irq_count + 8 * vec
	movq	lapic_base(%rip), %rax
	movl	$0, 0xb0(%rax)
	popq	%rax
	iretq
	.set	vec, vec + 1
	.endr

	/*
	 * int $0x80 from CPL3.  SYS_WAIT halts until an interrupt arrives
	 * (sti's one-instruction shadow makes sti; hlt race-free); the rest
	 * goes to C.
	 */
	.globl	isr_syscall
isr_syscall:
	testq	%rax, %rax
	jnz	1f
	sti
	hlt
	cli
	iretq
1:	pushq	$0
	pushq	$VEC_SYSCALL
	jmp	isr_common

	/*
	 * #UD.  On KVM-PVM hosts without 32-bit syscall emulation an
	 * "int $0x80" at CPL3 never reaches our gate: it comes back as #UD
	 * with RIP at the instruction.  Recognise that and treat it as the
	 * syscall it was meant to be; anything else is a real #UD.
	 */
	.globl	isr_ud
isr_ud:
	cmpq	$SEL_UCODE64, 8(%rsp)
	jne	2f
	pushq	%rax
	movq	8(%rsp), %rax
	cmpw	$0x80cd, (%rax)
	popq	%rax
	jne	2f
	addq	$2, (%rsp)
	jmp	isr_syscall
2:	pushq	$0
	pushq	$6
	jmp	isr_common

	/*
	 * enter_user(fn, arg0, arg1, stack_top): iretq to fn at CPL3 with
	 * IOPL=3, so that port I/O and cli/sti work without leaving CPL3.
	 */
	.globl	enter_user
enter_user:
	subq	$8, %rcx		/* as if fn had been called */
	pushq	$SEL_UDATA
	pushq	%rcx
	pushq	$USER_RFLAGS
	pushq	$SEL_UCODE64
	pushq	%rdi
	movq	%rsi, %rdi
	movq	%rdx, %rsi
	iretq
