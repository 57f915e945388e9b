/* epoll backend of the poller (poller.h). Level-triggered. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/poller.h"

#include "ctx/valgrind_compat.h"

int weft__poller_create(weft__poller *p) {
  p->fd = epoll_create1(EPOLL_CLOEXEC);
  return p->fd < 0 ? -errno : 0;
}

void weft__poller_destroy(weft__poller *p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static uint32_t to_epoll(unsigned ev) {
  uint32_t e = 0;
  if (ev & WEFT_READABLE) e |= EPOLLIN | EPOLLRDHUP;
  if (ev & WEFT_WRITABLE) e |= EPOLLOUT;
  return e;
}

int weft__poller_ctl(weft__poller *p, int fd, unsigned was, unsigned events) {
  struct epoll_event ev = {.events = to_epoll(events), .data.fd = fd};
  int op = !events ? EPOLL_CTL_DEL : was ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(p->fd, op, fd, &ev) != 0) return -errno;
  return 0;
}

int weft__poller_wait(weft__poller *p, weft__pevent *out, int max,
                      int64_t timeout_ns) {
  struct epoll_event evs[256];
  if (max > 256) max = 256;
  int n;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
  /* epoll_pwait2 takes nanoseconds: timers fire on time, not rounded up
   * to the next millisecond. Kernels before 5.11 lack it: fall back. */
  /* -1: unknown, 0: use it, 1: not available (valgrind 3.19 lacks it) */
  static __thread int no_pwait2 __attribute__((tls_model("initial-exec"))) = -1;
  if (no_pwait2 < 0) no_pwait2 = RUNNING_ON_VALGRIND ? 1 : 0;
  if (!no_pwait2) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
      ts = weft__timespec(timeout_ns);
      tsp = &ts;
    }
    n = epoll_pwait2(p->fd, evs, max, tsp, NULL);
    if (n < 0 && errno == ENOSYS) no_pwait2 = 1;
    else goto got;
  }
#endif
  {
    int ms = timeout_ns < 0 ? -1
             : timeout_ns > (int64_t)2000000000 * 1000000 ? 2000000000
             : (int)((timeout_ns + 999999) / 1000000);
    n = epoll_wait(p->fd, evs, max, ms);
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
got:
#endif
  if (n < 0) return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    unsigned e = 0;
    if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) e |= WEFT_READABLE;
    if (evs[i].events & EPOLLOUT) e |= WEFT_WRITABLE;
    if (evs[i].events & EPOLLERR) e |= WEFT_ERROR | WEFT_READABLE | WEFT_WRITABLE;
    if (evs[i].events & EPOLLHUP) e |= WEFT_HANGUP | WEFT_READABLE;
    out[i].fd = evs[i].data.fd;
    out[i].events = e;
  }
  return n;
}
