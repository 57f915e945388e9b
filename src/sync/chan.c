/*
 * Channels (Trio's memory channels): a ring of items (none for a
 * rendezvous) reached through send and receive handles.
 *
 * Lifetimes: each handle is a small record; closing it wakes the tasks
 * blocked through it (-EBADF), which never touch it again, and frees it.
 * The channel is freed when its last handle is closed.
 *
 * Hand-offs are those of the queue: a receiver waits only while nothing
 * is buffered and no sender waits, so a send that finds one copies the
 * item into its buffer; a sender waits only while the ring is full (or,
 * for a rendezvous, until a receiver comes), and the receiver that frees
 * a slot, or takes a rendezvous item, completes its send.
 */
#include "sync/ring.h"

typedef struct weft__chan {
  weft__sobj h;    /* loop binding; freed with its last handle */
  weft__ring r;
  size_t ntx, nrx; /* open handles */
  weft__wlist senders, receivers;
} weft__chan;

/* Both handle types share this layout; the header is for its tag. */
typedef struct handle {
  weft__sobj h;
  weft__chan *ch;
} handle;

struct weft_chan_tx {
  handle hd;
};
struct weft_chan_rx {
  handle hd;
};

_Static_assert(offsetof(weft__chan, h) == 0, "header first");
_Static_assert(offsetof(handle, h) == 0, "header first");

#define FIRST_SLOTS 128

static int chan_describe(const weft_task *t, const void *obj, char *buf,
                         size_t n) {
  (void)t;
  const weft__chan *ch = ((const handle *)obj)->ch;
  return snprintf(buf, n, "%zu buffered, %zu senders, %zu receivers",
                  ch->r.count, ch->ntx, ch->nrx);
}
static const weft__wait_kind send_kind = {"channel send", chan_describe};
static const weft__wait_kind recv_kind = {"channel recv", chan_describe};

static handle *handle_new(weft__chan *ch, uint32_t magic) {
  handle *hd = malloc(sizeof *hd);
  if (!hd) return NULL;
  sobj_init(&hd->h, magic, NULL);
  hd->ch = ch;
  if (magic == SO_CHAN_TX)
    ch->ntx++;
  else
    ch->nrx++;
  return hd;
}

weft_chan_ends weft_chan_open(size_t capacity, size_t elem_size) {
  weft_chan_ends ends = {NULL, NULL};
  if (!elem_size) {
    errno = EINVAL;
    return ends;
  }
  weft__chan *ch = calloc(1, sizeof *ch);
  if (!ch) {
    errno = ENOMEM;
    return ends;
  }
  sobj_init(&ch->h, SO_CHAN, NULL);
  int rc = weft__ring_init(&ch->r, elem_size, capacity, FIRST_SLOTS);
  if (rc) goto fail;
  handle *t = handle_new(ch, SO_CHAN_TX);
  handle *r = t ? handle_new(ch, SO_CHAN_RX) : NULL;
  if (!r) {
    free(t);
    rc = -ENOMEM;
    goto fail;
  }
  ends.tx = (weft_chan_tx *)t;
  ends.rx = (weft_chan_rx *)r;
  return ends;
fail:
  weft__ring_destroy(&ch->r);
  free(ch);
  errno = -rc;
  return ends;
}

/* The handle's channel after the checks common to every call, or NULL
 * with the code in *rc. */
static inline weft__chan *handle_chan(const void *p, uint32_t magic, int *rc) {
  const handle *hd = p;
  *rc = 0;
  if (weft__unlikely(!hd || hd->h.magic != magic)) {
    *rc = hd && hd->h.magic == SO_DEAD ? -EIDRM : -EINVAL;
    return NULL;
  }
  return hd->ch;
}

static void *clone_handle(void *p, uint32_t magic, const char *fn) {
  int rc;
  weft__chan *ch = handle_chan(p, magic, &rc);
  if (ch) rc = sobj_check(&ch->h, SO_CHAN, weft__tls_loop, fn);
  if (rc) return weft__null_errno(rc);
  return handle_new(ch, magic);
}

weft_chan_tx *weft_chan_tx_clone(weft_chan_tx *tx) {
  return clone_handle(tx, SO_CHAN_TX, __func__);
}

weft_chan_rx *weft_chan_rx_clone(weft_chan_rx *rx) {
  return clone_handle(rx, SO_CHAN_RX, __func__);
}

/* Wakes the waiters of l that came through handle hd with `code`. */
static void wake_handle(weft__wlist *l, handle *hd, int code) {
  for (weft__waiter *w = l->head, *n; w; w = n) {
    n = w->next;
    if (w->data == (uintptr_t)hd) {
      wl_remove(l, w);
      weft__wake(w->task, code);
    }
  }
}

static int close_handle(void *p, uint32_t magic, const char *fn) {
  int rc;
  handle *hd = p;
  weft__chan *ch = handle_chan(p, magic, &rc);
  if (!ch) return rc;
  weft_loop *L = weft__tls_loop;
  if (ch->h.loop && L && ch->h.loop != L) return weft__misuse(fn, WEFT_ELOOP);
  if (magic == SO_CHAN_TX) {
    wake_handle(&ch->senders, hd, -EBADF);
    if (--ch->ntx == 0) wl_wake_all(&ch->receivers, WEFT_EEND);
  } else {
    wake_handle(&ch->receivers, hd, -EBADF);
    if (--ch->nrx == 0) {
      wl_wake_all(&ch->senders, -EPIPE);
      ring_clear(&ch->r);
    }
  }
  weft__name_forget(hd);
  free(hd);
  if (!ch->ntx && !ch->nrx) {
    weft__ring_destroy(&ch->r);
    free(ch);
  }
  return 0;
}

int weft_chan_tx_close(weft_chan_tx *tx) {
  return close_handle(tx, SO_CHAN_TX, __func__);
}

int weft_chan_rx_close(weft_chan_rx *rx) {
  return close_handle(rx, SO_CHAN_RX, __func__);
}

/* ---- send and receive ------------------------------------------------- */

/* Sends without waiting: 0, -EAGAIN, -EPIPE, -ENOMEM. */
static inline int offer(weft__chan *ch, const void *item) {
  if (weft__unlikely(!ch->nrx)) return -EPIPE;
  weft__waiter *w = ch->receivers.head;
  if (w) {
    wl_pop(&ch->receivers);
    item_copy(w->item, item, ch->r.elem);
    weft__wake(w->task, 0);
    return 0;
  }
  int rc = ring_room(&ch->r);
  if (rc) return rc;
  ring_push(&ch->r, item);
  return 0;
}

/* Receives without waiting: 0, -EAGAIN, WEFT_EEND. */
static inline int take(weft__chan *ch, void *out) {
  weft__waiter *w = ch->senders.head;
  if (weft__likely(ch->r.count)) {
    ring_pop(&ch->r, out);
    if (w) { /* the ring was full: the first sender's item moves in */
      wl_pop(&ch->senders);
      ring_push(&ch->r, w->item);
      weft__wake(w->task, 0);
    }
    return 0;
  }
  if (w) { /* a rendezvous */
    wl_pop(&ch->senders);
    item_copy(out, w->item, ch->r.elem);
    weft__wake(w->task, 0);
    return 0;
  }
  return ch->ntx ? -EAGAIN : WEFT_EEND;
}

int weft_chan_send(weft_chan_tx *tx, const void *item) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc;
  if (weft__unlikely(!item)) return -EINVAL;
  weft__chan *ch = handle_chan(tx, SO_CHAN_TX, &rc);
  if (weft__unlikely(!ch)) return rc;
  rc = sobj_check_wait(&ch->h, SO_CHAN, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  rc = offer(ch, item);
  if (weft__likely(rc != -EAGAIN)) return rc;
  return sobj_wait(L, t, &ch->senders, (void *)item, (uintptr_t)tx, true,
                   &send_kind, tx);
}

int weft_chan_recv(weft_chan_rx *rx, void *out) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc;
  if (weft__unlikely(!out)) return -EINVAL;
  weft__chan *ch = handle_chan(rx, SO_CHAN_RX, &rc);
  if (weft__unlikely(!ch)) return rc;
  rc = sobj_check_wait(&ch->h, SO_CHAN, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  rc = take(ch, out);
  if (weft__likely(rc != -EAGAIN)) return rc;
  return sobj_wait(L, t, &ch->receivers, out, (uintptr_t)rx, true,
                   &recv_kind, rx);
}

int weft_chan_try_send(weft_chan_tx *tx, const void *item) {
  int rc;
  if (!item) return -EINVAL;
  weft__chan *ch = handle_chan(tx, SO_CHAN_TX, &rc);
  if (!ch) return rc;
  rc = sobj_check(&ch->h, SO_CHAN, weft__tls_loop, __func__);
  return rc ? rc : offer(ch, item);
}

int weft_chan_try_recv(weft_chan_rx *rx, void *out) {
  int rc;
  if (!out) return -EINVAL;
  weft__chan *ch = handle_chan(rx, SO_CHAN_RX, &rc);
  if (!ch) return rc;
  rc = sobj_check(&ch->h, SO_CHAN, weft__tls_loop, __func__);
  return rc ? rc : take(ch, out);
}
