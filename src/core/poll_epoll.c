/* epoll backend of the poller (poller.h): every fd registered once,
 * edge-triggered (EPOLLET) for EPOLLIN | EPOLLOUT | EPOLLRDHUP, the token
 * in epoll_event.data. epoll_wait looks at each fd again before it
 * reports it (ep_send_events polls the file), so a report is the fd's
 * readiness at that wait, never an older one; EPOLL_CTL_MOD with the same
 * interest polls the fd too and queues a report if it is ready (the
 * level-triggered look of a watch that is not fresh). The wake channel
 * is an eventfd registered level-triggered under a token the fd registry
 * never makes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/poller.h"

#include "ctx/valgrind_compat.h"

#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif
#ifndef WEFT__TSAN
#define WEFT__TSAN 0
#endif

struct weft__poller {
  int epfd;
  int wakefd; /* eventfd: written by weft__poller_wake */
};

/* fd.c's tokens have the fd in their low 32 bits, never all ones. */
#define WAKE_TOKEN UINT64_MAX

weft__poller *weft__poller_new(void) {
  weft__poller *p = malloc(sizeof *p);
  if (!p) return NULL;
  p->wakefd = -1;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) goto fail;
  p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wakefd < 0) goto fail;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0) goto fail;
  return p;
fail:;
  int e = errno;
  if (p->wakefd >= 0) close(p->wakefd);
  if (p->epfd >= 0) close(p->epfd);
  free(p);
  errno = e;
  return NULL;
}

void weft__poller_stop(weft__poller *p) {
  if (p->epfd >= 0) close(p->epfd);
  p->epfd = -1;
}

void weft__poller_free(weft__poller *p) {
  if (!p) return;
  weft__poller_stop(p);
  close(p->wakefd);
  free(p);
}

void weft__poller_wake(weft__poller *p) {
  uint64_t one = 1;
  ssize_t r = write(p->wakefd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is full, so the wait returns anyway */
}

int weft__poller_watch(weft__poller *p, int fd, uint64_t token, bool fresh) {
  if (fd == p->epfd || fd == p->wakefd) return -EBADF;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.u64 = token};
  if (epoll_ctl(p->epfd, fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
    return -errno;
  return 0;
}

int weft__poller_forget(weft__poller *p, int fd) {
  if (fd == p->epfd || fd == p->wakefd) return -EBADF;
  struct epoll_event ev = {0}; /* kernels before 2.6.9 want one */
  return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev) != 0 ? -errno : 0;
}

int weft__poller_wait(weft__poller *p, weft__pevent *out, int max,
                      int64_t timeout_ns, bool *woken) {
  struct epoll_event evs[256];
  if (max > 256) max = 256;
  int n;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
  /* epoll_pwait2 takes nanoseconds: timers fire on time, not rounded up
   * to the next millisecond. Kernels before 5.11 lack it: fall back. */
  /* -1: unknown, 0: use it, 1: not available (valgrind 3.19 lacks it;
   * gcc 12's ThreadSanitizer does not intercept it, and holds back a
   * signal that arrives during the wait until the next call it does
   * intercept: a signal handler that wakes the loop would wait too). */
  static __thread int no_pwait2 __attribute__((tls_model("initial-exec"))) = -1;
  if (no_pwait2 < 0) no_pwait2 = RUNNING_ON_VALGRIND || WEFT__TSAN ? 1 : 0;
  if (!no_pwait2) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
      ts = weft__timespec(timeout_ns);
      tsp = &ts;
    }
    n = epoll_pwait2(p->epfd, evs, max, tsp, NULL);
    if (n < 0 && errno == ENOSYS) no_pwait2 = 1;
    else goto got;
  }
#endif
  {
    int ms = timeout_ns < 0 ? -1
             : timeout_ns > (int64_t)2000000000 * 1000000 ? 2000000000
             : (int)((timeout_ns + 999999) / 1000000);
    n = epoll_wait(p->epfd, evs, max, ms);
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
got:
#endif
  if (n < 0) return errno == EINTR ? 0 : -errno;
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (evs[i].data.u64 == WAKE_TOKEN) {
      uint64_t v;
      ssize_t r = read(p->wakefd, &v, sizeof v);
      (void)r;
      *woken = true;
      continue;
    }
    unsigned e = 0;
    if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) e |= WEFT_READABLE;
    if (evs[i].events & EPOLLOUT) e |= WEFT_WRITABLE;
    if (evs[i].events & EPOLLERR) e |= WEFT_ERROR | WEFT_READABLE | WEFT_WRITABLE;
    if (evs[i].events & EPOLLHUP) e |= WEFT_HANGUP | WEFT_READABLE;
    if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) e |= WEFT__EV_RDHUP;
    out[k].token = evs[i].data.u64;
    out[k++].events = e;
  }
  return k;
}
