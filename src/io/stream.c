/*
 * Streams: buffered reading and writing over one connected non-blocking fd
 * (asyncio's StreamReader and StreamWriter in one object).
 *
 * The record is small; both buffers are malloc'ed on first need and given
 * back as soon as they are empty, so an idle connection (a task waiting in
 * a read) holds no buffer. Data lives in buf[pos, end) of each buffer.
 *
 * Fast paths: a read with nothing buffered reads straight into the
 * caller's buffer; readuntil returns a pointer into the read buffer; a
 * write with nothing buffered goes straight to the fd (one send or
 * sendmsg) and only what the fd does not take is copied.
 *
 * System calls: the stream owns its fd, so it waits through the fd
 * registry's readiness cache (weft__fd_wait, core/internal.h), which
 * costs no system call once the fd is registered, and keeps that cache
 * honest: a read or write that gets EAGAIN clears the direction, and on
 * a stream socket or pipe so does a short one (less than asked: the fd
 * was drained, or filled, at that moment; what arrives later is reported
 * by the next poll). A read tries the fd only while the cache says it is
 * readable, so a request-response exchange costs one read and one write
 * per message, without the read that finds nothing. Writes always try the
 * fd first.
 *
 * Nothing runs in the background: bytes left in the write buffer go out
 * on the next write, drain, write_eof, sendfile or close, and also while
 * a read waits (it waits for writability too and flushes), so that a
 * request-response exchange never stalls on a buffered reply.
 *
 * Cancellation loses nothing: bytes read by a call that is then cut short
 * are in the read buffer (readexactly and readuntil read into it), bytes
 * not yet written stay in the write buffer.
 *
 * A wait that ends in an error returns at once without touching the
 * record: -EBADF there means another task closed the stream, which may
 * have freed it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io/internal.h"

#define DEF_LIMIT ((size_t)64 * 1024)
#define DEF_HIGH ((size_t)64 * 1024)
#define RBUF_MIN ((size_t)16 * 1024) /* first read buffer */
#define WBUF_MIN ((size_t)16 * 1024) /* first write buffer */

enum { K_OTHER, K_SOCK, K_FIFO };

/* Whether a short read or write means the fd was drained (or filled):
 * stream sockets and pipes; not datagram or seqpacket sockets (one
 * message per read), nor ttys and other devices. */
enum { D_UNKNOWN, D_YES, D_NO };

enum {
  F_EOF = 1u << 0,    /* the read side has ended */
  F_SHUT = 1u << 1,   /* write_eof done */
  F_CLOSED = 1u << 2, /* close/abort done (held streams only live on) */
  F_HELD = 1u << 3,   /* server-owned: close keeps the record */
  F_CLOSING = 1u << 4, /* a close is flushing (it alone frees the record) */
};

struct weft_stream {
  int fd;
  uint8_t kind;  /* K_* */
  uint8_t flags; /* F_* */
  uint8_t drain; /* D_*: a socket's is looked up at its first short I/O */
  int werr;      /* sticky write error (< 0), or 0 */
  weft_loop *loop;
  char *rbuf;
  size_t rpos, rend, rcap;
  uint64_t rtaken; /* bytes ever consumed from the read buffer */
  char *wbuf;
  size_t wpos, wend, wcap;
  size_t limit, high, low;
};

/* ---- read buffers kept by the loop ---------------------------------- */

/* An empty read buffer is given back before its stream waits (an idle
 * connection holds none), so a keep-alive connection would malloc and
 * free one per request. Each loop keeps a few first-size buffers for
 * reuse instead: at most RCACHE_MAX (256 KiB), whatever the number of
 * connections, freed with the loop (a layer hook). */
#define RCACHE_MAX 16

typedef struct rbuf_cache {
  int n;
  char *b[RCACHE_MAX];
} rbuf_cache;

static int io_layer = -1;

static void rcache_release(weft_loop *L) {
  rbuf_cache *c = L->layer_data[io_layer];
  if (!c) return;
  while (c->n) free(c->b[--c->n]);
  free(c);
  L->layer_data[io_layer] = NULL;
}

WEFT__LAYER_CTOR static void io_layer_register(void) {
  static const weft__layer layer = {.loop_release = rcache_release};
  io_layer = weft__layer_register(&layer); /* cannot fail: WEFT__MAX_LAYERS */
}

static char *rbuf_get(weft_loop *L) {
  rbuf_cache *c = io_layer >= 0 ? L->layer_data[io_layer] : NULL;
  if (c && c->n) return c->b[--c->n];
  return malloc(RBUF_MIN);
}

static void rbuf_put(weft_loop *L, char *b, size_t cap) {
  if (cap == RBUF_MIN && io_layer >= 0 && L == weft__tls_loop) {
    rbuf_cache *c = L->layer_data[io_layer];
    if (!c) c = L->layer_data[io_layer] = calloc(1, sizeof *c);
    if (c && c->n < RCACHE_MAX) {
      c->b[c->n++] = b;
      return;
    }
  }
  free(b);
}

/* ---- helpers ------------------------------------------------------- */

static inline size_t rlen(const weft_stream *s) { return s->rend - s->rpos; }
static inline size_t wlen(const weft_stream *s) { return s->wend - s->wpos; }

static void rbuf_free(weft_stream *s) {
  if (s->rbuf) rbuf_put(s->loop, s->rbuf, s->rcap);
  s->rbuf = NULL;
  s->rpos = s->rend = s->rcap = 0;
}

static void wbuf_free(weft_stream *s) {
  free(s->wbuf);
  s->wbuf = NULL;
  s->wpos = s->wend = s->wcap = 0;
}

/* Consumes n buffered bytes; an emptied buffer is freed if `release`
 * (not after readuntil: its result points into the buffer). */
static inline void rconsume(weft_stream *s, size_t n, bool release) {
  s->rpos += n;
  s->rtaken += n;
  if (s->rpos == s->rend) {
    if (release)
      rbuf_free(s);
    else
      s->rpos = s->rend = 0;
  }
}

static inline size_t round_cap(size_t need, size_t min) {
  size_t c = min;
  while (c < need) {
    if (c > SIZE_MAX / 2) return need;
    c *= 2;
  }
  return c;
}

/* Makes room in the read buffer for one read: free space after the data,
 * growing the buffer (by doubling) only while it is smaller than maxcap
 * (compacting rather than growing past that). 0 or -ENOMEM. */
static int rbuf_room(weft_stream *s, size_t maxcap) {
  if (!s->rbuf) {
    if (!(s->rbuf = rbuf_get(s->loop))) return -ENOMEM;
    s->rcap = RBUF_MIN;
    s->rpos = s->rend = 0;
    return 0;
  }
  size_t have = rlen(s);
  if (!have) s->rpos = s->rend = 0;
  size_t tail = s->rcap - s->rend;
  if (tail >= 512 || (tail > 0 && s->rcap >= maxcap)) return 0;
  if (s->rpos && (s->rpos >= s->rcap / 4 || s->rcap >= maxcap)) {
    memmove(s->rbuf, s->rbuf + s->rpos, have);
    s->rpos = 0;
    s->rend = have;
    tail = s->rcap - s->rend;
    if (tail >= 512 || (tail > 0 && s->rcap >= maxcap)) return 0;
  }
  size_t cap = s->rcap > SIZE_MAX / 2 ? SIZE_MAX : s->rcap * 2;
  if (cap > maxcap && maxcap > s->rcap) cap = maxcap;
  if (s->rpos) {
    memmove(s->rbuf, s->rbuf + s->rpos, have);
    s->rpos = 0;
    s->rend = have;
  }
  char *nb = realloc(s->rbuf, cap);
  if (!nb) return -ENOMEM;
  s->rbuf = nb;
  s->rcap = cap;
  return 0;
}

/* Grows the read buffer so that it can hold `need` bytes of data
 * (compacting). 0 or -ENOMEM. */
static int rbuf_reserve(weft_stream *s, size_t need) {
  size_t have = rlen(s);
  if (s->rbuf && s->rcap >= need) {
    if (s->rcap - s->rpos < need || s->rend == s->rcap) {
      memmove(s->rbuf, s->rbuf + s->rpos, have);
      s->rpos = 0;
      s->rend = have;
    }
    return 0;
  }
  size_t cap = round_cap(need, RBUF_MIN);
  if (s->rbuf && s->rpos > 0) {
    memmove(s->rbuf, s->rbuf + s->rpos, have);
    s->rpos = 0;
    s->rend = have;
  }
  char *nb = realloc(s->rbuf, cap);
  if (!nb) return -ENOMEM;
  if (!s->rbuf) s->rpos = s->rend = 0;
  s->rbuf = nb;
  s->rcap = cap;
  return 0;
}

/* Appends n bytes to the write buffer. 0 or -ENOMEM (nothing appended). */
static int wbuf_append(weft_stream *s, const void *p, size_t n) {
  if (!n) return 0;
  size_t have = wlen(s);
  if (s->wcap - s->wend < n) {
    if (have > SIZE_MAX - n) return -ENOMEM;
    if (s->wbuf && s->wcap - have >= n && s->wpos > 0) {
      memmove(s->wbuf, s->wbuf + s->wpos, have);
    } else {
      size_t cap = round_cap(have + n, s->wcap ? s->wcap : WBUF_MIN);
      char *nb;
      if (s->wpos > 0 && s->wbuf) {
        nb = malloc(cap);
        if (!nb) return -ENOMEM;
        memcpy(nb, s->wbuf + s->wpos, have);
        free(s->wbuf);
      } else {
        nb = realloc(s->wbuf, cap);
        if (!nb) return -ENOMEM;
      }
      s->wbuf = nb;
      s->wcap = cap;
    }
    s->wpos = 0;
    s->wend = have;
  }
  memcpy(s->wbuf + s->wend, p, n);
  s->wend += n;
  return 0;
}

/* Runs a write-like call on a non-socket fd with SIGPIPE blocked, and
 * consumes the SIGPIPE it raised (unless one was pending already), so
 * that no SIGPIPE is ever delivered. */
typedef struct sigpipe_guard {
  sigset_t old;
  bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
  sigset_t set, pend;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &g->old);
  sigemptyset(&pend);
  sigpending(&pend);
  g->was_pending = sigismember(&pend, SIGPIPE) == 1;
}

static void sigpipe_restore(sigpipe_guard *g, bool got_epipe) {
  if (got_epipe && !g->was_pending) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    const struct timespec zero = {0, 0};
    int e = errno;
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
    }
    errno = e;
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* A read or write of s took less than it asked for (`ev`: the direction):
 * the fd is drained (or full) if it is a stream socket or a pipe. */
static void short_io(weft_stream *s, int ev) {
  if (weft__unlikely(s->drain == D_UNKNOWN)) {
    int type = 0;
    socklen_t len = sizeof type;
    s->drain = getsockopt(s->fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                       type == SOCK_STREAM
                   ? D_YES
                   : D_NO;
  }
  if (s->drain == D_YES) weft__fd_drained(s->fd, ev);
}

/* One write of iov to the fd: >= 0 bytes taken, or -errno (-EAGAIN). */
static ssize_t fd_writev(weft_stream *s, const struct iovec *iov, int cnt) {
  ssize_t r;
  size_t total = iov[0].iov_len;
  for (int i = 1; i < cnt; i++) total += iov[i].iov_len;
  if (s->kind == K_SOCK) {
    do {
      if (cnt == 1) {
        r = send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
      } else {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov,
                            .msg_iovlen = (size_t)cnt};
        r = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
      }
    } while (r < 0 && errno == EINTR);
  } else {
    sigpipe_guard g;
    sigpipe_block(&g);
    do {
      r = cnt == 1 ? write(s->fd, iov[0].iov_base, iov[0].iov_len)
                   : writev(s->fd, iov, cnt);
    } while (r < 0 && errno == EINTR);
    sigpipe_restore(&g, r < 0 && errno == EPIPE);
  }
  if (r < 0) {
    int e = errno == EWOULDBLOCK ? EAGAIN : errno;
    if (e == EAGAIN) weft__fd_clear(s->fd, WEFT_WRITABLE);
    return -e;
  }
  if ((size_t)r < total) short_io(s, WEFT_WRITABLE);
  return r;
}

/* A write error becomes sticky; buffered bytes can never go, so they are
 * dropped. Returns the error. */
static int wfail(weft_stream *s, int err) {
  if (!s->werr) s->werr = err;
  wbuf_free(s);
  return s->werr;
}

/* Sends what the fd takes now of the write buffer, without waiting. 0
 * (sent, or the fd is full), or the sticky write error. */
static int flush_some(weft_stream *s) {
  if (s->werr) return s->werr;
  size_t n = wlen(s);
  if (!n) return 0;
  struct iovec v = {s->wbuf + s->wpos, n};
  ssize_t r = fd_writev(s, &v, 1);
  if (r < 0) return r == -EAGAIN ? 0 : wfail(s, (int)r);
  s->wpos += (size_t)r;
  if (s->wpos == s->wend) wbuf_free(s);
  return 0;
}

/* Waits for the stream's fd. Returns the events, or an error code; after
 * an error the caller returns at once without touching the record
 * (-EBADF: another task closed the stream, which may have freed it). */
static const weft__wait_kind read_kind = {"stream read", NULL};
static const weft__wait_kind write_kind = {"stream write", NULL};
static inline int stream_wait(weft_stream *s, int events) {
  return weft__fd_wait(s->fd, events, WEFT_FOREVER,
                       events & WEFT_READABLE ? &read_kind : &write_kind, s);
}

/* After a successful wait: the stream may have been closed meanwhile (a
 * held one; others are the caller's error). */
static inline bool closed_now(const weft_stream *s) {
  return (s->flags & F_CLOSED) || s->fd < 0;
}

/* Flushes the whole write buffer, waiting as needed, down to `target`
 * bytes. 0, -ECANCELED, -EBADF, the write error, another wait error. */
static int flush_until(weft_stream *s, size_t target) {
  for (;;) {
    int rc = flush_some(s);
    if (rc) return rc;
    if (wlen(s) <= target) return 0;
    rc = stream_wait(s, WEFT_WRITABLE);
    if (rc < 0) return rc;
    if (closed_now(s)) return -EBADF;
  }
}

/* Waits for the read side (a read found nothing, or the readiness cache
 * says it would: then this parks at once). A pending write buffer
 * is flushed as the fd takes it meanwhile. An empty read buffer is given
 * back first. 0, or an error (then s must not be touched). */
static int wait_readable(weft_stream *s) {
  int ev = WEFT_READABLE;
  if (wlen(s) && !s->werr) ev |= WEFT_WRITABLE;
  if (s->rbuf && s->rpos == s->rend) rbuf_free(s);
  for (;;) {
    int rc = stream_wait(s, ev);
    if (rc < 0) return rc;
    if (closed_now(s)) return -EBADF;
    if (!(ev & WEFT_WRITABLE)) return 0;
    if (rc & WEFT_WRITABLE) flush_some(s); /* errors stay sticky */
    if (rc & (WEFT_READABLE | WEFT_HANGUP | WEFT_ERROR)) return 0;
    if (!wlen(s) || s->werr) ev = WEFT_READABLE;
  }
}

/* One read(2) of at most n bytes into buf, if the readiness cache says
 * the fd is readable (-EAGAIN without a system call otherwise), keeping
 * the cache: > 0 bytes, 0 at the end, -EAGAIN, -errno. */
static ssize_t fd_read(weft_stream *s, void *buf, size_t n) {
  if (!(weft__fd_cached(s->fd) & WEFT_READABLE)) return -EAGAIN;
  ssize_t r;
  do {
    r = read(s->fd, buf, n);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    if ((size_t)r < n) short_io(s, WEFT_READABLE);
    return r;
  }
  if (r == 0) return 0;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    weft__fd_clear(s->fd, WEFT_READABLE);
    return -EAGAIN;
  }
  return -errno;
}

/* One read into the read buffer, up to its free space (made with maxcap
 * as rbuf_room). > 0 bytes, 0 at the end (F_EOF set), -EAGAIN, -errno,
 * -ENOMEM. */
static ssize_t fill(weft_stream *s, size_t maxcap) {
  int rc = rbuf_room(s, maxcap);
  if (rc) return rc;
  ssize_t r = fd_read(s, s->rbuf + s->rend, s->rcap - s->rend);
  if (r > 0) {
    s->rend += (size_t)r;
    return r;
  }
  if (r == 0) s->flags |= F_EOF;
  return r;
}

/* The preamble of a call that may wait. Evaluates to 0 or a code. */
static inline int enter_wait(const weft_stream *s, const char *func) {
  weft_loop *L = weft__tls_loop;
  if (weft__unlikely(s->loop != L)) return weft__misuse(func, WEFT_ELOOP);
  weft_task *t = L->current;
  if (weft__unlikely(!t)) return weft__misuse(func, WEFT_ENOTASK);
  if (weft__unlikely(s->flags & F_CLOSED)) return -EBADF;
  return weft__checkpoint_io(L, t);
}

static inline bool in_task(void) {
  weft_loop *L = weft__tls_loop;
  return L && L->current;
}

/* ---- opening --------------------------------------------------------- */

weft_stream *weft_stream_open(int fd, const weft_stream_opts *opts) {
  if (fd < 0) return weft__null_errno(-EBADF);
  int err = 0;
  size_t limit = DEF_LIMIT, high = DEF_HIGH, low;
  if (opts) {
    if (opts->limit) limit = opts->limit;
    if (opts->high_water) high = opts->high_water;
  }
  low = opts && opts->low_water ? opts->low_water : high / 4;
  if (low > high) err = -EINVAL;
  if (!err && !weft__tls_loop) err = WEFT_ENOTASK;
  int one = 1; /* O_NONBLOCK in one system call, set or not before */
  if (!err && ioctl(fd, FIONBIO, &one) < 0) err = -errno;
  struct stat st;
  if (!err && fstat(fd, &st) < 0) err = -errno;
  weft_stream *s = err ? NULL : calloc(1, sizeof *s);
  if (!err && !s) err = -ENOMEM;
  if (err) {
    if (err != -EBADF) weft_fd_close(fd); /* owned, also on failure */
    return weft__null_errno(err);
  }
  s->fd = fd;
  s->kind = S_ISSOCK(st.st_mode) ? K_SOCK : S_ISFIFO(st.st_mode) ? K_FIFO
                                                                  : K_OTHER;
  s->drain = s->kind == K_SOCK ? D_UNKNOWN : s->kind == K_FIFO ? D_YES : D_NO;
  weft__fd_adopt(fd);
  s->loop = weft__tls_loop;
  s->limit = limit;
  s->high = high;
  s->low = low;
  return s;
}

weft_stream_pair weft_stream_socketpair(const weft_stream_opts *opts) {
  weft_stream_pair p = {NULL, NULL};
  if (!weft__tls_loop) {
    errno = EPERM;
    return p;
  }
  if (opts) {
    size_t high = opts->high_water ? opts->high_water : DEF_HIGH;
    size_t low = opts->low_water ? opts->low_water : high / 4;
    if (low > high) {
      errno = EINVAL;
      return p;
    }
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
    return p;
  weft_stream *a = weft_stream_open(sv[0], opts);
  if (!a) {
    int e = errno;
    weft_fd_close(sv[1]);
    errno = e;
    return p;
  }
  weft_stream *b = weft_stream_open(sv[1], opts);
  if (!b) {
    int e = errno;
    weft_stream_abort(a);
    errno = e;
    return p;
  }
  p.a = a;
  p.b = b;
  return p;
}

int weft_stream_fd(const weft_stream *s) {
  if (!s || (s->flags & F_CLOSED)) return -1;
  return s->fd;
}

bool weft_stream_at_eof(const weft_stream *s) {
  return s && (s->flags & F_EOF) && rlen(s) == 0;
}

size_t weft_stream_read_buffered(const weft_stream *s) {
  return s ? rlen(s) : 0;
}

size_t weft_stream_write_buffered(const weft_stream *s) {
  return s ? wlen(s) : 0;
}

/* ---- reading --------------------------------------------------------- */

ssize_t weft_stream_read(weft_stream *s, void *buf, size_t n) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (weft__unlikely(!buf && n)) return -EINVAL;
  if (!n) return 0;
  if (n > SSIZE_MAX) n = SSIZE_MAX;
  for (;;) {
    /* Checked again after every wait: another task may have read into
     * the buffer (readuntil) or seen the end meanwhile. */
    if (rlen(s)) {
      size_t k = rlen(s) < n ? rlen(s) : n;
      memcpy(buf, s->rbuf + s->rpos, k);
      rconsume(s, k, true);
      return (ssize_t)k;
    }
    if (s->flags & F_EOF) return 0;
    if (s->fd < 0) return -EBADF;
    ssize_t r = fd_read(s, buf, n);
    if (r > 0) return r;
    if (r == 0) {
      s->flags |= F_EOF;
      if (s->rbuf) rbuf_free(s);
      return 0;
    }
    if (r != -EAGAIN) return r;
    if ((rc = wait_readable(s)) != 0) return rc;
  }
}

int weft_stream_read_exactly(weft_stream *s, void *buf, size_t n) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (weft__unlikely(!buf && n)) return -EINVAL;
  if (!n) return 0;
  if (rlen(s) < n) {
    if (s->fd < 0) return -EBADF;
    /* Read into the stream's buffer, so that a cancelled wait keeps the
     * bytes that came. */
    if ((rc = rbuf_reserve(s, n)) != 0) return rc;
    while (rlen(s) < n) {
      if (s->flags & F_EOF) return WEFT_EINCOMPLETE;
      ssize_t r = fill(s, s->rcap);
      if (r > 0) continue;
      if (r == 0) return WEFT_EINCOMPLETE;
      if (r != -EAGAIN) return (int)r;
      if ((rc = wait_readable(s)) != 0) return rc;
      /* Another task may have taken or regrown the buffer meanwhile. */
      if ((rc = rbuf_reserve(s, n)) != 0) return rc;
    }
  }
  memcpy(buf, s->rbuf + s->rpos, n);
  rconsume(s, n, true);
  return 0;
}

/* The shortest match in buf[0, len) starting the search at `from`: sets
 * *start and *end of the earliest-ending separator. */
static bool find_any(const char *buf, size_t len, size_t from,
                     const weft_bytes *seps, size_t nseps, size_t *start,
                     size_t *end) {
  size_t best_end = SIZE_MAX, best_start = 0;
  for (size_t i = 0; i < nseps; i++) {
    size_t sl = seps[i].len;
    /* A match ending before best_end lies in [from, best_end - 1). */
    size_t hi = best_end == SIZE_MAX ? len : best_end - 1;
    if (hi > len) hi = len;
    if (hi < from || hi - from < sl) continue;
    const char *p = sl == 1 ? memchr(buf + from, *(const char *)seps[i].data,
                                     hi - from)
                            : memmem(buf + from, hi - from, seps[i].data, sl);
    if (!p) continue;
    size_t st = (size_t)(p - buf), e = st + sl;
    if (e < best_end) {
      best_end = e;
      best_start = st;
    }
  }
  if (best_end == SIZE_MAX) return false;
  *start = best_start;
  *end = best_end;
  return true;
}

/* readuntil over seps; at_eof_ok: readline's rule (at the end, return
 * what is left). */
static ssize_t readuntil(weft_stream *s, const weft_bytes *seps, size_t nseps,
                         const char **data, bool at_eof_ok) {
  size_t minsl = SIZE_MAX, maxsl = 0;
  for (size_t i = 0; i < nseps; i++) {
    if (seps[i].len < minsl) minsl = seps[i].len;
    if (seps[i].len > maxsl) maxsl = seps[i].len;
  }
  size_t maxcap = s->limit > SIZE_MAX - maxsl ? SIZE_MAX : s->limit + maxsl;
  size_t offset = 0; /* searched up to here (relative to rpos) */
  for (;;) {
    size_t have = rlen(s);
    if (have < offset) offset = 0; /* another task read meanwhile */
    if (have - offset >= minsl) {
      size_t st, en;
      const char *b = s->rbuf + s->rpos;
      if (find_any(b, have, offset, seps, nseps, &st, &en)) {
        if (st > s->limit) return WEFT_ELIMIT;
        *data = b;
        rconsume(s, en, false);
        return (ssize_t)en;
      }
      offset = have + 1 > maxsl ? have + 1 - maxsl : 0;
      if (offset > s->limit) return WEFT_ELIMIT;
    }
    if (s->flags & F_EOF) {
      if (!at_eof_ok) return WEFT_EINCOMPLETE;
      *data = have ? s->rbuf + s->rpos : "";
      if (have) rconsume(s, have, false);
      return (ssize_t)have;
    }
    if (s->fd < 0) return -EBADF;
    ssize_t r = fill(s, maxcap);
    if (r >= 0) continue; /* more data, or the end */
    if (r != -EAGAIN) return r;
    uint64_t taken = s->rtaken;
    int rc = wait_readable(s);
    if (rc) return rc;
    /* Bytes another task took meanwhile were in the searched part: the
     * unsearched part starts that much earlier. */
    uint64_t gone = s->rtaken - taken;
    offset = gone >= offset ? 0 : offset - (size_t)gone;
  }
}

ssize_t weft_stream_readuntil_any(weft_stream *s, const weft_bytes *seps,
                                  size_t nseps, const char **data) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (!seps || !nseps || !data) return -EINVAL;
  for (size_t i = 0; i < nseps; i++)
    if (!seps[i].data || !seps[i].len) return -EINVAL;
  return readuntil(s, seps, nseps, data, false);
}

ssize_t weft_stream_readuntil(weft_stream *s, const void *sep, size_t seplen,
                              const char **data) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (!sep || !seplen || !data) return -EINVAL;
  weft_bytes b = {sep, seplen};
  return readuntil(s, &b, 1, data, false);
}

ssize_t weft_stream_readline(weft_stream *s, const char **data) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (!data) return -EINVAL;
  weft_bytes b = {"\n", 1};
  return readuntil(s, &b, 1, data, true);
}

/* ---- writing --------------------------------------------------------- */

static inline int enter_write(const weft_stream *s, const char *func) {
  if (weft__unlikely(s->loop != weft__tls_loop))
    return weft__misuse(func, WEFT_ELOOP);
  if (weft__unlikely(s->flags & F_CLOSED)) return -EBADF;
  if (weft__unlikely(s->werr)) return s->werr;
  if (weft__unlikely(s->flags & F_SHUT)) return -ESHUTDOWN;
  if (weft__unlikely(s->fd < 0)) return -EBADF;
  return 0;
}

/* Sends iov (the write buffer's data first, if any), buffering what the fd
 * does not take. total: the bytes of iov. */
static int write_iov(weft_stream *s, const struct iovec *iov, int cnt,
                     size_t total) {
  if (!total) return 0;
  struct iovec stackv[8];
  struct iovec *v = stackv;
  size_t pending = wlen(s);
  int vcnt = cnt + (pending ? 1 : 0);
  if (vcnt > IOV_MAX) vcnt = IOV_MAX;
  if ((size_t)vcnt > sizeof stackv / sizeof stackv[0]) {
    v = malloc((size_t)vcnt * sizeof *v);
    if (!v) return -ENOMEM;
  }
  int k = 0;
  if (pending) v[k++] = (struct iovec){s->wbuf + s->wpos, pending};
  for (int i = 0; i < cnt && k < vcnt; i++)
    if (iov[i].iov_len) v[k++] = iov[i];
  ssize_t r = fd_writev(s, v, k);
  if (v != stackv) free(v);
  if (r < 0) {
    if (r != -EAGAIN) return wfail(s, (int)r);
    r = 0;
  }
  size_t sent = (size_t)r;
  /* What the fd took of the buffered bytes first. */
  size_t from_buf = sent < pending ? sent : pending;
  s->wpos += from_buf;
  sent -= from_buf;
  if (s->wpos == s->wend) s->wpos = s->wend = 0;
  if (sent == total) {
    if (s->wpos == s->wend && s->wbuf) wbuf_free(s);
    return 0;
  }
  /* Buffer the rest of iov, after skipping `sent` bytes of it. Make room
   * for all of it first, so that nothing is taken on -ENOMEM (unless the
   * fd took part of it already: then the stream cannot go on). */
  size_t rest = total - sent;
  size_t have = wlen(s);
  if (s->wcap - s->wend < rest) {
    size_t cap = round_cap(have + rest, s->wcap ? s->wcap : WBUF_MIN);
    char *nb = have > SIZE_MAX - rest ? NULL : malloc(cap);
    if (!nb) {
      if (sent) return wfail(s, -ENOMEM);
      if (!have && s->wbuf) wbuf_free(s);
      return -ENOMEM;
    }
    if (have) memcpy(nb, s->wbuf + s->wpos, have);
    free(s->wbuf);
    s->wbuf = nb;
    s->wcap = cap;
    s->wpos = 0;
    s->wend = have;
  }
  for (int i = 0; i < cnt; i++) {
    size_t l = iov[i].iov_len;
    if (sent >= l) {
      sent -= l;
      continue;
    }
    wbuf_append(s, (const char *)iov[i].iov_base + sent, l - sent);
    sent = 0;
  }
  return 0;
}

int weft_stream_write(weft_stream *s, const void *data, size_t n) {
  if (weft__unlikely(!s || (!data && n))) return -EINVAL;
  int rc = enter_write(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (!n) return 0;
  if (weft__likely(!wlen(s))) { /* fast path: straight to the fd */
    struct iovec v = {(void *)data, n};
    ssize_t r = fd_writev(s, &v, 1);
    if (weft__likely((size_t)r == n)) return 0;
    if (r < 0 && r != -EAGAIN) return wfail(s, (int)r);
    size_t sent = r < 0 ? 0 : (size_t)r;
    rc = wbuf_append(s, (const char *)data + sent, n - sent);
    if (rc && sent) return wfail(s, rc);
    return rc;
  }
  struct iovec v = {(void *)data, n};
  return write_iov(s, &v, 1, n);
}

int weft_stream_writev(weft_stream *s, const struct iovec *iov, int iovcnt) {
  if (weft__unlikely(!s || iovcnt < 0 || iovcnt > IOV_MAX ||
                     (!iov && iovcnt)))
    return -EINVAL;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (!iov[i].iov_base && iov[i].iov_len) return -EINVAL;
    if (iov[i].iov_len > SIZE_MAX - total) return -EINVAL;
    total += iov[i].iov_len;
  }
  int rc = enter_write(s, __func__);
  if (weft__unlikely(rc)) return rc;
  return write_iov(s, iov, iovcnt, total);
}

int weft_stream_drain(weft_stream *s) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (s->werr) return s->werr;
  if (!wlen(s)) return 0;
  if (s->fd < 0) return -EBADF;
  if (wlen(s) <= s->high) return flush_some(s); /* no wait: a free flush */
  return flush_until(s, s->low);
}

int weft_stream_sendfile(weft_stream *s, int file_fd, off_t *offset,
                         size_t count) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (!offset || *offset < 0 || file_fd < 0) return -EINVAL;
  if ((rc = enter_write(s, __func__)) != 0) return rc;
  if ((rc = flush_until(s, 0)) != 0) return rc;
  size_t left = count;
  while (left) {
    size_t chunk = left > 0x7ffff000u ? 0x7ffff000u : left;
    sigpipe_guard g;
    ssize_t r;
    sigpipe_block(&g);
    do {
      r = sendfile(s->fd, file_fd, offset, chunk);
    } while (r < 0 && errno == EINTR);
    int e = errno;
    sigpipe_restore(&g, r < 0 && e == EPIPE);
    if (r > 0) {
      left -= (size_t)r;
      continue;
    }
    if (r == 0) return WEFT_EINCOMPLETE;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      if (e == EPIPE || e == ECONNRESET) return wfail(s, -e);
      return -e;
    }
    weft__fd_clear(s->fd, WEFT_WRITABLE);
    rc = stream_wait(s, WEFT_WRITABLE);
    if (rc < 0) return rc;
    if (closed_now(s)) return -EBADF;
  }
  return 0;
}

int weft_stream_write_eof(weft_stream *s) {
  if (weft__unlikely(!s)) return -EINVAL;
  int rc = enter_wait(s, __func__);
  if (weft__unlikely(rc)) return rc;
  if (s->werr) return s->werr;
  if (s->flags & F_SHUT) return 0;
  if (s->fd < 0) return -EBADF;
  if (s->kind == K_OTHER) return -ENOTSOCK;
  int fl = 0;
  if (s->kind == K_FIFO) {
    fl = fcntl(s->fd, F_GETFL);
    if (fl < 0) return -errno;
    if ((fl & O_ACCMODE) != O_WRONLY) return -ENOTSOCK;
  }
  if ((rc = flush_until(s, 0)) != 0) return rc;
  if (s->kind == K_SOCK) {
    if (shutdown(s->fd, SHUT_WR) < 0) return -errno;
  } else {
    int fd = s->fd;
    s->fd = -1;
    weft_fd_close(fd);
  }
  s->flags |= F_SHUT;
  return 0;
}

/* ---- ending ---------------------------------------------------------- */

/* Closes the fd and frees the buffers; frees the record unless held. */
static void finish(weft_stream *s) {
  int fd = s->fd;
  s->fd = -1;
  s->flags |= F_CLOSED;
  rbuf_free(s);
  wbuf_free(s);
  weft__name_forget(s);
  if (!(s->flags & F_HELD)) free(s);
  if (fd >= 0) weft_fd_close(fd);
}

/* close and close_until. While the flush waits, the stream is marked
 * closing: only this call frees it then, so it may look at the record
 * whatever the wait returns. An abort from another task meanwhile closes
 * the fd (this call wakes with -EBADF and finishes); a second close
 * returns -EBADF and does nothing. */
static int close_impl(weft_stream *s, int64_t deadline, const char *func) {
  if (weft__unlikely(!s)) return -EINVAL;
  if (weft__unlikely(s->loop != weft__tls_loop))
    return weft__misuse(func, WEFT_ELOOP);
  if (s->flags & (F_CLOSED | F_CLOSING)) return -EBADF;
  int rc = s->werr;
  if (!rc && wlen(s) && s->fd >= 0) {
    s->flags |= F_CLOSING;
    if (!in_task()) {
      rc = flush_some(s);
      if (!rc && wlen(s)) rc = -EAGAIN;
    } else if (deadline == WEFT_FOREVER) {
      rc = flush_until(s, 0);
    } else {
      weft_scope sc;
      rc = weft_scope_open(&sc, deadline);
      if (!rc) {
        rc = flush_until(s, 0);
        int sr = weft_scope_close(&sc);
        if (rc == -ECANCELED && sr == -ETIMEDOUT) rc = -ETIMEDOUT;
      }
    }
    s->flags &= (uint8_t)~F_CLOSING;
  }
  int fd = s->fd;
  if (fd >= 0) {
    s->fd = -1;
    int cr = weft_fd_close(fd);
    if (!rc && cr && cr != -EINTR) rc = cr;
  }
  finish(s);
  return rc;
}

int weft_stream_close(weft_stream *s) {
  return close_impl(s, WEFT_FOREVER, __func__);
}

int weft_stream_close_until(weft_stream *s, int64_t deadline) {
  return close_impl(s, deadline, __func__);
}

int weft_stream_abort(weft_stream *s) {
  if (weft__unlikely(!s)) return -EINVAL;
  if (weft__unlikely(s->loop != weft__tls_loop))
    return weft__misuse(__func__, WEFT_ELOOP);
  if (s->flags & F_CLOSED) return -EBADF;
  if (s->kind == K_SOCK && s->fd >= 0) {
    struct linger lg = {1, 0};
    setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  if (s->flags & F_CLOSING) { /* a close is flushing: cut it short */
    int fd = s->fd;
    s->fd = -1;
    s->flags |= F_CLOSED;
    wbuf_free(s);
    if (fd >= 0) weft_fd_close(fd); /* wakes it: it finishes and frees */
    return 0;
  }
  finish(s);
  return 0;
}

static int addr_of(const weft_stream *s, struct sockaddr_storage *addr,
                   socklen_t *len, bool peer, const char *func) {
  if (!s || !addr || !len) return -EINVAL;
  if (weft__unlikely(s->loop != weft__tls_loop))
    return weft__misuse(func, WEFT_ELOOP);
  if ((s->flags & F_CLOSED) || s->fd < 0) return -EBADF;
  int r = peer ? getpeername(s->fd, (struct sockaddr *)addr, len)
               : getsockname(s->fd, (struct sockaddr *)addr, len);
  return r < 0 ? -errno : 0;
}

int weft_stream_peer_addr(const weft_stream *s, struct sockaddr_storage *addr,
                          socklen_t *len) {
  return addr_of(s, addr, len, true, __func__);
}

int weft_stream_local_addr(const weft_stream *s, struct sockaddr_storage *addr,
                           socklen_t *len) {
  return addr_of(s, addr, len, false, __func__);
}

/* ---- server-held streams ------------------------------------------- */

void weft__stream_hold(weft_stream *s) {
  if (s) s->flags |= F_HELD;
}

int weft__stream_release(weft_stream *s) {
  if (!s) return -EINVAL;
  int rc = 0;
  if (!(s->flags & F_CLOSED)) rc = weft_stream_close(s);
  if (rc == WEFT_ELOOP) return rc;
  if (!(s->flags & F_CLOSED)) finish(s); /* close gave up (-EBADF race) */
  free(s);
  return rc;
}
