/*
 * File helpers on the default pool: what asyncio programs do with
 * to_thread(open(...).read) and an atomic replace.
 *
 * The request (path, data) is copied to the heap and handed to the job's
 * cleanup, so a task cancelled while the thread works leaves nothing
 * dangling: the thread finishes on its own copies and the cleanup frees
 * them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thread/layer.h"

/* ---- read --------------------------------------------------------------- */

typedef struct read_req {
  char *path;
  char *data;
  size_t len;
  int err;
} read_req;

static void read_req_free(read_req *r) {
  free(r->data);
  free(r->path);
  free(r);
}

static void read_cleanup(void *arg, void *result, int status) {
  (void)result, (void)status;
  read_req_free(arg);
}

static int read_all(int fd, read_req *r) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  if (S_ISDIR(st.st_mode)) return -EISDIR;
  /* st_size is a hint: 0 for /proc files, stale if the file grows. Room
   * for the NUL and one more byte, so the read that sees the end of a
   * file of the expected size does not first double the buffer. */
  size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
  char *buf = malloc(cap);
  if (!buf) return -ENOMEM;
  size_t len = 0;
  for (;;) {
    if (len + 1 >= cap) {
      char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        return -ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = -errno;
      free(buf);
      return e;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  r->data = buf;
  r->len = len;
  return 0;
}

static void *read_job(void *arg) {
  read_req *r = arg;
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r->err = -errno;
    return NULL;
  }
  r->err = read_all(fd, r);
  close(fd);
  return NULL;
}

int weft_file_read(const char *path, char **data, size_t *len) {
  if (!path || !data || !len) return -EINVAL;
  if (!weft__cur()) return weft__misuse(__func__, WEFT_ENOTASK);
  read_req *r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(path))) {
    free(r);
    return -ENOMEM;
  }
  int rc = weft_executor_run(NULL, read_job, r, read_cleanup, NULL);
  if (rc) return rc; /* r went to read_cleanup */
  rc = r->err;
  if (!rc) {
    *data = r->data;
    *len = r->len;
    r->data = NULL;
  }
  read_req_free(r);
  return rc;
}

/* ---- atomic write ------------------------------------------------------- */

typedef struct write_req {
  char *path;
  char *data;
  size_t len;
  int err;
  atomic_int refs;      /* the caller's and the job's */
  atomic_int cancelled; /* the caller gave up: do not rename */
} write_req;

static void write_req_put(write_req *w) {
  if (atomic_fetch_sub(&w->refs, 1) != 1) return;
  free(w->data);
  free(w->path);
  free(w);
}

static void write_cleanup(void *arg, void *result, int status) {
  (void)result, (void)status;
  write_req_put(arg);
}

static int write_full(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Opens a new file next to path ("<path>.weft-" and 8 random hex digits) with `mode` less
 * the umask (open applies it; mkstemp would give 0600). */
static int open_temp(const char *path, char *tmp, size_t cap, mode_t mode) {
  static atomic_uint serial;
  for (int tries = 0; tries < 100; tries++) {
    unsigned x = (unsigned)weft__clock() ^ ((unsigned)getpid() << 16) ^
                 (atomic_fetch_add(&serial, 1) * 2654435761u);
    if ((size_t)snprintf(tmp, cap, "%s.weft-%08x", path, x) >= cap)
      return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0 || errno != EEXIST) return fd >= 0 ? fd : -errno;
  }
  return -EEXIST;
}

static int fsync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : strdup(".");
  if (!dir) return -ENOMEM;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0) return -errno;
  int rc = fsync(fd) != 0 && errno != EINVAL ? -errno : 0; /* EINVAL: no fsync there */
  close(fd);
  return rc;
}

static int replace(write_req *w) {
  size_t cap = strlen(w->path) + 32;
  char *tmp = malloc(cap);
  if (!tmp) return -ENOMEM;
  /* Replacing a file: create the temporary one private and give it the
   * old one's bits after. Created wider, it could be opened meanwhile by
   * someone the old file kept out, who would keep access to the data. */
  struct stat st;
  bool had = stat(w->path, &st) == 0;
  int fd = open_temp(w->path, tmp, cap, had ? 0600 : 0666);
  if (fd < 0) {
    free(tmp);
    return fd;
  }
  int rc = 0;
  if (had && fchmod(fd, st.st_mode & 07777) != 0) rc = -errno;
  if (!rc) rc = write_full(fd, w->data, w->len);
  if (!rc && fsync(fd) != 0) rc = -errno;
  if (close(fd) != 0 && !rc) rc = -errno;
  if (!rc && atomic_load(&w->cancelled)) rc = -ECANCELED;
  if (!rc && rename(tmp, w->path) != 0) rc = -errno;
  if (rc)
    unlink(tmp);
  else
    rc = fsync_dir_of(w->path);
  free(tmp);
  return rc;
}

static void *write_job(void *arg) {
  write_req *w = arg;
  w->err = replace(w);
  return NULL;
}

int weft_file_write_atomic(const char *path, const void *data, size_t len) {
  if (!path || !*path || (!data && len)) return -EINVAL;
  if (!weft__cur()) return weft__misuse(__func__, WEFT_ENOTASK);
  write_req *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  atomic_init(&w->refs, 2);
  w->path = strdup(path);
  w->data = malloc(len ? len : 1);
  if (!w->path || !w->data) {
    free(w->path);
    free(w->data);
    free(w);
    return -ENOMEM;
  }
  if (len) memcpy(w->data, data, len);
  w->len = len;
  int rc = weft_executor_run(NULL, write_job, w, write_cleanup, NULL);
  if (rc == -ECANCELED) atomic_store(&w->cancelled, 1);
  if (rc == 0) {
    rc = w->err;
    write_req_put(w); /* the job's: no cleanup after a success */
  }
  write_req_put(w);
  return rc;
}
