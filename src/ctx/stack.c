/* Task stacks: see stack.h for the design. */
#define _GNU_SOURCE
#include "ctx/stack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctx/valgrind_compat.h"

#ifndef MAP_STACK
#define MAP_STACK 0
#endif

#define DEFAULT_STACK (128u * 1024u)
#define DEFAULT_POOL 1024u
#define SLAB_STACKS 64u

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

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
  s->debug = debug;
  /* Each guarded stack costs two mappings; keep half the budget for the
   * rest of the process (heap, libraries, sockets' buffers...). */
  s->guard_budget = read_max_map_count() / 4;
  return 0;
}

/* Lays the descriptor at the top of [lo, lo + span) and fills it in. */
static weft__stack *describe(weft__stacks *s, char *map, size_t map_size,
                             char *lo, size_t span, unsigned kind) {
  uintptr_t top = ((uintptr_t)lo + span - sizeof(weft__stack)) & ~(uintptr_t)63;
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

static weft__stack *carve_slab(weft__stacks *s) {
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
    size_t bytes = s->size * SLAB_STACKS;
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    s->slabs[s->nslabs] = m;
    s->slab_sizes[s->nslabs++] = bytes;
    s->slab_next = m;
    s->slab_left = SLAB_STACKS;
    if (s->debug && !s->fallback_reported) {
      s->fallback_reported = true;
      fprintf(stderr,
              "weft: debug: %zu guarded stacks reached the mapping budget "
              "(vm.max_map_count); further stacks have no guard page and a "
              "canary checked at every switch\n",
              s->nguarded);
    }
  }
  char *lo = s->slab_next;
  s->slab_next += s->size;
  s->slab_left--;
  return describe(s, lo, s->size, lo, s->size, WEFT__STACK_SLAB);
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
    } else if (s->guards && s->nguarded < s->guard_budget) {
      st = map_single(s, size);
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
  for (weft__stack *st = s->free, *n; st; st = n) {
    n = st->next;
    if (st->kind & WEFT__STACK_SLAB) {
      if (st->valgrind_id) VALGRIND_STACK_DEREGISTER(st->valgrind_id);
    } else {
      unmap_single(s, st);
    }
  }
  for (weft__stack *st = s->cold; st; st = st->next)
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
