/*
 * Context switch for x86-64 (System V ABI).
 *
 * weft__ctx_switch(from, to) saves the callee-saved registers and the
 * floating-point control words (MXCSR, x87 control word) on the current
 * stack, stores the stack pointer in from->sp, loads to->sp and restores
 * the same set from there. Everything else is caller-saved, so the C
 * compiler has already spilled it around the call.
 *
 * A new context (see weft__ctx_init in ctx.c) is a stack prepared to look
 * as if weft__ctx_switch had saved it, with its return address pointing at
 * weft__ctx_boot, which calls entry(arg) from r13/r12.
 */
        .text
        .globl  weft__ctx_switch
        .hidden weft__ctx_switch
        .type   weft__ctx_switch, @function
        .p2align 4
weft__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    (%rsi), %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   weft__ctx_switch, .-weft__ctx_switch

        .globl  weft__ctx_boot
        .hidden weft__ctx_boot
        .type   weft__ctx_boot, @function
        .p2align 4
weft__ctx_boot:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r12, %rdi
        callq   *%r13
        ud2                     /* entry never returns */
        .cfi_endproc
        .size   weft__ctx_boot, .-weft__ctx_boot

        .section .note.GNU-stack,"",@progbits
