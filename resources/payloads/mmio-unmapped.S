# Writes to and reads from an MMIO address where no device sits; dmavm must
# report the accesses and keep the guest running (reads return all ones).
        .include "common.inc"
        .text
        .globl _start
_start:
        mov     rbx, 0xd0000000
        mov     dword ptr [rbx], 0x12345678
        mov     r12d, dword ptr [rbx]
        lea     rsi, [rip + msg]
        call    puts
        mov     eax, r12d
        call    puthex32
        mov     al, '\n'
        out     dx, al
        xor     eax, eax
        out     EXIT_PORT, al
        hlt

        .include "puts.inc"

# puthex32: prints eax as 8 lowercase hex digits.
puthex32:
        mov     ecx, 8
        mov     edi, eax
        mov     dx, COM1
1:      rol     edi, 4
        mov     eax, edi
        and     eax, 0xf
        lea     rbx, [rip + hexdigits]
        mov     al, byte ptr [rbx + rax]
        out     dx, al
        dec     ecx
        jnz     1b
        ret

msg:    .asciz  "mmio survived value="
hexdigits: .ascii "0123456789abcdef"
