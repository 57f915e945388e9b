/* The growable FIFO ring of queues and channels (see ring.h). */
#include "sync/ring.h"

int weft__ring_init(weft__ring *r, size_t elem, size_t limit, size_t first) {
  memset(r, 0, sizeof *r);
  r->elem = elem;
  r->limit = limit;
  if (limit != SIZE_MAX && limit > SIZE_MAX / elem) return -EOVERFLOW;
  size_t n = limit < first ? limit : first;
  if (!n) return 0; /* a rendezvous channel: no buffer at all */
  if (n > SIZE_MAX / elem) return -EOVERFLOW;
  r->buf = malloc(n * elem);
  if (!r->buf) return -ENOMEM;
  r->slots = n;
  r->bytes = n * elem;
  return 0;
}

void weft__ring_destroy(weft__ring *r) {
  free(r->buf);
  r->buf = NULL;
  r->slots = r->bytes = r->count = r->head = r->tail = 0;
}

int weft__ring_grow(weft__ring *r) {
  if (r->slots >= r->limit) return -EAGAIN;
  size_t n = r->slots ? r->slots * 2 : 16;
  if (n < r->slots || n > r->limit) n = r->limit; /* doubling overflowed */
  if (n > SIZE_MAX / r->elem) return -ENOMEM;
  char *b = malloc(n * r->elem);
  if (!b) return -ENOMEM;
  /* Unwrap: the oldest item first. */
  size_t used = r->count * r->elem, first = r->bytes - r->head;
  if (first > used) first = used;
  if (used) {
    memcpy(b, r->buf + r->head, first);
    memcpy(b + first, r->buf, used - first);
  }
  free(r->buf);
  r->buf = b;
  r->slots = n;
  r->bytes = n * r->elem;
  r->head = 0;
  r->tail = used == r->bytes ? 0 : used;
  return 0;
}
