# Every vCPU reads its ID from its local APIC (register 0x20, bits 31:24)
# and, in vCPU index order, prints "cpu I apic A". vCPU 0 waits for all
# and exits 0; the others halt with interrupts off.
        .include "common.inc"
        .set LAPIC_ID, 0xfee00020
        .text
        .globl _start
_start:
        mov     r12, rdi                # this vCPU's index
        mov     r13, rsi                # vCPU count
        mov     eax, LAPIC_ID
        mov     r14d, dword ptr [rax]
        shr     r14d, 24                # APIC ID
        lea     r15, [rip + turn]
1:      pause                           # wait for our turn
        mov     rax, qword ptr [r15]
        cmp     rax, r12
        jne     1b
        lea     rsi, [rip + s_cpu]
        call    puts
        mov     rax, r12
        call    putdec
        lea     rsi, [rip + s_apic]
        call    puts
        mov     eax, r14d
        call    putdec
        mov     al, '\n'
        out     dx, al
        lock inc qword ptr [r15]        # next vCPU's turn
        test    r12, r12
        jnz     3f
2:      pause                           # vCPU 0: wait until all printed
        cmp     qword ptr [r15], r13
        jne     2b
        xor     eax, eax
        out     EXIT_PORT, al
3:      cli
        hlt
        jmp     3b

        .include "puts.inc"

# putdec: prints rax (< 1000) in decimal; leaves dx = COM1.
putdec: mov     dx, COM1
        mov     ecx, 10
        xor     r8d, r8d                # digits pushed
1:      xor     edx, edx
        div     rcx
        push    rdx
        inc     r8d
        test    rax, rax
        jnz     1b
        mov     dx, COM1
2:      pop     rax
        add     al, '0'
        out     dx, al
        dec     r8d
        jnz     2b
        ret

s_cpu:  .asciz  "cpu "
s_apic: .asciz  " apic "
        .balign 8
turn:   .quad   0
