/*
 * Outgoing connections (include/weft/io.h): asyncio's open_connection
 * with Happy Eyeballs (RFC 8305), and Unix stream sockets.
 *
 * The race runs in a private group. Its body starts one attempt (a child
 * task) per address, in the interleaved order of weft__he_order, and
 * between two starts sleeps in a scope of its own whose deadline is the
 * delay: an attempt that fails cancels that scope (weft_scope_cancel), so
 * the next one starts at once. The attempt that connects first keeps its
 * fd and cancels the group (weft_group_cancel): the body stops starting
 * attempts and the others, cancelled in weft_wait_fd, close their fds.
 * Attempts never fail the group (they return 0 and leave their error in
 * the race's record), so weft_group_close returns 0, or -ECANCELED when
 * the caller was cancelled: then a winner's fd is closed too. Every fd is
 * closed with weft_fd_close (it may be registered with the poller).
 */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/sock.h"

#define HE_DEFAULT_DELAY WEFT_MS(250)

typedef struct race {
  weft_group *g;
  const struct addrinfo *local;
  weft_scope *nap;   /* the body's delay scope while it sleeps, or NULL */
  unsigned failures; /* attempts that failed so far */
  int winner;        /* the connected fd, or -1 */
  int last_err;      /* error of the latest-started attempt that failed */
  size_t last_idx;   /* ... and its index */
  bool have_err;
} race;

typedef struct attempt {
  race *r;
  const struct addrinfo *ai;
  size_t idx;
} attempt;

static const struct addrinfo *local_for(const struct addrinfo *local, int family) {
  for (; local; local = local->ai_next)
    if (local->ai_family == family) return local;
  return NULL;
}

/* One non-blocking connect. The fd, or -errno (fd closed). */
static int connect_one(const struct addrinfo *ai, const struct addrinfo *local) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0) return -errno;
  int rc = 0;
  if (local) {
    const struct addrinfo *la = local_for(local, ai->ai_family);
    int one = 1;
    if (!la) {
      rc = -EADDRNOTAVAIL;
      goto fail;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, la->ai_addr, la->ai_addrlen) < 0) {
      rc = -errno;
      goto fail;
    }
  }
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
  if (errno != EINPROGRESS && errno != EINTR) {
    rc = -errno;
    goto fail;
  }
  rc = weft_wait_fd(fd, WEFT_WRITABLE);
  if (rc < 0) goto fail;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) {
    rc = -err;
    goto fail;
  }
  return fd;
fail:
  weft_fd_close(fd);
  return rc;
}

static int attempt_main(void *arg) {
  attempt *a = arg;
  race *r = a->r;
  int fd = connect_one(a->ai, r->local);
  if (fd >= 0) {
    if (r->winner < 0) {
      r->winner = fd;
      weft_group_cancel(r->g); /* the body and the other attempts */
    } else {
      weft_fd_close(fd); /* two connected in the same turn: one wins */
    }
  } else if (fd != -ECANCELED || !weft_check_cancel()) {
    /* A failure (not this attempt being called off): keep the latest
     * started attempt's error, and start the next attempt now. */
    if (!r->have_err || a->idx >= r->last_idx) {
      r->have_err = true;
      r->last_err = fd;
      r->last_idx = a->idx;
    }
    r->failures++;
    if (r->nap) weft_scope_cancel(r->nap);
  }
  free(a);
  /* Never fails the group (the race reads r): 0, or -ECANCELED when
   * called off. */
  return weft__cancelled(weft__cur()) ? -ECANCELED : 0;
}

int weft__he_connect(const struct addrinfo *list, int64_t delay,
                     const struct addrinfo *local) {
  size_t n = weft__he_order(list, NULL, 0);
  if (!n) return -ENXIO;
  const struct addrinfo **order = malloc(n * sizeof *order);
  if (!order) return -ENOMEM;
  weft__he_order(list, order, n);
  race r = {.local = local, .winner = -1};
  r.g = weft_group_open();
  if (!r.g) {
    free(order);
    return errno == EPERM ? WEFT_ENOTASK : -errno;
  }
  int rc = 0;
  for (size_t i = 0; i < n && r.winner < 0; i++) {
    attempt *a = malloc(sizeof *a);
    if (!a) {
      rc = -ENOMEM;
      break;
    }
    *a = (attempt){.r = &r, .ai = order[i], .idx = i};
    if (!weft_group_spawn(r.g, attempt_main, a, NULL)) {
      rc = -errno;
      free(a);
      break;
    }
    if (i + 1 == n) break;
    /* Wait for the delay, or for any attempt to fail (a failure that
     * came before this point counts: then no wait). delay < 0: only for a
     * failure. */
    unsigned seen = r.failures;
    weft_scope nap;
    if (delay < 0)
      weft_scope_open(&nap, WEFT_FOREVER);
    else
      weft_scope_open_after(&nap, delay);
    r.nap = &nap;
    /* One attempt per address at most is in flight before we look, so
     * wait only if none failed since this attempt was started. */
    if (r.failures == seen) (void)weft_sleep_until(WEFT_FOREVER);
    r.nap = NULL;
    weft_scope_close(&nap);
    if (weft_check_cancel()) break; /* a winner, or the caller cancelled */
  }
  int crc = weft_group_close(r.g, NULL);
  free(order);
  if (crc == -ECANCELED) {
    if (r.winner >= 0) weft_fd_close(r.winner);
    return -ECANCELED;
  }
  if (r.winner >= 0) return r.winner;
  if (rc) return rc;
  if (r.have_err) return r.last_err;
  return crc < 0 ? crc : -ECONNREFUSED; /* not reached */
}

weft_stream *weft_tcp_connect(const char *host, int port,
                              const weft_connect_opts *opts) {
  static const weft_connect_opts defaults = {0};
  const weft_connect_opts *o = opts ? opts : &defaults;
  if (!host || port < 1 || port > 65535) return weft__null_errno(-EINVAL);
  if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
    return weft__null_errno(-EINVAL);
  if (o->local_port < 0 || o->local_port > 65535) return weft__null_errno(-EINVAL);
  weft_task *cur = weft__cur();
  if (!cur) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  weft_scope sc;
  if (o->timeout > 0) weft_scope_open_after(&sc, o->timeout);
  struct addrinfo *list = NULL, *local = NULL;
  int rc = weft__resolve(host, port, o->family, SOCK_STREAM, 0, &list);
  if (!rc && (o->local_host || o->local_port))
    rc = weft__resolve(o->local_host, o->local_port, o->family, SOCK_STREAM,
                       AI_PASSIVE, &local);
  int fd = rc;
  if (!rc) {
    int64_t delay = o->happy_eyeballs_delay ? o->happy_eyeballs_delay
                                            : HE_DEFAULT_DELAY;
    fd = weft__he_connect(list, delay, local);
  }
  if (list) freeaddrinfo(list);
  if (local) freeaddrinfo(local);
  if (o->timeout > 0 && weft_scope_close(&sc) == -ETIMEDOUT) {
    if (fd >= 0) weft_fd_close(fd);
    fd = -ETIMEDOUT;
  }
  if (fd < 0) return weft__null_errno(fd);
  weft__sock_tune(fd, o->nagle, o->keepalive);
  return weft_stream_open(fd, &o->stream); /* closes fd when it fails */
}

weft_stream *weft_unix_connect(const char *path, const weft_stream_opts *opts) {
  struct sockaddr_un sun;
  socklen_t len;
  if (!path) return weft__null_errno(-EINVAL);
  int rc = weft__unix_addr(path, &sun, &len);
  if (rc) return weft__null_errno(rc);
  weft_task *cur = weft__cur();
  if (!cur) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (weft__checkpoint(cur)) return weft__null_errno(-ECANCELED);
  struct addrinfo ai = {.ai_family = AF_UNIX,
                        .ai_socktype = SOCK_STREAM,
                        .ai_addr = (struct sockaddr *)&sun,
                        .ai_addrlen = len};
  /* A Unix listener with a full backlog refuses a non-blocking connect
   * with EAGAIN (there is nothing to wait on): try again a little later. */
  int fd;
  for (int64_t pause = WEFT_MS(1);; pause = pause < WEFT_MS(100) ? pause * 2 : pause) {
    fd = connect_one(&ai, NULL);
    if (fd != -EAGAIN) break;
    if ((rc = weft_sleep(pause)) < 0) {
      fd = rc;
      break;
    }
  }
  if (fd < 0) return weft__null_errno(fd);
  return weft_stream_open(fd, opts);
}
