# Writes one byte to COM1, then exits with status 0: the same work as the
# 16-byte real-mode firmware used to time QEMU in resources/bench.
        .include "common.inc"
        .text
        .globl _start
_start:
        mov     al, 'x'
        mov     dx, COM1
        out     dx, al
        xor     eax, eax
        out     EXIT_PORT, al
        hlt
