# Raises #UD with an empty IDT: the CPU cannot deliver it and triple-faults.
        .include "common.inc"
        .text
        .globl _start
_start:
        ud2
