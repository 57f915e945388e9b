/* Task stacks: see stack.h for the design. */
#define _GNU_SOURCE
#include "ctx/stack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ctx/valgrind_compat.h"

#ifndef MAP_STACK
#define MAP_STACK 0
#endif

#define DEFAULT_STACK (128u * 1024u)
#define DEFAULT_POOL 1024u
#define SLAB_STACKS 64u

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#define PIDFD_SELF_PROCESS (-10000) /* PIDFD_SELF: Linux 6.14 */

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Installs a guard on [p, p + len). The kernel must really refuse access
 * afterwards: an emulator (qemu-user) may accept the advice and ignore
 * it, so the probe below also checks that the kernel cannot read it. */
static bool guard_install(void *p, size_t len) {
  return madvise(p, len, MADV_GUARD_INSTALL) == 0;
}

bool weft__stack_guard_install_supported(void) {
  static atomic_int known = -1; /* threads may race here: same answer */
  int k = atomic_load_explicit(&known, memory_order_relaxed);
  if (k >= 0) return k;
  long pg = sysconf(_SC_PAGESIZE);
  size_t page = pg > 0 ? (size_t)pg : 4096;
  bool ok = false;
  char *m = mmap(NULL, page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int fds[2];
  if (m != MAP_FAILED && guard_install(m, page) && pipe(fds) == 0) {
    ok = write(fds[1], m, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
  }
  if (m != MAP_FAILED) munmap(m, page);
  atomic_store_explicit(&known, ok, memory_order_relaxed);
  return ok;
}

static size_t read_max_map_count(void) {
  size_t v = 65530;
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  if (f) {
    unsigned long x;
    if (fscanf(f, "%lu", &x) == 1 && x > 0) v = x;
    fclose(f);
  }
  return v;
}

int weft__stacks_init(weft__stacks *s, size_t size, size_t pool_max,
                      bool guards, bool debug) {
  memset(s, 0, sizeof *s);
  long pg = sysconf(_SC_PAGESIZE);
  s->page = pg > 0 ? (size_t)pg : 4096;
  s->size = round_up(size ? size : DEFAULT_STACK, s->page);
  if (s->size < 4 * s->page) s->size = 4 * s->page;
  s->pool_max = pool_max ? pool_max : DEFAULT_POOL;
  s->guards = guards;
  s->guard_install = guards && weft__stack_guard_install_supported();
  s->debug = debug;
  /* Each guarded stack costs two mappings; keep half the budget for the
   * rest of the process (heap, libraries, sockets' buffers...). */
  s->guard_budget = read_max_map_count() / 4;
  return 0;
}

/* Lays the descriptor at the top of [lo, lo + span) and fills it in.
 * The descriptor, the task's body below it and the first frames all sit
 * near the top of a page; were that at the same offset in every stack,
 * the hot lines of many tasks would compete for the same few cache sets
 * (a loop going round a thousand tasks misses on each). So successive
 * stacks shift their top down by 0, 64, ... 960 bytes, still within the
 * top page. */
static weft__stack *describe(weft__stacks *s, char *map, size_t map_size,
                             char *lo, size_t span, unsigned kind) {
  size_t color = (s->ncolored++ % 16) * 64;
  uintptr_t top =
      ((uintptr_t)lo + span - color - sizeof(weft__stack)) & ~(uintptr_t)63;
  weft__stack *st = (weft__stack *)top;
  st->next = NULL;
  st->lo = lo;
  st->size = (size_t)((char *)st - lo);
  st->map = map;
  st->map_size = map_size;
  st->kind = kind;
  st->valgrind_id = 0;
  if (RUNNING_ON_VALGRIND)
    st->valgrind_id = VALGRIND_STACK_REGISTER(lo, lo + span);
  /* A canary costs a second touched page; write it only where debug mode
   * checks it: stacks with no guard page. */
  if (s->debug && !(kind & WEFT__STACK_GUARDED))
    *(uint64_t *)lo = WEFT__STACK_CANARY;
  return st;
}

static weft__stack *map_single(weft__stacks *s, size_t size) {
  bool guard = s->guards && s->nguarded < s->guard_budget;
  size_t map_size = size + (guard ? s->page : 0);
  char *m = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (m == MAP_FAILED) return NULL;
  if (guard && mprotect(m, s->page, PROT_NONE) != 0) {
    /* Out of mappings after all: keep the stack, without a guard. */
    guard = false;
  }
  if (guard) s->nguarded++;
  char *lo = guard ? m + s->page : m;
  size_t span = map_size - (size_t)(lo - m);
  return describe(s, m, map_size, lo, span, guard ? WEFT__STACK_GUARDED : 0);
}

/* Guards for a whole new slab of `n` stacks of `unit` bytes, in one
 * system call where the kernel takes a vector (Linux 6.14), else one per
 * stack. False if some guard could not be installed. */
static bool slab_guards(weft__stacks *s, char *m, size_t unit, size_t n) {
  struct iovec iov[SLAB_STACKS];
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = m + i * unit;
    iov[i].iov_len = s->page;
  }
  /* valgrind warns about system calls it does not know, as this one. */
  if (!RUNNING_ON_VALGRIND &&
      syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, iov, n,
              MADV_GUARD_INSTALL, 0) == (long)(n * s->page))
    return true;
  for (size_t i = 0; i < n; i++)
    if (!guard_install(iov[i].iov_base, s->page)) return false;
  return true;
}

/* The next stack of the current slab (a new slab when it is used up).
 * With guard_install each stack of the slab is a guard page and the
 * stack above it; without, stacks are back to back. */
static weft__stack *carve_slab(weft__stacks *s) {
  size_t unit = s->size + (s->guard_install ? s->page : 0);
  if (s->slab_left == 0) {
    if (s->nslabs == s->cap_slabs) {
      size_t cap = s->cap_slabs ? s->cap_slabs * 2 : 16;
      void **a = realloc(s->slabs, cap * sizeof *a);
      if (!a) return NULL;
      s->slabs = a;
      size_t *z = realloc(s->slab_sizes, cap * sizeof *z);
      if (!z) return NULL;
      s->slab_sizes = z;
      s->cap_slabs = cap;
    }
    size_t bytes = unit * SLAB_STACKS;
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (s->guard_install && !slab_guards(s, m, unit, SLAB_STACKS)) {
      munmap(m, bytes); /* out of memory for page tables */
      return NULL;
    }
    s->slabs[s->nslabs] = m;
    s->slab_sizes[s->nslabs++] = bytes;
    s->slab_next = m;
    s->slab_left = SLAB_STACKS;
    if (s->debug && !s->guard_install && !s->fallback_reported) {
      s->fallback_reported = true;
      fprintf(stderr,
              "weft: debug: %zu guarded stacks reached the mapping budget "
              "(vm.max_map_count); further stacks have no guard page and a "
              "canary checked at every switch\n",
              s->nguarded);
    }
  }
  char *map = s->slab_next;
  s->slab_next += unit;
  s->slab_left--;
  if (s->guard_install)
    return describe(s, map, unit, map + s->page, s->size,
                    WEFT__STACK_SLAB | WEFT__STACK_GUARDED);
  return describe(s, map, unit, map, s->size, WEFT__STACK_SLAB);
}

weft__stack *weft__stack_get(weft__stacks *s, size_t size) {
  size = size ? round_up(size, s->page) : s->size;
  weft__stack *st;
  if (size == s->size) {
    if ((st = s->free) != NULL) {
      s->free = st->next;
      s->nfree--;
    } else if ((st = s->cold) != NULL) {
      s->cold = st->next;
    } else if (s->guards && !s->guard_install &&
               s->nguarded < s->guard_budget) {
      if ((st = map_single(s, size)) != NULL) s->nsingles++;
    } else {
      st = carve_slab(s);
    }
  } else {
    st = map_single(s, size);
    if (st) st->kind |= WEFT__STACK_CUSTOM;
  }
  if (!st) {
    errno = ENOMEM;
    return NULL;
  }
  s->live++;
  return st;
}

static void unmap_single(weft__stacks *s, weft__stack *st) {
  if (st->kind & WEFT__STACK_GUARDED) s->nguarded--;
  if (!(st->kind & WEFT__STACK_CUSTOM)) s->nsingles--;
  if (st->valgrind_id) VALGRIND_STACK_DEREGISTER(st->valgrind_id);
  munmap(st->map, st->map_size);
}

/* Gives back every page but the top one (which holds the descriptor). */
static void release_pages(weft__stacks *s, weft__stack *st) {
  uintptr_t top_page = (uintptr_t)st & ~(uintptr_t)(s->page - 1);
  uintptr_t lo = (uintptr_t)st->lo;
  if (top_page > lo) madvise(st->lo, top_page - lo, MADV_DONTNEED);
  if (s->debug && !(st->kind & WEFT__STACK_GUARDED))
    *(uint64_t *)st->lo = WEFT__STACK_CANARY;
}

void weft__stack_put(weft__stacks *s, weft__stack *st) {
  if (!st) return;
  s->live--;
  if (st->kind & WEFT__STACK_CUSTOM) {
    unmap_single(s, st);
    return;
  }
  /* In debug mode every task starts on a clean stack so that its
   * high-water mark (weft__stack_resident) is its own. */
  if (s->debug) release_pages(s, st);
  st->next = s->free;
  s->free = st;
  s->nfree++;
}

void weft__stacks_trim(weft__stacks *s, size_t max) {
  while (s->nfree > s->pool_max && max-- > 0) {
    weft__stack *st = s->free;
    s->free = st->next;
    s->nfree--;
    if (st->kind & WEFT__STACK_SLAB) {
      release_pages(s, st);
      st->next = s->cold;
      s->cold = st;
    } else {
      unmap_single(s, st);
    }
  }
}

void weft__stacks_destroy(weft__stacks *s) {
  /* Only single mappings and valgrind need a look at each free stack:
   * walking 100,000 slab stacks would touch 100,000 pages for nothing. */
  bool walk = s->nsingles || RUNNING_ON_VALGRIND;
  for (weft__stack *st = walk ? s->free : NULL, *n; st; st = n) {
    n = st->next;
    if (st->kind & WEFT__STACK_SLAB) {
      if (st->valgrind_id) VALGRIND_STACK_DEREGISTER(st->valgrind_id);
    } else {
      unmap_single(s, st);
    }
  }
  for (weft__stack *st = RUNNING_ON_VALGRIND ? s->cold : NULL; st; st = st->next)
    if (st->valgrind_id) VALGRIND_STACK_DEREGISTER(st->valgrind_id);
  for (size_t i = 0; i < s->nslabs; i++) munmap(s->slabs[i], s->slab_sizes[i]);
  free(s->slabs);
  free(s->slab_sizes);
  memset(s, 0, sizeof *s);
}

size_t weft__stack_resident(const weft__stacks *s, const weft__stack *st) {
  uintptr_t lo = (uintptr_t)st->lo & ~(uintptr_t)(s->page - 1);
  uintptr_t hi = round_up((uintptr_t)st + sizeof *st, s->page);
  size_t npages = (hi - lo) / s->page;
  unsigned char vec[512];
  size_t resident = 0;
  for (size_t done = 0; done < npages;) {
    size_t n = npages - done < sizeof vec ? npages - done : sizeof vec;
    if (mincore((void *)(lo + done * s->page), n * s->page, vec) != 0) break;
    for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
    done += n;
  }
  return resident * s->page;
}
