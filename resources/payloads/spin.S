# Spins forever with interrupts off: only dmavm's own stop (a signal) ends it.
        .include "common.inc"
        .text
        .globl _start
_start:
1:      pause
        jmp     1b
