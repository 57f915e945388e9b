/*
 * The weft-ps socket: what lets `weft-ps PID` and `weft-pstree PID`
 * (tools/weft_ps.c) show the tasks of a running process, as Python
 * 3.14's `python -m asyncio ps PID` does.
 *
 * Python reads the other process's memory (process_vm_readv), which needs
 * ptrace rights and knowledge of the target's data structures at every
 * version. weft asks the process itself instead, over a Unix socket that
 * the process opens only when told to (weft_config.ps_socket = 1, or
 * WEFT_PS=1): a listener thread answers each request with the task dump
 * of every loop of the process (weft__dump_process), which the loops
 * write between two of their tasks.
 *
 * One listener per process, shared by the loops that asked for it: the
 * first starts it, the last one to end stops it (joins its thread, closes
 * its fds, removes its socket file). A process forked from one that had
 * it has no such thread and drops its copies of the fds (ps_fork_child):
 * its first loop that asks starts its own.
 *
 * Security. The socket shows what a debugger would (task names, what
 * they wait on, the names given to objects), so only the process's own
 * user and root may read it, which are those who could attach a debugger
 * anyway. Three fences keep others out:
 *  - The socket lives in a directory only the effective uid can enter:
 *    $XDG_RUNTIME_DIR/weft (XDG_RUNTIME_DIR is used only if it is an
 *    absolute path to a directory of ours that nobody else may enter),
 *    else /tmp/weft-<euid>. The directory is made with mode 0700, then
 *    checked with lstat: a real directory (not a symlink someone planted
 *    in /tmp), owned by the euid, with no group or other permissions;
 *    anything else disables the socket. /tmp is sticky, so once the
 *    directory is ours nobody but its owner (or root) can rename or
 *    replace it under us.
 *  - The socket file gets mode 0600 (chmod after bind: between the two
 *    it is inside the private directory already).
 *  - Each connection's peer is checked with SO_PEERCRED (the kernel's
 *    word, not the client's): a uid other than ours or root's is hung up
 *    on before anything is read.
 * A file of the socket's name left by a dead process with the same pid is
 * removed only if it is a socket of ours that nobody answers on (with a
 * /tmp shared between pid namespaces, the same pid may be alive there).
 * The socket file is removed at the end only if it is still the one we
 * made (same device and inode). The tools check the other side: the
 * socket they reach must be listened on by the process they were asked
 * about (SO_PEERCRED's pid), so that nobody who could put a socket at the
 * name can answer in its place.
 *
 * A client cannot hold the listener up for long: one request line within
 * 1 s, the answer written within 2 s, one client at a time. A request
 * costs the loops one dump each, on their own threads, between tasks.
 *
 * Failures to set it up (EMFILE, EACCES, a foreign directory...) print
 * one line on stderr; the loop runs on without the socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/internal.h"

#define REQ_TIMEOUT_MS 1000  /* a client has this long to send its request */
#define SEND_TIMEOUT_MS 2000 /* and to take the answer */
#define REQ_MAX 64           /* a request line's length */

typedef struct ps_listener {
  pid_t pid;        /* the process that started it */
  pthread_t thread;
  int lfd;          /* the listening socket */
  int efd;          /* eventfd: written to stop the thread */
  dev_t dev;        /* the socket file we made */
  ino_t ino;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} ps_listener;

/* The listener and the loops that use it. The mutex is also held while
 * the listener starts and stops, so that a loop that asks for it while
 * the last user is stopping it gets a new one, never the old one's
 * half-removed socket. The listener thread never takes it. */
static pthread_mutex_t ps_mu = PTHREAD_MUTEX_INITIALIZER;
static ps_listener *ps_cur;
static weft_loop **ps_users;
static size_t ps_nusers, ps_cap;

/* ---- the listener thread ---------------------------------------------- */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline (ms, mono_ms)
 * passes or the listener is told to stop: 0, -ETIMEDOUT, -ECANCELED
 * (stop), -errno. */
static int wait_ready(const ps_listener *ps, int fd, short events,
                      int64_t deadline) {
  for (;;) {
    int64_t left = deadline - mono_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p[2] = {{.fd = fd, .events = events},
                          {.fd = ps->efd, .events = POLLIN}};
    int n = poll(p, 2, (int)left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (p[1].revents) return -ECANCELED;
    if (p[0].revents) return 0;
  }
}

/* Writes all of buf to the client by the deadline. 0 or -errno. */
static int send_all(const ps_listener *ps, int fd, const char *buf, size_t n,
                    int64_t deadline) {
  while (n) {
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      buf += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int rc = wait_ready(ps, fd, POLLOUT, deadline);
    if (rc) return rc;
  }
  return 0;
}

/* Reads the request line (without its end) into buf: its length, or
 * -errno (-ETIMEDOUT: none within REQ_TIMEOUT_MS; -EMSGSIZE: too long).
 * A request ended by the end of the stream counts too. */
static ssize_t read_request(const ps_listener *ps, int fd, char *buf,
                            size_t cap) {
  int64_t deadline = mono_ms() + REQ_TIMEOUT_MS;
  size_t n = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + n, cap - 1 - n, MSG_DONTWAIT);
    if (r > 0) {
      n += (size_t)r;
      buf[n] = '\0';
      char *nl = memchr(buf, '\n', n);
      if (nl) {
        *nl = '\0';
        n = (size_t)(nl - buf);
        break;
      }
      if (n == cap - 1) return -EMSGSIZE;
      continue;
    }
    if (r == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int rc = wait_ready(ps, fd, POLLIN, deadline);
    if (rc) return rc;
  }
  buf[n] = '\0';
  if (n && buf[n - 1] == '\r') buf[--n] = '\0'; /* nc -C, telnet */
  return (ssize_t)n;
}

/* One client: check who it is, read its request, answer, hang up. */
static void serve_client(const ps_listener *ps, int fd) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      len != sizeof cred || (cred.uid != geteuid() && cred.uid != 0))
    return;
  char req[REQ_MAX];
  ssize_t n = read_request(ps, fd, req, sizeof req);
  if (n < 0) return;
  int form;
  if (strcmp(req, "table") == 0) {
    form = WEFT_DUMP_TABLE;
  } else if (strcmp(req, "tree") == 0) {
    form = WEFT_DUMP_TREE;
  } else if (strcmp(req, "json") == 0) {
    form = WEFT_DUMP_JSON;
  } else {
    static const char unknown[] = "weft-ps: unknown request\n";
    send_all(ps, fd, unknown, sizeof unknown - 1,
             mono_ms() + SEND_TIMEOUT_MS);
    return;
  }
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream(&out, &outlen);
  int rc = f ? weft__dump_process(f, form | WEFT_DUMP_ALL, WEFT_SEC(1))
             : -errno;
  if (f && fclose(f) != 0 && rc == 0) rc = -ENOMEM;
  char err[128];
  const char *reply = out;
  size_t rlen = outlen;
  if (rc < 0) {
    /* The client shows this line as the process's answer. */
    int k = snprintf(err, sizeof err, "weft-ps: the dump failed: %s\n",
                     strerror(-rc));
    reply = err;
    rlen = (size_t)k < sizeof err ? (size_t)k : sizeof err - 1;
  }
  send_all(ps, fd, reply, rlen, mono_ms() + SEND_TIMEOUT_MS);
  free(out);
}

static void *listener_main(void *arg) {
  ps_listener *ps = arg;
  for (;;) {
    struct pollfd p[2] = {{.fd = ps->lfd, .events = POLLIN},
                          {.fd = ps->efd, .events = POLLIN}};
    int n = poll(p, 2, -1);
    if (n < 0 && errno != EINTR) {
      /* ENOMEM: nothing to do but try again a little later. */
      poll(&p[1], 1, 100);
      continue;
    }
    if (n <= 0) continue;
    if (p[1].revents) break;
    if (!p[0].revents) continue;
    int fd = accept4(ps->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      /* Out of fds or memory: the connection stays queued and poll
       * would report it again at once; give the process a moment
       * (staying quick to stop). EAGAIN, ECONNABORTED: the client left. */
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM)
        poll(&p[1], 1, 100);
      continue;
    }
    serve_client(ps, fd);
    close(fd);
  }
  return NULL;
}

/* ---- starting and stopping -------------------------------------------- */

/* Whether path is a directory only the euid may use. */
static bool dir_private(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
         st.st_uid == geteuid() && (st.st_mode & 077) == 0;
}

/* The directory of the socket (made if missing, then checked) into dir.
 * 0, or -errno after saying why on stderr. */
static int socket_dir(char *dir, size_t cap) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  int n;
  /* stat, not lstat: XDG_RUNTIME_DIR is the user's own setting, and may
   * well be a symlink to their runtime directory. */
  if (xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
      st.st_uid == geteuid() && (st.st_mode & 077) == 0)
    n = snprintf(dir, cap, "%s/weft", xdg);
  else
    n = snprintf(dir, cap, "/tmp/weft-%u", (unsigned)geteuid());
  if (n < 0 || (size_t)n >= cap) {
    weft__fdprintf(2, "weft: ps: socket directory name too long: "
                      "weft-ps disabled\n");
    return -ENAMETOOLONG;
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    int err = errno;
    weft__fdprintf(2, "weft: ps: cannot make %s: %s: weft-ps disabled\n", dir,
                   strerror(err));
    return -err;
  }
  if (!dir_private(dir)) {
    weft__fdprintf(2, "weft: ps: %s is not a private directory: "
                      "weft-ps disabled\n", dir);
    return -EPERM;
  }
  return 0;
}

/* A file at path from before: 0 if there is none, or it was a socket of
 * ours nobody listens on (a dead process of the same pid) and is gone
 * now; else -EEXIST (said on stderr) or -errno. */
static int remove_stale(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -errno;
  bool ours = S_ISSOCK(st.st_mode) && st.st_uid == geteuid();
  if (ours) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    close(fd);
    /* Refused: nobody listens there, the process that made it is gone
     * (ENOENT: someone removed it meanwhile). */
    if (rc != 0 && (err == ECONNREFUSED || err == ENOENT)) {
      if (unlink(path) != 0 && errno != ENOENT) return -errno;
      return 0;
    }
  }
  weft__fdprintf(2, "weft: ps: %s exists and is %s: weft-ps disabled\n", path,
                 ours ? "in use" : "not our socket");
  return -EEXIST;
}

static void listener_free(ps_listener *ps) {
  if (ps->lfd >= 0) close(ps->lfd);
  if (ps->efd >= 0) close(ps->efd);
  free(ps);
}

/* Removes the socket file if it is still the one we made. */
static void unlink_ours(const ps_listener *ps) {
  struct stat st;
  if (lstat(ps->path, &st) == 0 && st.st_dev == ps->dev &&
      st.st_ino == ps->ino)
    unlink(ps->path);
}

/* Starts the process's listener: 0, or -errno (said on stderr). Under
 * ps_mu. */
static int listener_start(ps_listener **out) {
  ps_listener *ps = calloc(1, sizeof *ps);
  if (!ps) {
    weft__fdprintf(2, "weft: ps: out of memory: weft-ps disabled\n");
    return -ENOMEM;
  }
  ps->lfd = ps->efd = -1;
  ps->pid = getpid();
  char dir[sizeof ps->path];
  const char *step = "socket path";
  int err = socket_dir(dir, sizeof dir);
  if (err) goto fail_quiet;
  int n = snprintf(ps->path, sizeof ps->path, "%s/%d.sock", dir, (int)ps->pid);
  if (n < 0 || (size_t)n >= sizeof ps->path) {
    err = -ENAMETOOLONG;
    goto fail;
  }
  if ((err = remove_stale(ps->path)) != 0) goto fail_quiet;
  step = "socket";
  ps->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (ps->lfd < 0) goto fail_errno;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, ps->path, (size_t)n + 1);
  step = "bind";
  if (bind(ps->lfd, (struct sockaddr *)&a, sizeof a) != 0) goto fail_errno;
  struct stat st;
  step = "chmod";
  if (chmod(ps->path, 0600) != 0 || lstat(ps->path, &st) != 0)
    goto fail_unlink;
  ps->dev = st.st_dev;
  ps->ino = st.st_ino;
  step = "listen";
  if (listen(ps->lfd, 16) != 0) goto fail_unlink;
  step = "eventfd";
  if ((ps->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) goto fail_unlink;
  /* The thread takes no signal of the process's (they stay with the
   * threads that expect them): it inherits this thread's mask, all
   * blocked for the time of the create. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int prc = pthread_create(&ps->thread, NULL, listener_main, ps);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (prc != 0) {
    errno = prc;
    step = "thread";
    goto fail_unlink;
  }
  /* Named here rather than by the thread itself, so that the name is
   * there (in top -H, /proc/PID/task/N/comm) as soon as the loop runs. */
  pthread_setname_np(ps->thread, "weft-ps");
  *out = ps;
  return 0;
fail_unlink:
  err = -errno;
  unlink_ours(ps);
  goto fail;
fail_errno:
  err = -errno;
fail:
  weft__fdprintf(2, "weft: ps: %s: %s: weft-ps disabled\n", step,
                 strerror(-err));
fail_quiet:
  listener_free(ps);
  return err;
}

static void listener_stop(ps_listener *ps) {
  uint64_t one = 1;
  /* An eventfd write of 1 fails only if the counter would overflow. */
  while (write(ps->efd, &one, sizeof one) < 0 && errno == EINTR) {
  }
  pthread_join(ps->thread, NULL);
  unlink_ours(ps);
  listener_free(ps);
}

/* fork: a child of a process that has the listener has no thread of it
 * (fork copies only the caller's); its copies of the listener's fds are
 * closed at once, so that the child holds no queue that nobody serves,
 * and the users are forgotten (the parent's socket file stays: it is the
 * parent's). ps_mu is held across the fork, so the state is whole. */
static void ps_fork_prepare(void) { pthread_mutex_lock(&ps_mu); }
static void ps_fork_parent(void) { pthread_mutex_unlock(&ps_mu); }
static void ps_fork_child(void) {
  if (ps_cur) {
    listener_free(ps_cur);
    ps_cur = NULL;
  }
  free(ps_users);
  ps_users = NULL;
  ps_nusers = ps_cap = 0;
  pthread_mutex_unlock(&ps_mu);
}

static pthread_once_t ps_once = PTHREAD_ONCE_INIT;
static int ps_atfork_rc;
static void ps_atfork(void) {
  ps_atfork_rc = pthread_atfork(ps_fork_prepare, ps_fork_parent, ps_fork_child);
}

static bool ps_wanted(const weft_config *cfg) {
  if (cfg->ps_socket > 0) return true;
  if (cfg->ps_socket == 0) return false;
  const char *e = getenv("WEFT_PS");
  return e && *e && strcmp(e, "0") != 0;
}

void weft__ps_start(weft_loop *L, const weft_config *cfg) {
  if (!cfg || !ps_wanted(cfg)) return;
  /* Before ps_mu: registering takes glibc's fork lock, which a fork
   * holds while it calls ps_fork_prepare. */
  pthread_once(&ps_once, ps_atfork);
  if (ps_atfork_rc != 0) {
    weft__fdprintf(2, "weft: ps: pthread_atfork: %s: weft-ps disabled\n",
                   strerror(ps_atfork_rc));
    return;
  }
  pthread_mutex_lock(&ps_mu);
  if (ps_nusers == ps_cap) {
    size_t cap = ps_cap ? ps_cap * 2 : 4;
    weft_loop **v = realloc(ps_users, cap * sizeof *v);
    if (!v) {
      weft__fdprintf(2, "weft: ps: out of memory: weft-ps disabled\n");
      goto out;
    }
    ps_users = v;
    ps_cap = cap;
  }
  if (!ps_cur && listener_start(&ps_cur) != 0) goto out;
  ps_users[ps_nusers++] = L;
out:
  if (!ps_nusers) {
    /* Nothing is left over from a loop that did not join. */
    free(ps_users);
    ps_users = NULL;
    ps_cap = 0;
  }
  pthread_mutex_unlock(&ps_mu);
}

void weft__ps_stop(weft_loop *L) {
  pthread_mutex_lock(&ps_mu);
  size_t i = 0;
  while (i < ps_nusers && ps_users[i] != L) i++;
  if (i < ps_nusers) {
    ps_users[i] = ps_users[--ps_nusers];
    if (!ps_nusers) {
      listener_stop(ps_cur);
      ps_cur = NULL;
      free(ps_users);
      ps_users = NULL;
      ps_cap = 0;
    }
  }
  pthread_mutex_unlock(&ps_mu);
}
