/*
 * A FIFO ring of fixed-size items that grows on demand up to a limit:
 * the buffer of queues and channels. Offsets are kept in bytes, so a push
 * or a pop is one copy, one add and one compare.
 */
#ifndef WEFT_SYNC_RING_H
#define WEFT_SYNC_RING_H

#include "sync/sobj.h"

typedef struct weft__ring {
  char *buf;
  size_t elem;  /* bytes per item */
  size_t slots; /* items the buffer holds now */
  size_t limit; /* most it may grow to (SIZE_MAX: no limit) */
  size_t count;
  size_t head;  /* byte offset of the oldest item */
  size_t tail;  /* byte offset of the next free slot */
  size_t bytes; /* slots * elem */
} weft__ring;

/* Sets up r for items of elem bytes, at most `limit`, allocating room for
 * min(limit, first) items. 0, -EOVERFLOW (limit * elem overflows, unless
 * limit is SIZE_MAX), -ENOMEM. */
WEFT__HIDDEN int weft__ring_init(weft__ring *r, size_t elem, size_t limit,
                                 size_t first);
WEFT__HIDDEN void weft__ring_destroy(weft__ring *r);
/* Makes room for one more item: 0, -EAGAIN (at the limit), -ENOMEM. */
WEFT__HIDDEN int weft__ring_grow(weft__ring *r);
/* Room for one more item, growing if need be: 0, -EAGAIN, -ENOMEM. */
static inline int ring_room(weft__ring *r) {
  return weft__likely(r->count < r->slots) ? 0 : weft__ring_grow(r);
}

/* Appends an item; there must be room. */
static inline void ring_push(weft__ring *r, const void *item) {
  item_copy(r->buf + r->tail, item, r->elem);
  r->tail += r->elem;
  if (r->tail == r->bytes) r->tail = 0;
  r->count++;
}

/* Moves the oldest item out; there must be one. */
static inline void ring_pop(weft__ring *r, void *out) {
  item_copy(out, r->buf + r->head, r->elem);
  r->head += r->elem;
  if (r->head == r->bytes) r->head = 0;
  r->count--;
}

/* Drops every item. */
static inline void ring_clear(weft__ring *r) {
  r->count = r->head = r->tail = 0;
}

#endif
