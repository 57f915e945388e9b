/*
 * Queues: FIFO (a ring), LIFO (a stack) and priority (a binary heap with
 * a sequence number per item, so that equal items come out in the order
 * they went in). Items are copied by value.
 *
 * Hand-offs keep the fast path short and the order exact: a getter only
 * waits while the queue is empty, so a put that finds one copies the item
 * straight into the getter's buffer; a putter only waits while the queue
 * is full, so a get that finds one moves the putter's item in behind the
 * one it took. Neither side switches tasks to do it: a producer filling a
 * queue of 128 runs until it is full, then the consumer drains it.
 */
#include "sync/ring.h"

enum { Q_FIFO, Q_LIFO, Q_PRIO };

struct weft_queue {
  weft__sobj h;
  uint8_t kind;
  bool shut;
  size_t cap;          /* as given: 0 = unbounded */
  weft__ring r;        /* FIFO ring; LIFO and heap use buf, slots, count */
  uint64_t *seq;       /* priority: insertion number of each slot */
  uint64_t next_seq;
  int (*cmp)(const void *, const void *);
  size_t unfinished;   /* put and not yet task_done */
  weft__wlist getters, putters, joiners;
};

_Static_assert(offsetof(weft_queue, h) == 0, "header first");

#define FIRST_SLOTS 128 /* allocated at creation (fewer if cap is less) */

static void queue_release(weft__sobj *o) {
  weft_queue *q = (weft_queue *)o;
  weft__ring_destroy(&q->r);
  free(q->seq);
  free(q);
}

static void queue_kill(weft__sobj *o) {
  weft_queue *q = (weft_queue *)o;
  wl_wake_all(&q->getters, -EIDRM);
  wl_wake_all(&q->putters, -EIDRM);
  wl_wake_all(&q->joiners, -EIDRM);
}

static int queue_describe(const weft_task *t, const void *obj, char *buf,
                          size_t n) {
  (void)t;
  const weft_queue *q = obj;
  if (!q->cap) return snprintf(buf, n, "%zu items", q->r.count);
  return snprintf(buf, n, "%zu of %zu items", q->r.count, q->cap);
}
static int qjoin_describe(const weft_task *t, const void *obj, char *buf,
                          size_t n) {
  (void)t;
  const weft_queue *q = obj;
  return snprintf(buf, n, "%zu unfinished", q->unfinished);
}
static const weft__wait_kind put_kind = {"queue put", queue_describe};
static const weft__wait_kind get_kind = {"queue get", queue_describe};
static const weft__wait_kind join_kind = {"queue join", qjoin_describe};

static weft_queue *queue_new(size_t cap, size_t elem, int kind,
                             int (*cmp)(const void *, const void *)) {
  if (!elem || (kind == Q_PRIO && !cmp)) {
    errno = EINVAL;
    return NULL;
  }
  if (cap > SIZE_MAX / elem) { /* the ring takes SIZE_MAX as "no limit" */
    errno = EOVERFLOW;
    return NULL;
  }
  weft_queue *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  sobj_init(&q->h, SO_QUEUE, queue_release);
  q->kind = (uint8_t)kind;
  q->cap = cap;
  q->cmp = cmp;
  int rc = weft__ring_init(&q->r, elem, cap ? cap : SIZE_MAX, FIRST_SLOTS);
  if (rc) goto fail;
  if (kind == Q_PRIO && !(q->seq = malloc(q->r.slots * sizeof *q->seq))) {
    rc = -ENOMEM;
    goto fail;
  }
  return q;
fail:
  weft__ring_destroy(&q->r);
  free(q);
  return weft__null_errno(rc);
}

weft_queue *weft_queue_new(size_t capacity, size_t elem_size) {
  return queue_new(capacity, elem_size, Q_FIFO, NULL);
}

weft_queue *weft_queue_new_lifo(size_t capacity, size_t elem_size) {
  return queue_new(capacity, elem_size, Q_LIFO, NULL);
}

weft_queue *weft_queue_new_priority(size_t capacity, size_t elem_size,
                                    int (*cmp)(const void *, const void *)) {
  return queue_new(capacity, elem_size, Q_PRIO, cmp);
}

int weft_queue_free(weft_queue *q) {
  return sobj_free(SOBJ(q), SO_QUEUE, __func__, queue_kill);
}

/* ---- storage ----------------------------------------------------------- */

static inline char *slot(const weft_queue *q, size_t i) {
  return q->r.buf + i * q->r.elem;
}

/* Is slot a before slot b in the heap? Ties go to the older item. */
static inline bool heap_less(const weft_queue *q, size_t a, size_t b) {
  int c = q->cmp(slot(q, a), slot(q, b));
  return c < 0 || (c == 0 && q->seq[a] < q->seq[b]);
}

static void heap_push(weft_queue *q, const void *item) {
  size_t i = q->r.count++;
  uint64_t seq = q->next_seq++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (q->cmp(item, slot(q, p)) >= 0) break; /* equal: the new one is younger */
    memcpy(slot(q, i), slot(q, p), q->r.elem);
    q->seq[i] = q->seq[p];
    i = p;
  }
  memcpy(slot(q, i), item, q->r.elem);
  q->seq[i] = seq;
}

static void heap_pop(weft_queue *q, void *out) {
  memcpy(out, slot(q, 0), q->r.elem);
  size_t n = --q->r.count, i = 0;
  if (!n) return;
  /* Sift the last item down from the root; its slot (n) is past the heap
   * now and never overwritten on the way. */
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(q, c + 1, c)) c++;
    if (!heap_less(q, c, n)) break;
    memcpy(slot(q, i), slot(q, c), q->r.elem);
    q->seq[i] = q->seq[c];
    i = c;
  }
  if (i != n) {
    memcpy(slot(q, i), slot(q, n), q->r.elem);
    q->seq[i] = q->seq[n];
  }
}

/* Room for one more item: 0, -EAGAIN (full), -ENOMEM. */
static int grow(weft_queue *q) {
  if (q->r.count < q->r.slots) return 0;
  if (q->r.slots >= q->r.limit) return -EAGAIN;
  size_t old = q->r.slots;
  int rc = weft__ring_grow(&q->r); /* LIFO and heap never wrap: head is 0 */
  if (rc || q->kind != Q_PRIO) return rc;
  uint64_t *s = realloc(q->seq, q->r.slots * sizeof *s);
  if (!s) { /* keep the ring and seq the same size */
    q->r.slots = old;
    q->r.bytes = old * q->r.elem;
    return -ENOMEM;
  }
  q->seq = s;
  return 0;
}

static inline void store_push(weft_queue *q, const void *item) {
  if (weft__likely(q->kind == Q_FIFO)) {
    ring_push(&q->r, item);
  } else if (q->kind == Q_LIFO) {
    item_copy(slot(q, q->r.count), item, q->r.elem);
    q->r.count++;
  } else {
    heap_push(q, item);
  }
}

static inline void store_pop(weft_queue *q, void *out) {
  if (weft__likely(q->kind == Q_FIFO)) {
    ring_pop(&q->r, out);
  } else if (q->kind == Q_LIFO) {
    q->r.count--;
    item_copy(out, slot(q, q->r.count), q->r.elem);
  } else {
    heap_pop(q, out);
  }
}

/* ---- put and get -------------------------------------------------------- */

/* Puts without waiting: 0, -EAGAIN (full), -ESHUTDOWN, -ENOMEM. */
static inline int offer(weft_queue *q, const void *item) {
  if (weft__unlikely(q->shut)) return -ESHUTDOWN;
  weft__waiter *w = q->getters.head;
  if (w) { /* the queue is empty: straight to the first getter */
    wl_pop(&q->getters);
    item_copy(w->item, item, q->r.elem);
    q->unfinished++;
    weft__wake(w->task, 0);
    return 0;
  }
  if (weft__unlikely(q->r.count == q->r.slots)) {
    int rc = grow(q);
    if (rc) return rc;
  }
  store_push(q, item);
  q->unfinished++;
  return 0;
}

/* Gets without waiting: 0, -EAGAIN (empty), WEFT_EEND (shut down and
 * empty). */
static inline int take(weft_queue *q, void *out) {
  if (weft__unlikely(!q->r.count)) return q->shut ? WEFT_EEND : -EAGAIN;
  store_pop(q, out);
  weft__waiter *w = q->putters.head;
  if (w) { /* the queue was full: the first putter's item moves in */
    wl_pop(&q->putters);
    store_push(q, w->item);
    q->unfinished++;
    weft__wake(w->task, 0);
  }
  return 0;
}

int weft_queue_put(weft_queue *q, const void *item) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  if (weft__unlikely(!item)) return -EINVAL;
  int rc = sobj_check_wait(SOBJ(q), SO_QUEUE, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  rc = offer(q, item);
  if (weft__likely(rc != -EAGAIN)) return rc;
  return sobj_wait(L, t, &q->putters, (void *)item, 0, true, &put_kind, q);
}

int weft_queue_get(weft_queue *q, void *out) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  if (weft__unlikely(!out)) return -EINVAL;
  int rc = sobj_check_wait(SOBJ(q), SO_QUEUE, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  rc = take(q, out);
  if (weft__likely(rc != -EAGAIN)) return rc;
  return sobj_wait(L, t, &q->getters, out, 0, true, &get_kind, q);
}

int weft_queue_try_put(weft_queue *q, const void *item) {
  if (!item) return -EINVAL;
  int rc = sobj_check(SOBJ(q), SO_QUEUE, weft__tls_loop, __func__);
  return rc ? rc : offer(q, item);
}

int weft_queue_try_get(weft_queue *q, void *out) {
  if (!out) return -EINVAL;
  int rc = sobj_check(SOBJ(q), SO_QUEUE, weft__tls_loop, __func__);
  return rc ? rc : take(q, out);
}

/* ---- task_done, join, shutdown ----------------------------------------- */

int weft_queue_task_done(weft_queue *q) {
  int rc = sobj_check(SOBJ(q), SO_QUEUE, weft__tls_loop, __func__);
  if (rc) return rc;
  if (!q->unfinished) return -EOVERFLOW;
  if (--q->unfinished == 0) wl_wake_all(&q->joiners, 0);
  return 0;
}

int weft_queue_join(weft_queue *q) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc = sobj_check_wait(SOBJ(q), SO_QUEUE, L, &t, __func__);
  if (rc) return rc;
  if (!q->unfinished) return 0;
  return sobj_wait(L, t, &q->joiners, NULL, 0, true, &join_kind, q);
}

int weft_queue_shutdown(weft_queue *q, bool immediate) {
  int rc = sobj_check(SOBJ(q), SO_QUEUE, weft__tls_loop, __func__);
  if (rc) return rc;
  q->shut = true;
  if (immediate && q->r.count) {
    size_t n = q->r.count;
    q->unfinished = q->unfinished > n ? q->unfinished - n : 0;
    ring_clear(&q->r);
    if (!q->unfinished) wl_wake_all(&q->joiners, 0);
  }
  /* Getters wait only on an empty queue: the end for them in both modes. */
  wl_wake_all(&q->getters, WEFT_EEND);
  wl_wake_all(&q->putters, -ESHUTDOWN);
  return 0;
}

size_t weft_queue_size(const weft_queue *q) {
  return sobj_live(q, SO_QUEUE) ? q->r.count : 0;
}

size_t weft_queue_capacity(const weft_queue *q) {
  return sobj_live(q, SO_QUEUE) ? q->cap : 0;
}

bool weft_queue_empty(const weft_queue *q) {
  return !sobj_live(q, SO_QUEUE) || q->r.count == 0;
}

bool weft_queue_full(const weft_queue *q) {
  return sobj_live(q, SO_QUEUE) && q->cap && q->r.count >= q->cap;
}
