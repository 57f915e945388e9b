/* Error names and failure messages. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

const char *weft_strerror(int code) {
  switch (code) {
    case 0: return "success";
    case WEFT_EGROUP: return "one or more tasks of the group failed";
    case WEFT_ENOTASK: return "not called from a weft task";
    case WEFT_ELOOP: return "object belongs to another loop or thread";
    case WEFT_ENOTSTARTED: return "task returned without reporting readiness";
    case WEFT_EINCOMPLETE: return "stream ended before the read completed";
    case WEFT_ELIMIT: return "read exceeded the buffer limit";
    case WEFT_EENDOFCHANNEL: return "end of channel: every sender has closed";
    default: break;
  }
  int e = code < 0 ? -code : code;
  /* strerrordesc_np returns static strings: thread-safe, unlike strerror. */
  const char *s = e < 4096 ? strerrordesc_np(e) : NULL;
  return s ? s : "unknown error";
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
