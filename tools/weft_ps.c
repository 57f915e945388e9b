/*
 * weft-ps and weft-pstree: the tasks of a running weft process, as
 * Python 3.14's `python -m asyncio ps PID` / `pstree PID` show a Python
 * program's.
 *
 *   weft-ps [--json] PID    one line per task (or one JSON document)
 *   weft-pstree PID         the task tree: groups, scopes, children
 *
 * One source, built twice: WEFT_PS_TREE makes weft-pstree. The target
 * must have asked for it (WEFT_PS=1 in its environment, or
 * weft_config.ps_socket = 1): its loops then answer on a Unix socket
 * (src/core/ps.c explains the socket and why only the same user and root
 * may use it). This program finds the socket where the process made it,
 * checks that the process itself listens there (SO_PEERCRED: not a
 * socket someone else put at the name), sends one request line
 * ("table", "tree" or "json") and prints the answer. It links nothing
 * but the C library: it reads no memory of the target and does not
 * depend on the version of weft the target runs.
 *
 * Exit status: 0, 1 when the process cannot be shown (no such process,
 * no socket, permission denied, no answer within 5 s), 2 for a usage
 * error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef WEFT_PS_TREE
#define PROG "weft-pstree"
#else
#define PROG "weft-ps"
#endif

#define TIMEOUT_MS 5000 /* for the whole exchange */
#define ENVIRON_MAX (1 << 20)

static void usage(FILE *f) {
#ifdef WEFT_PS_TREE
  fprintf(f,
          "usage: weft-pstree PID\n"
          "Shows the task tree of the weft process PID: its loops, task\n"
          "groups and cancel scopes, and for each task what it waits on.\n"
#else
  fprintf(f,
          "usage: weft-ps [--json] PID\n"
          "Shows the tasks of the weft process PID, one line per task:\n"
          "id, name, state, what it waits on and for how long.\n"
          "  --json   one JSON document instead (for tools)\n"
#endif
          "The process must have been started with WEFT_PS=1 (or set\n"
          "weft_config.ps_socket = 1); only its user and root may look.\n"
          "  -h, --help   this help\n");
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The whole of a /proc file into a malloc'd, NUL-terminated buffer (its
 * length in *len), or NULL with errno set. */
static char *read_proc(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n + 1 == cap) {
      char *b = cap < ENVIRON_MAX ? realloc(buf, cap * 2) : NULL;
      if (!b) {
        free(buf);
        buf = NULL;
        errno = ENOMEM;
        break;
      }
      buf = b;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      free(buf);
      buf = NULL;
      errno = err;
      break;
    }
    if (r == 0) {
      buf[n] = '\0';
      *len = n;
      break;
    }
    n += (size_t)r;
  }
  int err = errno;
  close(fd);
  errno = err;
  return buf;
}

/* The process of pid (its thread group: a thread id names its process
 * too) and its effective uid, from /proc/PID/status. 0, or -errno
 * (-ENOENT: no such process). */
static int proc_status(pid_t pid, pid_t *tgid, unsigned *euid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  size_t len;
  char *s = read_proc(path, &len);
  if (!s) return errno == ESRCH ? -ENOENT : -errno;
  const char *t = strstr(s, "\nTgid:");
  const char *u = strstr(s, "\nUid:");
  unsigned ruid;
  int tg;
  int rc = t && u && sscanf(t + 6, "%d", &tg) == 1 &&
                   sscanf(u + 5, "%u %u", &ruid, euid) == 2
               ? 0
               : -EPROTO;
  if (!rc) *tgid = tg;
  free(s);
  return rc;
}

/* XDG_RUNTIME_DIR in the environment pid started with (readable by its
 * user and root), into buf: true if there is one. */
static bool proc_xdg(pid_t pid, char *buf, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
  size_t len;
  char *env = read_proc(path, &len);
  if (!env) return false;
  bool found = false;
  for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
    static const char key[] = "XDG_RUNTIME_DIR=";
    if (strncmp(env + i, key, sizeof key - 1) == 0) {
      const char *v = env + i + sizeof key - 1;
      found = v[0] == '/' && strlen(v) < cap;
      if (found) strcpy(buf, v);
      break;
    }
  }
  free(env);
  return found;
}

/* Connects to the socket at path, giving up at the deadline: the fd, or
 * -errno (-ETIMEDOUT when the deadline passed). */
static int connect_to(const char *path, int64_t deadline) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return -ENAMETOOLONG;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  /* A connect to a Unix socket whose queue is full waits as long as the
   * socket's send timeout allows. */
  int64_t left = deadline - mono_ms();
  if (left < 1) left = 1;
  struct timeval tv = {.tv_sec = left / 1000, .tv_usec = left % 1000 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int err = errno;
    close(fd);
    return err == EAGAIN || err == EINPROGRESS ? -ETIMEDOUT : -err;
  }
  return fd;
}

/* Sends the request and reads the answer up to the end of the stream:
 * its length (the answer, NUL-terminated, in *out), or -errno. */
static ssize_t exchange(int fd, const char *req, char **out, int64_t deadline) {
  size_t rl = strlen(req);
  for (size_t off = 0; off < rl;) {
    ssize_t w = send(fd, req + off, rl - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    off += (size_t)w;
  }
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf) return -ENOMEM;
  for (;;) {
    int64_t left = deadline - mono_ms();
    if (left <= 0) {
      free(buf);
      return -ETIMEDOUT;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) {
      int err = errno;
      free(buf);
      return -err;
    }
    if (pr == 0) continue;
    if (n + 1 == cap) {
      char *b = realloc(buf, cap * 2);
      if (!b) {
        free(buf);
        return -ENOMEM;
      }
      buf = b;
      cap *= 2;
    }
    ssize_t r = recv(fd, buf + n, cap - 1 - n, MSG_DONTWAIT);
    if (r > 0) {
      n += (size_t)r;
    } else if (r == 0) {
      break;
    } else if (errno != EINTR && errno != EAGAIN) {
      int err = errno;
      free(buf);
      return -err;
    }
  }
  buf[n] = '\0';
  *out = buf;
  return (ssize_t)n;
}

int main(int argc, char **argv) {
  bool json = false;
  const char *pid_arg = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
#ifndef WEFT_PS_TREE
    if (strcmp(a, "--json") == 0) {
      json = true;
      continue;
    }
#endif
    if (a[0] == '-' || pid_arg) {
      fprintf(stderr, PROG ": %s: %s\n",
              a[0] == '-' ? "unknown option" : "one PID only", a);
      usage(stderr);
      return 2;
    }
    pid_arg = a;
  }
  char *end;
  errno = 0;
  long lp = pid_arg ? strtol(pid_arg, &end, 10) : 0;
  if (!pid_arg || *end || errno || lp <= 0 || lp > 0x3fffffff) {
    if (pid_arg)
      fprintf(stderr, PROG ": not a process id: %s\n", pid_arg);
    usage(stderr);
    return 2;
  }
  const char *req = json ? "json\n" : "table\n";
#ifdef WEFT_PS_TREE
  req = "tree\n";
#endif
  int64_t deadline = mono_ms() + TIMEOUT_MS;

  pid_t pid = 0;
  unsigned uid;
  int rc = proc_status((pid_t)lp, &pid, &uid);
  if (rc == -ENOENT) {
    fprintf(stderr, PROG ": no such process: %ld\n", lp);
    return 1;
  }
  if (rc) {
    fprintf(stderr, PROG ": cannot read /proc/%ld/status: %s\n", lp,
            strerror(-rc));
    return 1;
  }

  /* Where the process made its socket: in its XDG_RUNTIME_DIR if that was
   * a private directory of its user, else in /tmp (src/core/ps.c). */
  char paths[2][4096 + 32];
  int np = 0;
  char xdg[4096];
  if (proc_xdg(pid, xdg, sizeof xdg))
    snprintf(paths[np++], sizeof paths[0], "%s/weft/%d.sock", xdg, (int)pid);
  snprintf(paths[np++], sizeof paths[0], "/tmp/weft-%u/%d.sock", uid,
           (int)pid);
  int fd = -1;
  const char *denied = NULL;
  for (int i = 0; i < np && fd < 0; i++) {
    fd = connect_to(paths[i], deadline);
    if (fd >= 0) break;
    if (fd == -ETIMEDOUT) {
      fprintf(stderr, PROG ": process %d did not answer within %d s\n",
              (int)pid, TIMEOUT_MS / 1000);
      return 1;
    }
    if (fd == -EACCES || fd == -EPERM) denied = paths[i];
  }
  /* Whoever listens there must be the process itself (the kernel says
   * who made the listening socket): not someone who put a socket of
   * theirs at the name, to answer in its place. */
  struct ucred cred = {.pid = 0};
  socklen_t cl = sizeof cred;
  if (fd >= 0 &&
      (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
       cred.pid != pid || (cred.uid != uid && cred.uid != 0))) {
    fprintf(stderr,
            PROG ": the socket of process %d is not its own (made by "
                 "process %d, uid %u): not trusting it\n",
            (int)pid, (int)cred.pid, (unsigned)cred.uid);
    close(fd);
    return 1;
  }
  if (fd < 0) {
    if (denied)
      fprintf(stderr,
              PROG ": permission denied: %s: only the user of process %d "
                   "and root may look\n",
              denied, (int)pid);
    else
      fprintf(stderr,
              PROG ": process %d has no weft-ps socket: start it with "
                   "WEFT_PS=1 (or weft_config.ps_socket = 1)\n",
              (int)pid);
    return 1;
  }

  char *out = NULL;
  ssize_t n = exchange(fd, req, &out, deadline);
  close(fd);
  if (n == -ETIMEDOUT) {
    fprintf(stderr, PROG ": process %d did not answer within %d s\n",
            (int)pid, TIMEOUT_MS / 1000);
    return 1;
  }
  if (n < 0 && n != -ECONNRESET && n != -EPIPE) {
    fprintf(stderr, PROG ": reading from process %d: %s\n", (int)pid,
            strerror((int)-n));
    return 1;
  }
  if (n <= 0) {
    /* The process hangs up on a peer of another user at once. */
    fprintf(stderr,
            PROG ": process %d hung up without answering: permission "
                 "denied (only its user and root may look), or it is "
                 "exiting\n",
            (int)pid);
    free(out);
    return 1;
  }
  /* An error line from the process itself ("weft-ps: ..."). */
  if (strncmp(out, "weft-ps: ", 9) == 0) {
    fprintf(stderr, PROG ": process %d: %s", (int)pid, out + 9);
    free(out);
    return 1;
  }
  size_t w = fwrite(out, 1, (size_t)n, stdout);
  free(out);
  if (w != (size_t)n || fflush(stdout) != 0) {
    fprintf(stderr, PROG ": writing the output: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}
