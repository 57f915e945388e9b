/*
 * The poller: the loop's one window onto the kernel's readiness API. Four
 * calls, as in Redis's ae: create, control (add/modify/delete interest in
 * one fd), wait, destroy. poll_epoll.c implements it on epoll; an
 * io_uring backend would be one more file behind the same functions.
 */
#ifndef WEFT_POLLER_H
#define WEFT_POLLER_H

#include <stdint.h>

typedef struct weft__poller {
  int fd;
} weft__poller;

typedef struct weft__pevent {
  int fd;
  unsigned events; /* WEFT_READABLE | WEFT_WRITABLE | WEFT_ERROR | WEFT_HANGUP */
} weft__pevent;

int weft__poller_create(weft__poller *p);
void weft__poller_destroy(weft__poller *p);
/* Sets the interest of fd to `events` (0: remove). `was` is the interest
 * the poller holds now (0: not registered). 0 or -errno. */
int weft__poller_ctl(weft__poller *p, int fd, unsigned was, unsigned events);
/* Waits up to timeout_ns (-1: forever, 0: poll) and fills out[0..max).
 * Returns the count, or -errno (-EINTR is returned as 0). */
int weft__poller_wait(weft__poller *p, weft__pevent *out, int max,
                      int64_t timeout_ns);

#endif
