/*
 * Servers (include/weft/io.h): asyncio's start_server / serve_forever.
 *
 * weft_server_serve opens a group whose body is the accept loop; every
 * connection runs in a child task of that group, named after the peer.
 * The task holds the connection's stream (weft__stream_hold) while the
 * handler runs and releases it after, and it always returns 0: a
 * handler's failure is reported (on_error, or a line on stderr) and the
 * server goes on, instead of failing the group. Cancelling serve's
 * caller cancels the group, so the handlers too.
 *
 * Stopping closes the listening socket with weft_fd_close, which wakes
 * the accept loop's wait (weft__fd_wait) with -EBADF (and a back-off
 * sleep is cut short through its scope); serve then waits in weft_group_close
 * for the handlers. weft_server_shutdown waits for serve to return: it
 * parks (core's park/wake, with its deadline as a private scope:
 * weft__park_until) and the end of serve wakes it. At the deadline it
 * cancels the group and waits again, this time without a deadline.
 */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/sock.h"

#define BACKOFF_MIN WEFT_MS(10)
#define BACKOFF_MAX WEFT_SEC(1)
#define ACCEPT_BATCH 128 /* accepts in a row before letting others run */

/* A name can resolve to several addresses ("localhost": ::1 and
 * 127.0.0.1): the server listens on each, as asyncio does, with an
 * accept loop per socket. */
#define MAX_LISTEN 8

typedef struct listener {
  struct weft_server *srv;
  int fd;              /* listening socket, -1 once stopped */
  weft_scope *backoff; /* its accept loop's back-off sleep, or NULL */
} listener;

struct weft_server {
  weft_loop *loop;
  listener ls[MAX_LISTEN];
  int nls;
  int family;        /* of the first socket */
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char *path;        /* a Unix socket's file, removed by close */
  dev_t path_dev;    /* ... if it is still the one bind made */
  ino_t path_ino;
  char name[128];    /* the bound address, as text (messages) */
  weft_listen_opts opts;
  weft_conn_fn fn;
  void *arg;
  bool serving;
  bool stopping;
  weft_group *g;     /* while serving */
  weft_task *serve_task;
  weft_task *waiter; /* parked in weft_server_shutdown */
  bool starved;      /* a handler got no stack: back off before accepting */
  size_t nconn;
};

static int server_layer = -1;

typedef struct conn {
  weft_server *srv;
  weft_stream *s;
  char peer[128];
} conn;

/* ---- making one --------------------------------------------------------- */

static int check_loop(const weft_server *srv, const char *func) {
  if (!srv) return -EINVAL;
  if (srv->loop != weft__tls_loop) return weft__misuse(func, WEFT_ELOOP);
  return 0;
}

/* bind + listen on a new socket of ai's family. The fd, or -errno. */
static int listen_on(const struct sockaddr *sa, socklen_t len, int family,
                     const weft_listen_opts *o, bool v6only) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1, rc = 0;
  if (family != AF_UNIX) {
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuse_port &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
      rc = -errno;
      goto fail;
    }
  }
  if (family == AF_INET6) {
    int v = v6only;
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v);
  }
  if (bind(fd, sa, len) < 0 ||
      listen(fd, o->backlog > 0 ? o->backlog : SOMAXCONN) < 0) {
    rc = -errno;
    goto fail;
  }
  return fd;
fail:
  close(fd);
  return rc;
}

/* Listens on every TCP address of list (at most MAX_LISTEN, duplicates
 * skipped), all on one port: with port 0, the one the first bind
 * picked. An address the system cannot bind (no IPv6, an address not
 * configured) is skipped if another binds; any other failure (in use,
 * no permission) fails the whole. IPv6 sockets are IPv6-only when IPv4
 * addresses are listed too, so that "::" and "0.0.0.0" can both bind.
 * 0 with fds[0..*n) (and their families), or -errno with none open. */
static int listen_all(const struct addrinfo *list, int port,
                      const weft_listen_opts *o, int *fds, int *families,
                      int *n) {
  bool v4 = false;
  for (const struct addrinfo *a = list; a; a = a->ai_next)
    if (a->ai_family == AF_INET) v4 = true;
  int err = -ENXIO;
  for (const struct addrinfo *a = list; a && *n < MAX_LISTEN; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    bool dup = false;
    for (const struct addrinfo *b = list; b != a && !dup; b = b->ai_next)
      dup = b->ai_addrlen == a->ai_addrlen &&
            memcmp(b->ai_addr, a->ai_addr, a->ai_addrlen) == 0;
    if (dup) continue;
    struct sockaddr_storage ss;
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    if (*n > 0 && port == 0) { /* the port the first one got */
      struct sockaddr_storage first;
      socklen_t flen = sizeof first;
      if (getsockname(fds[0], (struct sockaddr *)&first, &flen) == 0) {
        uint16_t p = first.ss_family == AF_INET
                         ? ((struct sockaddr_in *)&first)->sin_port
                         : ((struct sockaddr_in6 *)&first)->sin6_port;
        if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = p;
        else ((struct sockaddr_in6 *)&ss)->sin6_port = p;
      }
    }
    int fd = listen_on((struct sockaddr *)&ss, a->ai_addrlen, a->ai_family, o,
                       o->v6_only || (a->ai_family == AF_INET6 && v4));
    if (fd >= 0) {
      families[*n] = a->ai_family;
      fds[(*n)++] = fd;
      continue;
    }
    err = fd;
    if (fd != -EADDRNOTAVAIL && fd != -EAFNOSUPPORT && fd != -EPROTONOSUPPORT) {
      while (*n > 0) close(fds[--*n]);
      return fd;
    }
  }
  return *n ? 0 : err;
}

static weft_server *server_new(int fd, int family, const weft_listen_opts *o) {
  weft_server *srv = calloc(1, sizeof *srv);
  if (!srv) {
    close(fd);
    return weft__null_errno(-ENOMEM);
  }
  srv->loop = weft__tls_loop;
  for (int i = 0; i < MAX_LISTEN; i++) {
    srv->ls[i].srv = srv;
    srv->ls[i].fd = -1;
  }
  srv->ls[0].fd = fd;
  srv->nls = 1;
  weft__fd_adopt(fd); /* the accept loop trusts the readiness cache */
  srv->family = family;
  if (o) srv->opts = *o;
  srv->addrlen = sizeof srv->addr;
  if (getsockname(fd, (struct sockaddr *)&srv->addr, &srv->addrlen) < 0)
    srv->addrlen = 0;
  if (weft_addr_format((struct sockaddr *)&srv->addr, srv->addrlen, srv->name,
                       sizeof srv->name) < 0)
    snprintf(srv->name, sizeof srv->name, "fd %d", fd);
  return srv;
}

weft_server *weft_tcp_listen(const char *host, int port,
                             const weft_listen_opts *opts) {
  static const weft_listen_opts defaults = {0};
  const weft_listen_opts *o = opts ? opts : &defaults;
  if (port < 0 || port > 65535 || o->backlog < 0) return weft__null_errno(-EINVAL);
  weft_task *cur = weft__cur();
  if (!cur) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (weft__checkpoint(cur)) return weft__null_errno(-ECANCELED);
  int fd;
  if (!host || !*host) {
    /* Every address: "::" for both families where the system allows,
     * else 0.0.0.0 (no IPv6, or v6 disabled). */
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6,
                               .sin6_port = htons((uint16_t)port),
                               .sin6_addr = IN6ADDR_ANY_INIT};
    fd = listen_on((struct sockaddr *)&in6, sizeof in6, AF_INET6, o, o->v6_only);
    if (fd >= 0) return server_new(fd, AF_INET6, o);
    if (o->v6_only ||
        (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL && fd != -EPROTONOSUPPORT))
      return weft__null_errno(fd);
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    fd = listen_on((struct sockaddr *)&in, sizeof in, AF_INET, o, false);
    if (fd < 0) return weft__null_errno(fd);
    return server_new(fd, AF_INET, o);
  }
  struct addrinfo *list = NULL;
  int rc = weft__resolve(host, port, AF_UNSPEC, SOCK_STREAM, AI_PASSIVE, &list);
  if (rc) return weft__null_errno(rc);
  int fds[MAX_LISTEN], n = 0, families[MAX_LISTEN];
  rc = listen_all(list, port, o, fds, families, &n);
  freeaddrinfo(list);
  if (rc) return weft__null_errno(rc);
  weft_server *srv = server_new(fds[0], families[0], o);
  if (!srv) {
    for (int i = 1; i < n; i++) close(fds[i]);
    return NULL;
  }
  for (int i = 1; i < n; i++) {
    weft__fd_adopt(fds[i]);
    srv->ls[srv->nls++].fd = fds[i];
  }
  return srv;
}

weft_server *weft_unix_listen(const char *path, const weft_listen_opts *opts) {
  static const weft_listen_opts defaults = {0};
  const weft_listen_opts *o = opts ? opts : &defaults;
  struct sockaddr_un sun;
  socklen_t len;
  if (!path || o->backlog < 0) return weft__null_errno(-EINVAL);
  int rc = weft__unix_addr(path, &sun, &len);
  if (rc) return weft__null_errno(rc);
  weft_task *cur = weft__cur();
  if (!cur) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (weft__checkpoint(cur)) return weft__null_errno(-ECANCELED);
  bool abstract = path[0] == '@';
  char *copy = NULL;
  if (!abstract) {
    struct stat st;
    /* Replace a stale socket, never another kind of file. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) (void)unlink(path);
    if (!(copy = strdup(path))) return weft__null_errno(-ENOMEM);
  }
  int fd = listen_on((struct sockaddr *)&sun, len, AF_UNIX, o, false);
  if (fd < 0) {
    free(copy);
    return weft__null_errno(fd);
  }
  weft_server *srv = server_new(fd, AF_UNIX, o);
  if (!srv) {
    if (copy) (void)unlink(copy);
    free(copy);
    return weft__null_errno(-ENOMEM);
  }
  srv->path = copy;
  struct stat st;
  if (copy && lstat(copy, &st) == 0) {
    srv->path_dev = st.st_dev;
    srv->path_ino = st.st_ino;
  }
  if (abstract) /* getsockname gives the name back; keep it as given */
    snprintf(srv->name, sizeof srv->name, "%s", path);
  return srv;
}

/* ---- queries ----------------------------------------------------------- */

int weft_server_port(const weft_server *srv) {
  if (!srv) return -EINVAL;
  if (srv->addr.ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)&srv->addr)->sin_port);
  if (srv->addr.ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)&srv->addr)->sin6_port);
  return 0;
}

int weft_server_addr(const weft_server *srv, struct sockaddr_storage *addr,
                     socklen_t *len) {
  if (!srv || !addr || !len) return -EINVAL;
  socklen_t n = *len < srv->addrlen ? *len : srv->addrlen;
  memcpy(addr, &srv->addr, n);
  *len = srv->addrlen;
  return 0;
}

size_t weft_server_connections(const weft_server *srv) {
  return srv ? srv->nconn : 0;
}

/* ---- serving ----------------------------------------------------------- */

static void report(weft_server *srv, const char *peer, int code, const char *msg) {
  if (srv->opts.on_error) {
    srv->opts.on_error(srv, peer, code, msg, srv->arg);
    return;
  }
  (void)weft__fdprintf(2, "weft: server %s: connection %s: %s%s%s\n", srv->name,
                       peer, weft_strerror(code), msg ? ": " : "",
                       msg ? msg : "");
}

static int conn_main(void *arg) {
  conn *c = arg;
  weft_server *srv = c->srv;
  weft__cur()->arg = NULL; /* conn_exit: this one cleans up itself */
  int rc = srv->fn(c->s, srv->arg);
  if (rc < 0 && rc != -ECANCELED)
    report(srv, c->peer, rc, weft__task_msg(weft_current()));
  (void)weft__stream_release(c->s);
  srv->nconn--;
  free(c);
  /* The server goes on: 0, or -ECANCELED when cancelled. */
  return weft__cancelled(weft__cur()) ? -ECANCELED : 0;
}

/* One accepted connection: a stream and a task. */
static void start_conn(weft_server *srv, int fd, const struct sockaddr *peer,
                       socklen_t plen) {
  if (srv->family != AF_UNIX) weft__sock_tune(fd, srv->opts.nagle, srv->opts.keepalive);
  conn *c = malloc(sizeof *c);
  if (!c) {
    weft_fd_close(fd);
    return;
  }
  c->srv = srv;
  if (weft_addr_format(peer, plen, c->peer, sizeof c->peer) < 0)
    snprintf(c->peer, sizeof c->peer, "fd %d", fd);
  c->s = weft_stream_open(fd, &srv->opts.stream); /* closes fd on failure */
  if (!c->s) {
    free(c);
    return;
  }
  weft__stream_hold(c->s);
  weft_spawn_opts so = {.name = c->peer, .stack_size = srv->opts.stack_size};
  srv->nconn++;
  weft_task *t = weft_group_spawn(srv->g, conn_main, c, &so);
  if (!t) {
    srv->nconn--;
    (void)weft__stream_release(c->s);
    free(c);
    srv->starved = true;
    return;
  }
  /* Its end is seen by conn_exit: a task that never ran (no stack, or
   * cancelled first) does not fail the server's group. */
  weft__task_set_owner(t, server_layer);
}

/* The server layer's task_exit hook: a handler task ended. One that
 * never ran leaves its connection behind: closed here. No stack for it
 * is the accept loop's cue to back off, as for EMFILE. */
static void conn_exit(weft_loop *L, weft_task *t) {
  (void)L;
  conn *c = t->arg;
  if (!c) return; /* conn_main ran and cleaned up */
  weft_server *srv = c->srv;
  if (t->result == -ENOMEM) {
    report(srv, c->peer, -ENOMEM, "no memory for the handler's task");
    srv->starved = true;
  }
  (void)weft__stream_release(c->s);
  srv->nconn--;
  free(c);
}

WEFT__LAYER_CTOR static void server_layer_register(void) {
  static const weft__layer layer = {.task_exit = conn_exit};
  server_layer = weft__layer_register(&layer); /* cannot fail: WEFT__MAX_LAYERS */
}

static bool accept_fatal(int e) {
  return e == EBADF || e == EINVAL || e == ENOTSOCK || e == EOPNOTSUPP;
}

static bool out_of_fds(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Sleeps the next back-off step (10 ms, doubling up to 1 s; cut short by
 * weft_server_stop). -ECANCELED if serve's caller is cancelled. */
static int nap(listener *l, int64_t *backoff) {
  *backoff = *backoff ? (*backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : *backoff * 2)
                      : BACKOFF_MIN;
  weft_scope sc;
  weft_scope_open_after(&sc, *backoff);
  l->backoff = &sc;
  int rc = weft_sleep_until(WEFT_FOREVER);
  l->backoff = NULL;
  weft_scope_close(&sc);
  return rc < 0 && weft_check_cancel() ? -ECANCELED : 0;
}

/* Accepts on l until stopped or cancelled: the group's body for the
 * first socket, a task of the group for each other. */
static const weft__wait_kind accept_kind = {"accept", NULL};

static void accept_loop(weft_server *srv, listener *l) {
  int64_t backoff = 0;
  int batch = 0;
  while (!srv->stopping && l->fd >= 0) {
    if (srv->starved) { /* no memory for a handler: wait a little */
      srv->starved = false;
      if (nap(l, &backoff) < 0) return;
      continue;
    }
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      backoff = 0;
      start_conn(srv, fd, (struct sockaddr *)&peer, plen);
      if (++batch >= ACCEPT_BATCH) { /* let the handlers run too */
        batch = 0;
        if (weft_yield() < 0) return;
      }
      continue;
    }
    int e = errno;
    batch = 0;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      /* The cache, not weft_wait_fd: no epoll_ctl per wait (fd.c). */
      weft__fd_clear(l->fd, WEFT_READABLE);
      int rc = weft__fd_wait(l->fd, WEFT_READABLE, WEFT_FOREVER, &accept_kind,
                             srv);
      if (rc < 0 && rc != -EINTR) return; /* -EBADF: stopped; -ECANCELED */
      continue;
    }
    if (out_of_fds(e)) {
      /* Keep serving what we have; try again later, without spinning. */
      if (nap(l, &backoff) < 0) return;
      continue;
    }
    if (accept_fatal(e)) return;
    /* ECONNABORTED, EPROTO, EPERM (firewall), ENETDOWN and the like: that
     * connection is gone, the next one may be fine. */
    if (weft_check_cancel()) return;
  }
}

static int accept_task(void *arg) {
  listener *l = arg;
  accept_loop(l->srv, l);
  return weft__cancelled(weft__cur()) ? -ECANCELED : 0;
}

int weft_server_serve(weft_server *srv, weft_conn_fn fn, void *arg) {
  if (!srv || !fn) return -EINVAL;
  int rc = check_loop(srv, __func__);
  if (rc) return rc;
  weft_task *cur = weft__cur();
  if (!cur) return weft__misuse(__func__, WEFT_ENOTASK);
  if (srv->serving) return -EBUSY;
  if (weft__checkpoint(cur)) return -ECANCELED;
  srv->g = weft_group_open();
  if (!srv->g) return -errno;
  srv->serving = true;
  srv->serve_task = cur;
  srv->fn = fn;
  srv->arg = arg;
  for (int i = 1; i < srv->nls; i++)
    if (!weft_group_spawn(srv->g, accept_task, &srv->ls[i], NULL))
      weft_server_stop(srv); /* ENOMEM: serve stops rather than half-listen */
  (void)weft_started(srv); /* -EINVAL: not started with weft_group_start */
  accept_loop(srv, &srv->ls[0]);
  rc = weft_group_close(srv->g, NULL); /* waits for the handlers */
  srv->g = NULL;
  srv->serving = false;
  srv->serve_task = NULL;
  if (srv->waiter) {
    weft_task *w = srv->waiter;
    srv->waiter = NULL;
    weft__wake(w, 0);
  }
  /* Handlers never fail the group (conn_main, conn_exit). */
  return rc == -ECANCELED ? rc : 0;
}

int weft_server_stop(weft_server *srv) {
  int rc = check_loop(srv, __func__);
  if (rc) return rc;
  srv->stopping = true;
  for (int i = 0; i < srv->nls; i++) {
    listener *l = &srv->ls[i];
    if (l->fd >= 0) {
      weft_fd_close(l->fd); /* wakes its accept loop with -EBADF */
      l->fd = -1;
    }
    if (l->backoff) weft_scope_cancel(l->backoff);
  }
  return 0;
}

static void shutdown_unpark(weft_task *t) {
  weft_server *srv = weft__body(t)->wait_on.layer;
  srv->waiter = NULL;
}

static const weft__wait_kind served_kind = {"server shutdown", NULL};

/* Parks the caller until serve has returned: until deadline, or
 * (expired NULL) uninterruptibly. */
static int wait_served(weft_loop *L, weft_task *cur, weft_server *srv,
                       int64_t deadline, bool *expired) {
  srv->waiter = cur;
  weft__body(cur)->wait_on.layer = srv;
  int rc = expired ? weft__park_until(L, cur, shutdown_unpark, &served_kind,
                                      srv, deadline, expired)
                   : weft__park(L, cur, NULL, &served_kind, srv);
  weft__body(cur)->wait_on.layer = NULL;
  return rc;
}

int weft_server_shutdown(weft_server *srv, int64_t deadline) {
  int rc = check_loop(srv, __func__);
  if (rc) return rc;
  weft_loop *L = weft__tls_loop;
  weft_task *cur = weft__cur();
  if (!cur) return weft__misuse(__func__, WEFT_ENOTASK);
  if (srv->waiter) return -EBUSY;
  if (srv->serving && (cur == srv->serve_task || cur->group == srv->g))
    return -EDEADLK; /* serve (or a handler) would wait for itself */
  weft_server_stop(srv);
  bool cancelled = false;
  if (srv->serving) {
    bool expired = false;
    if (weft__checkpoint(cur))
      cancelled = true;
    else if (wait_served(L, cur, srv, deadline, &expired) == -ECANCELED && !expired)
      cancelled = true;
  }
  if (!srv->serving) return cancelled ? -ECANCELED : 0;
  /* The deadline passed, or the caller was cancelled: cancel what is
   * left and wait for it, uninterruptibly (the handlers are cancelled and
   * return promptly, as weft_group_close waits for cancelled children). */
  weft_group_cancel(srv->g);
  wait_served(L, cur, srv, WEFT_FOREVER, NULL);
  return cancelled ? -ECANCELED : -ETIMEDOUT;
}

int weft_server_close(weft_server *srv) {
  int rc = check_loop(srv, __func__);
  if (rc) return rc;
  if (srv->serving) return -EBUSY;
  weft__name_forget(srv);
  for (int i = 0; i < srv->nls; i++)
    if (srv->ls[i].fd >= 0) weft_fd_close(srv->ls[i].fd);
  if (srv->path) {
    /* Not a file that replaced ours meanwhile (another server's). */
    struct stat st;
    if (lstat(srv->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == srv->path_dev && st.st_ino == srv->path_ino)
      (void)unlink(srv->path);
    free(srv->path);
  }
  free(srv);
  return 0;
}
