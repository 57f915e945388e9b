/*
 * Fallback context backend on ucontext (makecontext/swapcontext), for
 * architectures without a hand-written switch. swapcontext saves the
 * signal mask with a system call, so it is about 50x slower than the
 * assembly backends; it is correct everywhere glibc provides it.
 */
#include "ctx/ctx.h"

#include <stdint.h>

#if defined(WEFT_CTX_UCONTEXT) && WEFT_CTX_UCONTEXT

/* makecontext passes int arguments only: split the pointers. */
static void boot(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
  uintptr_t e = ((uintptr_t)e_hi << 16 << 16) | e_lo;
  uintptr_t a = ((uintptr_t)a_hi << 16 << 16) | a_lo;
  ((void (*)(void *))e)((void *)a);
}

void weft__ctx_init(weft__ctx *c, void *lo, size_t size, void (*entry)(void *),
                    void *arg) {
  uintptr_t e = (uintptr_t)entry, a = (uintptr_t)arg;
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = lo;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = NULL;
  makecontext(&c->uc, (void (*)(void))boot, 4, (unsigned)(e >> 16 >> 16),
              (unsigned)e, (unsigned)(a >> 16 >> 16), (unsigned)a);
}

void weft__ctx_switch(weft__ctx *from, weft__ctx *to) {
  swapcontext(&from->uc, &to->uc);
}

const char *weft__ctx_backend(void) { return "ucontext"; }

#endif
