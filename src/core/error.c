/* Error names and failure messages. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

/* Every code weft returns, or passes on from the system, in weft's words:
 * the code's name, then what it means here. libc's texts are written for
 * the system's own uses ("Cannot send after transport endpoint shutdown"
 * for a shut-down queue); these say what happened in a weft program. The
 * system's codes are here because weft passes them on (files, write(2)),
 * and the "sockets" ones for the socket layer. weft_strerror gives libc's
 * text for any other code. Some errno names share a value (EWOULDBLOCK is
 * EAGAIN, EDEADLOCK is EDEADLK, on Linux EOPNOTSUPP is ENOTSUP): the text
 * names the one weft uses. */
#define E(name, text) \
  case name: return #name ": " text
#define W(name, text) \
  case -name: return #name ": " text
static const char *weft_text(int e) {
  switch (e) {
    /* weft's own */
    W(WEFT_EGROUP, "one or more tasks of the group failed (see "
                   "weft_group_errors)");
    W(WEFT_ENOTASK, "not called from a weft task (or no loop runs on this "
                    "thread)");
    W(WEFT_ELOOP, "the object belongs to another loop or thread");
    W(WEFT_ENOTSTARTED, "the task returned without calling weft_started");
    W(WEFT_EINCOMPLETE, "the stream ended before the read completed");
    W(WEFT_ELIMIT, "the read went over the buffer limit");
    W(WEFT_EEND, "the end: no item will ever come (every sender of the "
                 "channel closed, the queue shut down, every task returned) "
                 "and nothing is left");
    /* the model: cancellation, deadlines, waiting */
    E(ECANCELED, "cancelled (a cancel scope around the call was cancelled)");
    E(ETIMEDOUT, "a deadline passed (of a cancel scope or of the call; or a "
                 "network timeout)");
    E(EDEADLK, "the caller would wait for itself (joining itself, taking a "
               "lock it holds, waiting for its own loop)");
    E(EBUSY, "busy: another task or thread already waits on it, or the "
             "thread's loop is running");
    E(EAGAIN, "not ready: a call that does not wait would have had to "
              "(try_*, a future not done yet), or no thread can start now");
    E(EALREADY, "too late: the scope's deadline has already fired");
    E(ECHILD, "no such child process (already waited for)");
    E(ESRCH, "no such task: the handle was already joined or detached");
    /* objects and their life cycle */
    E(EIDRM, "the object was freed (before the call, or while the task "
             "waited on it)");
    E(EOWNERDEAD, "the lock is broken: a task returned while holding it");
    E(ESHUTDOWN, "shut down: the queue, executor, group or loop takes no "
                 "more work");
    E(EPIPE, "nobody is left to take it: the channel's receivers or the "
             "connection's peer are gone, the barrier is broken, or the "
             "group is closed");
    E(EOVERFLOW, "count out of range: task_done called more often than "
                 "put, a bounded semaphore released past its bound, or a "
                 "size overflows");
    E(EPERM, "not allowed: the caller does not hold the lock, the fd "
             "cannot be polled (a regular file), or (as errno from a "
             "constructor) no task or loop runs on this thread");
    E(EXDEV, "(as errno from a constructor) the object belongs to another "
             "loop or thread");
    E(EINVAL, "invalid argument (NULL, out of range, or not valid for "
              "this object or caller)");
    E(ERANGE, "index out of range");
    E(EEXIST, "already there: the file exists");
    E(ENOENT, "not found: no such file, or no such registered entry");
    E(ENOSPC, "no room left: a fixed-size table is full, or the disk is");
    /* resources */
    E(ENOMEM, "out of memory (for a task, its stack, a buffer or a timer)");
    E(EMFILE, "the process has no free file descriptor (RLIMIT_NOFILE)");
    E(ENFILE, "the system has no free file descriptor (system-wide limit)");
    E(ENOBUFS, "the kernel has no buffer space left");
    E(ENOSYS, "not implemented by this kernel");
    /* files and descriptors */
    E(EBADF, "bad handle: the fd is not open, or the channel handle was "
             "closed");
    E(EACCES, "permission denied");
    E(EISDIR, "the path is a directory");
    E(ENAMETOOLONG, "the path or name is too long");
    E(EIO, "I/O error reported by the device or file system");
    E(EINTR, "interrupted by a signal");
    /* sockets */
    E(ECONNRESET, "the peer reset the connection");
    E(ECONNREFUSED, "connection refused: nothing listens at that address");
    E(ECONNABORTED, "the connection was aborted before it was accepted");
    E(EHOSTUNREACH, "no route to the host");
    E(ENETUNREACH, "the network is unreachable");
    E(ENETDOWN, "the network is down");
    E(EADDRINUSE, "the address is already in use by another socket");
    E(EADDRNOTAVAIL, "the address is not available on this machine");
    E(ENOTCONN, "the socket is not connected");
    E(EISCONN, "the socket is already connected");
    E(EAFNOSUPPORT, "address family not supported (IPv4 or IPv6 not "
                    "available)");
    E(EMSGSIZE, "the datagram is too large (to send, or for the buffer it "
                "was received into: truncated)");
    E(ENXIO, "no such host: the name does not resolve");
    E(EDESTADDRREQ, "no destination: the UDP endpoint is not connected");
    E(EPROTO, "protocol error: the peer sent something malformed");
    E(ENOTSOCK, "the fd is not a socket");
    E(ENOTSUP, "not supported");
#if EOPNOTSUPP != ENOTSUP
    E(EOPNOTSUPP, "not supported");
#endif
    default: return NULL;
  }
}
#undef E
#undef W

const char *weft_strerror(int code) {
  if (code == 0) return "success";
  if (code == INT_MIN) return "unknown error";
  int e = code < 0 ? -code : code; /* positive codes name the same thing */
  const char *s = weft_text(e);
  if (s) return s;
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  /* strerrordesc_np returns libc's static strings: thread-safe, unlike
   * strerror, and never overwritten. NULL for codes libc does not know. */
  s = strerrordesc_np(e);
  return s ? s : "unknown error";
#else
  /* Without strerrordesc_np: a thread-local copy, overwritten by this
   * thread's next call for a code weft does not know. */
  static _Thread_local char buf[128];
#if defined(__GLIBC__)
  s = strerror_r(e, buf, sizeof buf); /* GNU: may return a static string */
  return s ? s : "unknown error";
#else
  return strerror_r(e, buf, sizeof buf) == 0 ? buf : "unknown error";
#endif
#endif
}

int weft__fdprintf(int fd, const char *fmt, ...) {
  char buf[512], *p = buf;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return -EINVAL;
  if ((size_t)n >= sizeof buf) {
    va_start(ap, fmt);
    p = weft__vformat(fmt, ap);
    va_end(ap);
    if (!p) return -ENOMEM;
  }
  int rc = 0;
  for (size_t off = 0; off < (size_t)n;) {
    ssize_t w = write(fd, p + off, (size_t)n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    off += (size_t)w;
  }
  if (p != buf) free(p);
  return rc;
}

char *weft__vformat(const char *fmt, va_list ap) {
  char *m = NULL;
  if (vasprintf(&m, fmt, ap) < 0) return NULL;
  return m;
}
