# Ends the VM at its first instruction: al is 0 at entry, so this reports
# status 0. Used to measure dmavm's start-up and teardown cost.
        .include "common.inc"
        .text
        .globl _start
_start:
        out     EXIT_PORT, al
        hlt
