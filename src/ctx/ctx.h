/*
 * Execution contexts: the lowest layer of weft. A context is a stack
 * pointer (assembly backends) or a ucontext_t (fallback). Switching saves
 * only what the ABI says a called function must preserve.
 */
#ifndef WEFT_CTX_H
#define WEFT_CTX_H

#include <stddef.h>

#if !defined(WEFT_CTX_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define WEFT_CTX_UCONTEXT 1
#endif

#if defined(WEFT_CTX_UCONTEXT) && WEFT_CTX_UCONTEXT
#include <ucontext.h>
typedef struct weft__ctx {
  ucontext_t uc;
} weft__ctx;
#else
typedef struct weft__ctx {
  void *sp;
} weft__ctx;
#endif

/* Saves the running context in *from and resumes *to. Returns when some
 * other context switches back to *from. */
void weft__ctx_switch(weft__ctx *from, weft__ctx *to);

/* Prepares *c so that the first switch to it runs entry(arg) on the stack
 * [lo, lo + size). entry must never return: it ends by switching away. */
void weft__ctx_init(weft__ctx *c, void *lo, size_t size, void (*entry)(void *),
                    void *arg);

/* Name of the compiled backend: "x86_64", "aarch64" or "ucontext". */
const char *weft__ctx_backend(void);

#endif
