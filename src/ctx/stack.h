/*
 * Task stacks: mmap'd with a guard page below each, kept in a bounded
 * pool for reuse.
 *
 * On Linux 6.13 and later, stacks are carved from large slabs (one
 * mapping for 64 stacks) and each gets a guard page with
 * MADV_GUARD_INSTALL, which marks page-table entries and costs no
 * mapping: every stack has a guard, a million of them fit, and making one
 * costs about a tenth of an mmap plus an mprotect.
 *
 * On older kernels a guarded stack is its own mapping and costs two
 * entries of the process's vm.max_map_count (65,530 by default): the
 * guard splits it. weft then spends at most half of that budget on guards;
 * past it, stacks are carved without guards from slabs, with a canary
 * word at the bottom that debug mode checks at every switch. A million
 * tasks fit on a stock kernel either way.
 *
 * The descriptor (weft__stack) lives in the top bytes of the stack
 * itself, in the page a task touches first anyway.
 */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { WEFT__STACK_GUARDED = 1, WEFT__STACK_SLAB = 2, WEFT__STACK_CUSTOM = 4 };

#define WEFT__STACK_CANARY 0x77656674c0ffee11ULL

typedef struct weft__stack {
  struct weft__stack *next; /* free list */
  char *lo;                 /* lowest usable byte (canary there) */
  size_t size;              /* usable bytes, from lo up to this struct */
  char *map;                /* mapping start (guard page included) */
  size_t map_size;
  unsigned kind;
  unsigned valgrind_id;
} weft__stack;

typedef struct weft__stacks {
  size_t page;
  size_t size;      /* default usable size (page multiple) */
  size_t pool_max;  /* free stacks kept warm */
  size_t nfree;     /* stacks in `free` */
  weft__stack *free; /* warm free stacks of the default size, LIFO */
  weft__stack *cold; /* slab stacks whose pages were given back */
  size_t guard_budget; /* max guarded stacks alive at once */
  size_t nguarded;
  size_t nsingles;   /* default-size stacks with a mapping of their own */
  bool guards;       /* guard pages wanted */
  bool guard_install; /* MADV_GUARD_INSTALL works: guarded slabs */
  bool debug;
  bool fallback_reported;
  char *slab_next;   /* uncarved part of the current slab */
  size_t slab_left;  /* stacks left in it */
  void **slabs;      /* every slab mapping, for destroy */
  size_t *slab_sizes;
  size_t nslabs, cap_slabs;
  size_t live;       /* stacks handed out */
  size_t ncolored;   /* stacks made so far: picks each one's top offset */
} weft__stacks;

/* size: default usable bytes (0: 128 KiB); pool_max (0: 1024). */
int weft__stacks_init(weft__stacks *s, size_t size, size_t pool_max,
                      bool guards, bool debug);
/* Whether this kernel installs guard pages without mappings
 * (MADV_GUARD_INSTALL, Linux 6.13); probed once per process. */
bool weft__stack_guard_install_supported(void);
/* Frees every mapping. Stacks still handed out become invalid. */
void weft__stacks_destroy(weft__stacks *s);

/* A stack of at least `size` usable bytes (0: default), or NULL (ENOMEM). */
weft__stack *weft__stack_get(weft__stacks *s, size_t size);
/* Whether st, a stack being given up, can serve as is a task asking for
 * `size` bytes (0: default): what weft__stack_get would hand out, short
 * of a trip through the pool. Never in debug mode, where every task
 * starts on a clean stack (see weft__stack_put). */
static inline bool weft__stack_fits(const weft__stacks *s,
                                    const weft__stack *st, size_t size) {
  size = (size + s->page - 1) & ~(s->page - 1);
  return !(st->kind & WEFT__STACK_CUSTOM) && !s->debug &&
         (size == 0 || size == s->size);
}
/* Returns a stack to the pool. */
void weft__stack_put(weft__stacks *s, weft__stack *st);
/* Gives up to `max` pool stacks beyond pool_max back to the kernel
 * (SIZE_MAX: all of them). The loop calls it, a few at a time, when it is
 * about to sleep, so that a burst of exits pays no system calls and a
 * loop that sleeps often does not stall on a long trim. */
void weft__stacks_trim(weft__stacks *s, size_t max);

/* The guard page range of st, or NULL/0 when unguarded. */
static inline bool weft__stack_in_guard(const weft__stack *st, const void *p) {
  return (st->kind & WEFT__STACK_GUARDED) && (const char *)p >= st->map &&
         (const char *)p < st->lo;
}
static inline bool weft__stack_canary_ok(const weft__stack *st) {
  return *(const uint64_t *)st->lo == WEFT__STACK_CANARY;
}
/* Bytes of the stack resident in memory (mincore), an upper bound on the
 * high-water mark since the pages were last given back. */
size_t weft__stack_resident(const weft__stacks *s, const weft__stack *st);

#endif
