/*
 * Tasks: records, spawn, join, detach, cancel, done callbacks, exit.
 *
 * Records come from chunks owned by the loop and are recycled through a
 * free list, so spawning allocates nothing in the steady state and a
 * stale handle never points at memory returned to malloc while the loop
 * lives (it may point at a recycled record: handles must not be used
 * after join/detach, or for group children after they finish).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/debug.h"
#include "core/internal.h"

/* Records are carved from chunks mapped with MAP_POPULATE: faulting in a
 * chunk's pages one at a time costs 1.4-3 us each on a VM, populating them
 * in one call about half that, and a burst of spawns touches many. Chunks
 * double in size, from 64 records to 16,384. */
static weft_task *record_alloc(weft_loop *L) {
  weft_task *t = L->free_tasks;
  if (t) {
    L->free_tasks = t->rq_next;
    return t;
  }
  if (!L->chunk_left) {
    size_t n = L->chunk_records ? L->chunk_records * 2 : 64;
    if (n > 16384) n = 16384;
    size_t hdr = (sizeof(task_chunk) + 63) & ~(size_t)63;
    size_t bytes = hdr + n * sizeof(weft_task);
    task_chunk *c = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (c == MAP_FAILED) return NULL;
    c->next = L->chunks;
    c->bytes = bytes;
    L->chunks = c;
    L->chunk_records = n;
    L->chunk_next = (char *)c + hdr;
    L->chunk_left = n;
  }
  t = (weft_task *)L->chunk_next;
  L->chunk_next += sizeof(weft_task);
  L->chunk_left--;
  return t;
}

/* t's extra part, made on first need; NULL if there is no memory. */
static task_extra *extra(weft_task *t) {
  if (!t->x) t->x = calloc(1, sizeof *t->x);
  return t->x;
}

void weft__task_set_msg(weft_task *t, char *m) {
  task_extra *x = m ? extra(t) : NULL;
  if (!x) {
    free(m);
    return;
  }
  free(x->msg);
  x->msg = m;
}

int weft__watch_add(weft_task *t, weft__watch *w) {
  task_extra *x = extra(t);
  if (!x) return -ENOMEM;
  weft__watch_link(&x->watches, w);
  return 0;
}

/* Unlinks and calls every node of a list of weft__watch. */
static void fire_watches(weft__watch **head, weft_task *t) {
  while (*head) {
    weft__watch *w = *head;
    weft__watch_del(w);
    w->fn(w, t);
  }
}

char *weft__task_take_msg(weft_task *t) {
  char *m = t->x ? t->x->msg : NULL;
  if (m) t->x->msg = NULL;
  return m;
}

weft_task *weft__task_new(weft_loop *L, weft_fn fn, void *arg,
                          const weft_spawn_opts *opts) {
  weft_task *t = record_alloc(L);
  if (!t) return NULL;
  t->loop = L;
  t->stack = NULL;
  t->scope = NULL;
  t->state = WEFT__T_NEW;
  t->fn = fn;
  t->arg = arg;
  t->flags = L->stopping ? TF_CANCEL : 0;
  t->result = 0;
  t->n_unarmed = 0;
  size_t kib = opts ? (opts->stack_size + 1023) / 1024 : 0;
  t->stack_size = kib > UINT32_MAX ? UINT32_MAX : (uint32_t)kib;
  t->id = ++L->next_id;
  t->parent_scope = NULL;
  t->joiner = NULL;
  t->group = NULL;
  t->x = NULL;
  if (opts && opts->name) { /* no memory: the task stays unnamed */
    char *name = strdup(opts->name);
    task_extra *x = name ? extra(t) : NULL;
    if (x)
      x->name = name;
    else
      free(name);
  }
  t->all_next = NULL;
  t->all_prev = L->all_tail;
  if (L->all_tail)
    L->all_tail->all_next = t;
  else
    L->all_head = t;
  L->all_tail = t;
  L->ntasks++;
  return t;
}

void weft__task_free(weft_loop *L, weft_task *t) {
  if (t->all_prev)
    t->all_prev->all_next = t->all_next;
  else
    L->all_head = t->all_next;
  if (t->all_next)
    t->all_next->all_prev = t->all_prev;
  else
    L->all_tail = t->all_prev;
  if (weft__unlikely(t->x)) {
    free(t->x->msg);
    free(t->x->name);
    for (done_cb *c = t->x->on_done, *n; c; c = n) {
      n = c->next;
      free(c);
    }
    free(t->x);
    t->x = NULL;
  }
  t->state = WEFT__T_FREE;
  t->flags = 0;
  t->rq_next = L->free_tasks;
  L->free_tasks = t;
}

void weft__task_start(weft_loop *L, weft_task *cur, weft_task *t, bool eager) {
  WEFT__INSTR(L, task_spawned, t);
  if (eager && cur && L->current == cur)
    weft__run_eager(L, cur, t);
  else
    weft__ready(L, t);
}

void weft__task_finish(weft_loop *L, weft_task *t) {
  weft__task_body *b = t->stack ? weft__body(t) : NULL; /* never ran: none */
  /* Scopes the body left open (a bug, reported in debug mode). */
  while (b && t->scope != &b->root) {
    weft__scope *s = t->scope;
    if (weft__unlikely(L->debug)) weft__debug_open_at_exit(t, s);
    weft__scope_pop(L, t, s);
  }
  /* With every scope closed, the root scope tells whether a delivered
   * cancellation was swallowed. */
  if (weft__unlikely(L->debug) && b) weft__debug_finished(t);
  t->state = WEFT__T_DONE;
  L->ntasks--;
  if (b) fire_watches(&b->exit_hooks, t); /* e.g. locks it still holds */
  WEFT__INSTR(L, task_exited, t);
  if (t->flags & TF_GROUP) weft__group_child_exit(L, t);
  if (weft__unlikely(t->flags & TF_OWNER)) weft__task_owner_exit(L, t);
  if (b) weft__scope_unlink(&b->root);
  t->stack = NULL; /* the caller frees it once off it */
  t->scope = NULL;
  if (t->joiner) {
    weft_task *j = t->joiner;
    t->joiner = NULL;
    weft__wake(j, 0);
  }
  if (t->x && (t->x->on_done || t->x->watches)) {
    weft_task *cur = L->current;
    L->current = NULL; /* callbacks may not block */
    for (done_cb *c = t->x->on_done; c; c = c->next) c->cb(t, c->arg);
    fire_watches(&t->x->watches, t);
    L->current = cur;
  }
  if (!(t->flags & TF_HANDLE)) weft__task_free(L, t);
}

/* ---- public ----------------------------------------------------------- */

weft_task *weft_spawn(weft_fn fn, void *arg, const weft_spawn_opts *opts) {
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (!fn) {
    errno = EINVAL;
    return NULL;
  }
  weft_task *t = weft__task_new(L, fn, arg, opts);
  if (!t) {
    errno = ENOMEM;
    return NULL;
  }
  t->flags |= TF_HANDLE;
  weft__task_start(L, L->current, t, opts && opts->eager);
  return t;
}

/* Common checks on a handle held by the caller (func: for misuse reports). */
#define check_handle(L, t) check_handle_(L, t, __func__)
static int check_handle_(weft_loop *L, const weft_task *t, const char *func) {
  if (!t) return -EINVAL;
  if (!L || t->loop != L) return weft__misuse(func, WEFT_ELOOP);
  if (t->state == WEFT__T_FREE) return -ESRCH;
  return 0;
}

int weft__task_check_joinable(weft_loop *L, const weft_task *cur,
                              const weft_task *t, const char *func) {
  int rc = check_handle_(L, t, func);
  if (rc) return rc;
  if (t == cur) return -EDEADLK;
  if (t->flags & (TF_GROUP | TF_ROOT)) return -EINVAL;
  if (!(t->flags & TF_HANDLE)) return -ESRCH;
  return 0;
}

int weft__describe_task(const weft_task *t, const void *obj, char *buf,
                        size_t n) {
  (void)t;
  const weft_task *o = obj;
  return snprintf(buf, n, "task %llu '%s'", (unsigned long long)o->id,
                  weft_task_name(o));
}
const weft__wait_kind weft__wk_join = {"join", weft__describe_task};

static void join_unpark(weft_task *j) {
  weft_task *t = weft__body(j)->wait_on.joinee;
  if (t && t->joiner == j) t->joiner = NULL;
}

/* t's result; frees it and the caller's handle. */
static int join_consume(weft_loop *L, weft_task *t) {
  int rc = t->result;
  t->flags &= ~TF_HANDLE;
  weft__task_free(L, t);
  return rc;
}

/* Waits for t until `deadline`. Returns t's result with *consumed set
 * (the handle is released), or an error with the handle still the
 * caller's: -ECANCELED when the wait was interrupted (*expired: by this
 * deadline). */
static int join(weft_task *t, int64_t deadline, bool *consumed, bool *expired,
                const char *func) {
  weft_loop *L = weft__tls_loop;
  *consumed = *expired = false;
  if (!t) return -EINVAL;
  if (!L || t->loop != L) return weft__misuse(func, WEFT_ELOOP);
  weft_task *cur = L->current;
  if (!cur) return weft__misuse(func, WEFT_ENOTASK);
  int rc = weft__task_check_joinable(L, cur, t, func);
  if (rc) return rc;
  if (t->joiner) return -EBUSY;
  if (weft__checkpoint(cur)) return -ECANCELED;
  if (t->state != WEFT__T_DONE) {
    t->joiner = cur;
    weft__body(cur)->wait_on.joinee = t;
    rc = deadline == WEFT_FOREVER
             ? weft__park(L, cur, join_unpark, &weft__wk_join, t)
             : weft__park_until(L, cur, join_unpark, &weft__wk_join, t,
                                deadline, expired);
    weft__body(cur)->wait_on.joinee = NULL;
    if (rc < 0) return rc;
  }
  *consumed = true;
  return join_consume(L, t);
}

int weft_join(weft_task *t) {
  bool consumed, expired;
  return join(t, WEFT_FOREVER, &consumed, &expired, __func__);
}

int weft_join_until(weft_task *t, int64_t deadline) {
  bool consumed, expired;
  int rc = join(t, deadline, &consumed, &expired, __func__);
  if (consumed || rc != -ECANCELED) return rc;
  /* Our deadline fired or we were cancelled: cancel t and wait for it to
   * finish, whatever happens to us meanwhile. */
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L->current;
  weft__task_cancel(t);
  if (t->state != WEFT__T_DONE) {
    t->joiner = cur;
    weft__park(L, cur, NULL, &weft__wk_join, t);
  }
  rc = join_consume(L, t);
  /* t's own outcome wins unless it ended cancelled: one that caught the
   * cancellation and returned a value, or whose cleanup failed, keeps
   * its code (asyncio >= 3.12, gh-86296). A timeout only when our own
   * deadline did it, with no outer cancellation in effect. */
  if (rc != -ECANCELED) return rc;
  return expired ? -ETIMEDOUT : -ECANCELED;
}

int weft_detach(weft_task *t) {
  weft_loop *L = weft__tls_loop;
  int rc = weft__task_check_joinable(L, NULL, t, __func__);
  if (rc) return rc;
  if (t->joiner) return -EBUSY;
  t->flags &= ~TF_HANDLE;
  if (t->state == WEFT__T_DONE) weft__task_free(L, t);
  return 0;
}

int weft_cancel(weft_task *t) {
  weft_loop *L = weft__tls_loop;
  int rc = check_handle(L, t);
  if (rc) return rc;
  if (t->state == WEFT__T_DONE) return 0;
  weft__task_cancel(t);
  return 0;
}

void weft__task_cancel(weft_task *t) {
  if (t->stack)
    weft__scope_cancel(&weft__body(t)->root);
  else
    t->flags |= TF_CANCEL; /* applied when it first runs */
}

bool weft_task_done(const weft_task *t) { return t && t->state >= WEFT__T_DONE; }

int weft_task_error(const weft_task *t, const char **msg) {
  if (!t || t->state == WEFT__T_FREE) return -EINVAL;
  if (t->state != WEFT__T_DONE) return -EAGAIN;
  if (msg) *msg = weft__task_msg(t);
  return t->result;
}

const char *weft_task_name(const weft_task *t) {
  if (!t) return "";
  if (!t->x || !t->x->name) { /* formatted on first use: spawning stays cheap */
    char buf[32];
    snprintf(buf, sizeof buf, "task-%llu", (unsigned long long)t->id);
    task_extra *x = extra((weft_task *)t);
    if (!x || !(x->name = strdup(buf))) return "task-?";
  }
  return t->x->name;
}

uint64_t weft_task_id(const weft_task *t) { return t ? t->id : 0; }

int weft_task_on_done(weft_task *t, void (*cb)(weft_task *, void *), void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!cb) return -EINVAL;
  int rc = check_handle(L, t);
  if (rc) return rc;
  if (t->state == WEFT__T_DONE) {
    cb(t, arg);
    return 0;
  }
  done_cb *c = malloc(sizeof *c);
  if (!c) return -ENOMEM;
  c->next = NULL;
  c->cb = cb;
  c->arg = arg;
  task_extra *x = extra(t);
  if (!x) {
    free(c);
    return -ENOMEM;
  }
  done_cb **p = &x->on_done;
  while (*p) p = &(*p)->next;
  *p = c;
  return 0;
}

weft_task *weft_current(void) { return weft__cur(); }

int weft_tasks_foreach(int (*cb)(weft_task *, void *), void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!cb) return -EINVAL;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  for (weft_task *t = L->all_head, *n; t; t = n) {
    n = t->all_next;
    if (t->state >= WEFT__T_DONE) continue;
    int rc = cb(t, arg);
    if (rc) return rc;
  }
  return 0;
}

int weft_fail(int code, const char *fmt, ...) {
  weft_task *t = weft__cur();
  if (!t || !fmt) return code;
  va_list ap;
  va_start(ap, fmt);
  char *m = weft__vformat(fmt, ap);
  va_end(ap);
  if (m) weft__task_set_msg(t, m);
  return code;
}


