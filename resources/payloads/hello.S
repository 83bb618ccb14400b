# Prints a greeting on COM1 and ends dmavm with status 7.
        .include "common.inc"
        .text
        .globl _start
_start:
        lea     rsi, [rip + msg]
        mov     dx, COM1
1:      lodsb
        test    al, al
        jz      2f
        out     dx, al
        jmp     1b
2:      mov     al, 7
        out     EXIT_PORT, al
        hlt
msg:    .asciz  "hello from dmavm\n"
