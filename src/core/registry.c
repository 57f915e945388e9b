/*
 * What the task dump, the trace and the weft-ps socket share: the names
 * given to objects (weft_set_name), the process's list of loops, and the
 * measuring of each task's run time.
 *
 * Names live in one table for the process, keyed by the object's
 * address, under a mutex: they are set rarely and read only by dumps and
 * traces. Free functions forget their object's name; while no object has
 * a name that costs one relaxed load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

/* ---- object names ------------------------------------------------------ */

typedef struct name_slot {
  const void *obj; /* NULL: empty; TOMB: deleted */
  char *name;
} name_slot;

#define TOMB ((const void *)1)

static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static name_slot *names;
static size_t names_cap, names_used; /* used: live + tombstones */
static atomic_size_t names_live;

static size_t hash_ptr(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)x;
}

/* The slot of obj, or NULL. Under names_mu. */
static name_slot *find(const void *obj) {
  if (!names_cap) return NULL;
  for (size_t i = hash_ptr(obj) & (names_cap - 1);; i = (i + 1) & (names_cap - 1)) {
    if (names[i].obj == obj) return &names[i];
    if (!names[i].obj) return NULL;
  }
}

/* Room for one more entry (rehashing away tombstones). Under names_mu. */
static int reserve(void) {
  if ((names_used + 1) * 4 < names_cap * 3) return 0;
  size_t live = atomic_load_explicit(&names_live, memory_order_relaxed);
  size_t cap = 16;
  while ((live + 1) * 2 > cap) cap *= 2;
  name_slot *a = calloc(cap, sizeof *a);
  if (!a) return -ENOMEM;
  for (size_t i = 0; i < names_cap; i++) {
    if (!names[i].obj || names[i].obj == TOMB) continue;
    size_t j = hash_ptr(names[i].obj) & (cap - 1);
    while (a[j].obj) j = (j + 1) & (cap - 1);
    a[j] = names[i];
  }
  free(names);
  names = a;
  names_cap = cap;
  names_used = live;
  return 0;
}

static void slot_clear(name_slot *s) {
  free(s->name);
  s->name = NULL;
  s->obj = TOMB;
  atomic_fetch_sub_explicit(&names_live, 1, memory_order_relaxed);
}

int weft_set_name(const void *object, const char *name) {
  if (!object) return -EINVAL;
  char *copy = NULL;
  if (name && !(copy = strdup(name))) return -ENOMEM;
  int rc = 0;
  pthread_mutex_lock(&names_mu);
  name_slot *s = find(object);
  if (s) {
    if (copy) {
      free(s->name);
      s->name = copy;
      copy = NULL;
    } else {
      slot_clear(s);
    }
  } else if (copy) {
    if ((rc = reserve()) == 0) {
      size_t i = hash_ptr(object) & (names_cap - 1);
      while (names[i].obj && names[i].obj != TOMB) i = (i + 1) & (names_cap - 1);
      if (!names[i].obj) names_used++;
      names[i].obj = object;
      names[i].name = copy;
      copy = NULL;
      atomic_fetch_add_explicit(&names_live, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&names_mu);
  free(copy);
  return rc;
}

size_t weft__name_get(const void *obj, char *buf, size_t n) {
  if (n) buf[0] = '\0';
  if (!obj || !n || !atomic_load_explicit(&names_live, memory_order_relaxed))
    return 0;
  size_t len = 0;
  pthread_mutex_lock(&names_mu);
  name_slot *s = find(obj);
  if (s) {
    len = strlen(s->name);
    if (len >= n) len = n - 1;
    memcpy(buf, s->name, len);
    buf[len] = '\0';
  }
  pthread_mutex_unlock(&names_mu);
  return len;
}

void weft__name_forget(const void *obj) {
  if (!obj || !atomic_load_explicit(&names_live, memory_order_relaxed)) return;
  pthread_mutex_lock(&names_mu);
  name_slot *s = find(obj);
  if (s) slot_clear(s);
  pthread_mutex_unlock(&names_mu);
}

/* ---- the process's loops ------------------------------------------------ */

static pthread_mutex_t loops_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_loop *loops_head;
static uint64_t loops_seq;

/* fork: neither table may be caught half-changed by another thread, and
 * the child keeps only the loop of the thread that forked (the others'
 * threads do not exist there: a dump would wait for them in vain). */
static void fork_prepare(void) {
  pthread_mutex_lock(&names_mu);
  pthread_mutex_lock(&loops_mu);
}
static void fork_parent(void) {
  pthread_mutex_unlock(&loops_mu);
  pthread_mutex_unlock(&names_mu);
}
static void fork_child(void) {
  weft_loop *self = weft__tls_loop;
  loops_head = self;
  if (self) {
    self->reg_next = NULL;
    self->tid = (int)gettid();
  }
  pthread_mutex_unlock(&loops_mu);
  pthread_mutex_unlock(&names_mu);
}
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void fork_hooks(void) {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void weft__loop_register(weft_loop *L) {
  L->tid = (int)gettid();
  pthread_once(&fork_once, fork_hooks);
  pthread_mutex_lock(&loops_mu);
  L->seq = ++loops_seq;
  L->reg_next = loops_head;
  loops_head = L;
  pthread_mutex_unlock(&loops_mu);
}

void weft__loop_unregister(weft_loop *L) {
  pthread_mutex_lock(&loops_mu);
  for (weft_loop **p = &loops_head; *p; p = &(*p)->reg_next)
    if (*p == L) {
      *p = L->reg_next;
      break;
    }
  pthread_mutex_unlock(&loops_mu);
}

int weft__loops_foreach(int (*fn)(weft_loop *L, void *arg), void *arg) {
  int rc = 0;
  pthread_mutex_lock(&loops_mu);
  for (weft_loop *L = loops_head; L && !rc; L = L->reg_next) rc = fn(L, arg);
  pthread_mutex_unlock(&loops_mu);
  return rc;
}

/* ---- run time ----------------------------------------------------------- */

static void stats_begin(weft_task *t, void *arg) {
  (void)arg;
  weft__body(t)->stats_start = weft__fast_now(t->loop);
}

static void stats_end(weft_task *t, void *arg) {
  (void)arg;
  weft__task_body *b = weft__body(t);
  b->run_ns += weft__fast_now(t->loop) - b->stats_start;
}

const weft_instrument weft__stats_instrument = {
    .step_begin = stats_begin,
    .step_end = stats_end,
};
