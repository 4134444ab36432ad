/* ARM semihosting calls (bkpt 0xab on M-profile), as QEMU implements them. */
#ifndef EBPROP_SEMIHOST_H
#define EBPROP_SEMIHOST_H

#include <stdint.h>

#define SEMIHOST_OPEN 0x01
#define SEMIHOST_CLOSE 0x02
#define SEMIHOST_WRITE0 0x04
#define SEMIHOST_WRITE 0x05
#define SEMIHOST_READ 0x06
#define SEMIHOST_GET_CMDLINE 0x15
#define SEMIHOST_EXIT 0x18

static inline int semihost_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline void semihost_write0(const char *text)
{
    semihost_call(SEMIHOST_WRITE0, text);
}

/* Status 0: ADP_Stopped_ApplicationExit (QEMU exits 0); else RunTimeErrorUnknown (exits 1). */
static inline void semihost_exit(int status)
{
    semihost_call(SEMIHOST_EXIT, (const void *)(uintptr_t)(status == 0 ? 0x20026 : 0x20023));
    for (;;) {
    }
}

#endif
