# Echoes COM1 input back to COM1 (polling the line status register), and
# exits with status 0 when it reads 'q'. Tests console input.
        .include "common.inc"
        .set LSR, COM1 + 5
        .text
        .globl _start
_start:
1:      mov     dx, LSR
        in      al, dx
        test    al, 1                   # data ready?
        jz      1b
        mov     dx, COM1
        in      al, dx
        out     dx, al
        cmp     al, 'q'
        jne     1b
        xor     eax, eax
        out     EXIT_PORT, al
        hlt
