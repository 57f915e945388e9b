/*
 * UDP endpoints (include/weft/io.h): asyncio's create_datagram_endpoint.
 *
 * A weft_udp is a non-blocking SOCK_DGRAM socket and the loop that made
 * it. Every call tries its system call first and waits for readiness
 * only when the kernel says EAGAIN (weft__fd_wait: the registry's cache,
 * no epoll_ctl per wait), so a datagram that is already there costs one
 * recvmsg and no trip through the poller. A wait
 * cut short by a scope takes nothing from the socket: the datagram stays
 * for the next recv.
 *
 * Names: a numeric host is parsed here (getaddrinfo with AI_NUMERICHOST
 * never blocks); any other name is resolved off the loop with
 * weft_getaddrinfo, and the addresses it gives are tried in order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/internal.h"


struct weft_udp {
  int fd;
  bool connected;
  weft_loop *loop;
};

/* ---- addresses ------------------------------------------------------- */

/* Resolves host:port for a datagram socket into *res (freeaddrinfo).
 * host NULL: the wildcard of `family` (AF_INET if 0), for bind. 0 or a
 * negative code (weft_getaddrinfo's: -ENXIO, -ECANCELED, WEFT_ENOTASK...). */
static int resolve(const char *host, int port, int family, bool passive,
                   struct addrinfo **res) {
  char serv[8];
  snprintf(serv, sizeof serv, "%d", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  if (!host) {
    hints.ai_family = family ? family : AF_INET;
    hints.ai_flags |= AI_NUMERICHOST;
    int rc = getaddrinfo(NULL, serv, &hints, res);
    if (rc == EAI_MEMORY) return -ENOMEM;
    return rc ? -EAFNOSUPPORT : 0;
  }
  hints.ai_family = family;
  /* "[::1]" as well as "::1". */
  char buf[INET6_ADDRSTRLEN + 16];
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof buf) {
    memcpy(buf, host + 1, hl - 2);
    buf[hl - 2] = '\0';
    host = buf;
  }
  if (!*host) return -EINVAL;
  /* Numeric first: no resolver, no pool, no wait. */
  struct addrinfo nh = hints;
  nh.ai_flags |= AI_NUMERICHOST;
  int rc = getaddrinfo(host, serv, &nh, res);
  if (rc == 0) return 0;
  if (rc == EAI_MEMORY) return -ENOMEM;
  if (rc == EAI_FAMILY) return -EAFNOSUPPORT;
  return weft_getaddrinfo(host, serv, &hints, res);
}

/* ---- making endpoints ------------------------------------------------ */

static int open_socket(const struct addrinfo *ai, const weft_udp_opts *o) {
  int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0) return -errno;
  int one = 1;
  if ((o->reuse_port &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      (o->broadcast &&
       setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0)) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

static weft_udp *make(const char *host, int port, const weft_udp_opts *opts,
                      bool connect_) {
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__null_errno(weft__misuse(connect_ ? "weft_udp_connect"
                                                        : "weft_udp_bind",
                                               WEFT_ENOTASK));
  weft_udp_opts o = {0};
  if (opts) o = *opts;
  if (o.family != 0 && o.family != AF_INET && o.family != AF_INET6)
    return weft__null_errno(-EINVAL);
  if (port < (connect_ ? 1 : 0) || port > 65535 || (connect_ && !host))
    return weft__null_errno(-EINVAL);
  weft_udp *u = malloc(sizeof *u);
  if (!u) return weft__null_errno(-ENOMEM);
  struct addrinfo *res = NULL;
  int rc = resolve(host, port, o.family, !connect_, &res);
  if (rc) {
    free(u);
    return weft__null_errno(rc);
  }
  rc = -ENXIO;
  int fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    fd = open_socket(ai, &o);
    if (fd < 0) {
      rc = fd;
      if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM) break;
      continue;
    }
    /* A connect of a datagram socket only sets its peer: it never waits. */
    int r = connect_ ? connect(fd, ai->ai_addr, ai->ai_addrlen)
                     : bind(fd, ai->ai_addr, ai->ai_addrlen);
    if (r == 0) break;
    rc = -errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    free(u);
    return weft__null_errno(rc);
  }
  u->fd = fd;
  weft__fd_adopt(fd); /* waits trust the readiness cache: see recv */
  u->connected = connect_;
  u->loop = L;
  return u;
}

weft_udp *weft_udp_bind(const char *host, int port, const weft_udp_opts *opts) {
  return make(host, port, opts, false);
}

weft_udp *weft_udp_connect(const char *host, int port,
                           const weft_udp_opts *opts) {
  return make(host, port, opts, true);
}

int weft_udp_port(const weft_udp *u) {
  if (!u) return -EINVAL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(u->fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -EAFNOSUPPORT;
}

int weft_udp_fd(const weft_udp *u) { return u ? u->fd : -EINVAL; }

/* ---- sending and receiving ------------------------------------------- */

/* The checks of a call that may wait: u's loop runs on this thread and
 * the caller is one of its tasks, not cancelled. 0 or the code. */
static inline int enter(const weft_udp *u, const char *func) {
  weft_loop *L = weft__tls_loop;
  if (weft__unlikely(!L)) return weft__misuse(func, WEFT_ENOTASK);
  if (weft__unlikely(L != u->loop)) return weft__misuse(func, WEFT_ELOOP);
  weft_task *t = L->current;
  if (weft__unlikely(!t)) return weft__misuse(func, WEFT_ENOTASK);
  return weft__checkpoint_io(L, t);
}

static const weft__wait_kind send_kind = {"udp send", NULL};
static const weft__wait_kind recv_kind = {"udp recv", NULL};

static int send_dgram(weft_udp *u, const void *buf, size_t n,
                      const struct sockaddr *addr, socklen_t len) {
  int fd = u->fd; /* u may be freed while we wait (close wakes us -EBADF) */
  for (;;) {
    ssize_t r = sendto(fd, buf, n, MSG_NOSIGNAL, addr, len);
    if (r >= 0) return 0;
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) return -e;
    /* The cache, not weft_wait_fd: no epoll_ctl per wait (fd.c). */
    weft__fd_clear(fd, WEFT_WRITABLE);
    int rc = weft__fd_wait(fd, WEFT_WRITABLE, WEFT_FOREVER, &send_kind, u);
    if (rc < 0) return rc;
  }
}

int weft_udp_send(weft_udp *u, const void *buf, size_t n) {
  if (!u) return -EINVAL;
  int rc = enter(u, __func__);
  if (rc) return rc;
  if (!buf && n) return -EINVAL;
  if (!u->connected) return -EDESTADDRREQ;
  return send_dgram(u, buf, n, NULL, 0);
}

int weft_udp_send_to(weft_udp *u, const void *buf, size_t n,
                     const struct sockaddr *addr, socklen_t len) {
  if (!u) return -EINVAL;
  int rc = enter(u, __func__);
  if (rc) return rc;
  if ((!buf && n) || !addr || len == 0) return -EINVAL;
  /* Linux would send to addr anyway; the contract says a connected
   * endpoint talks to its peer only. */
  if (u->connected) return -EISCONN;
  return send_dgram(u, buf, n, addr, len);
}

ssize_t weft_udp_recv(weft_udp *u, void *buf, size_t n,
                      struct sockaddr_storage *from, socklen_t *fromlen) {
  if (!u) return -EINVAL;
  int rc = enter(u, __func__);
  if (rc) return rc;
  if ((!buf && n) || (from && !fromlen)) return -EINVAL;
  int fd = u->fd;
  struct sockaddr_storage ss;
  for (;;) {
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = from ? (void *)from : (void *)&ss;
    mh.msg_namelen = sizeof ss;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t r = recvmsg(fd, &mh, 0);
    if (r >= 0) {
      if (fromlen) *fromlen = from ? mh.msg_namelen : 0;
      return (mh.msg_flags & MSG_TRUNC) ? -EMSGSIZE : r;
    }
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) return -e;
    weft__fd_clear(fd, WEFT_READABLE);
    rc = weft__fd_wait(fd, WEFT_READABLE, WEFT_FOREVER, &recv_kind, u);
    if (rc < 0) return rc;
  }
}

int weft_udp_close(weft_udp *u) {
  if (!u) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  /* From the loop's thread (a task or not), or from a thread with no loop
   * at all (after weft_run returned): then there is nobody to wake. */
  if (L && L != u->loop) return weft__misuse(__func__, WEFT_ELOOP);
  /* Waiters wake with -EBADF; they hold the fd number, never u. */
  weft_fd_close(u->fd);
  weft__name_forget(u);
  free(u);
  return 0;
}
