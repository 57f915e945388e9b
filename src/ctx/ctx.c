/* Context initialisation for the assembly backends (switch_*.S). */
#include "ctx/ctx.h"

#include <stdint.h>
#include <string.h>

#if !(defined(WEFT_CTX_UCONTEXT) && WEFT_CTX_UCONTEXT)

extern void weft__ctx_boot(void);

#if defined(__x86_64__)
/* Frame popped by weft__ctx_switch: fp control words, r15, r14, r13, r12,
 * rbx, rbp, return address. */
void weft__ctx_init(weft__ctx *c, void *lo, size_t size, void (*entry)(void *),
                    void *arg) {
  uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
  uint64_t *f = (uint64_t *)(top - 64); /* 8 slots; after ret rsp == top */
  uint32_t fpcw[2] = {0x1F80, 0x037F};  /* MXCSR and x87 CW defaults */
  memcpy(&f[0], fpcw, sizeof fpcw);
  f[1] = 0;                   /* r15 */
  f[2] = 0;                   /* r14 */
  f[3] = (uintptr_t)entry;    /* r13 */
  f[4] = (uintptr_t)arg;      /* r12 */
  f[5] = 0;                   /* rbx */
  f[6] = 0;                   /* rbp: ends frame-pointer walks */
  f[7] = (uintptr_t)weft__ctx_boot;
  c->sp = f;
}
const char *weft__ctx_backend(void) { return "x86_64"; }
#elif defined(__aarch64__)
void weft__ctx_init(weft__ctx *c, void *lo, size_t size, void (*entry)(void *),
                    void *arg) {
  uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
  uint64_t *f = (uint64_t *)(top - 176);
  memset(f, 0, 176);
  f[0] = (uintptr_t)arg;             /* x19 */
  f[1] = (uintptr_t)entry;           /* x20 */
  f[10] = 0;                         /* x29 */
  f[11] = (uintptr_t)weft__ctx_boot; /* x30 */
  f[20] = 0;                         /* fpcr: round to nearest, no traps */
  c->sp = f;
}
const char *weft__ctx_backend(void) { return "aarch64"; }
#endif

#endif
