/*
 * The weft-ps socket (src/core/ps.c) and the weft-ps / weft-pstree tools
 * (tools/weft_ps.c).
 *
 * Most tests fork a child that runs a weft loop with known tasks and asks
 * for the socket; the parent looks at it from outside, as a user would:
 * with the tools, with python3's json module as the judge of the JSON,
 * with a raw client for the protocol, and as another user (when run as
 * root). The in-process tests count fds and threads before and after.
 *
 * What depends on the real task dump (src/core/dump.c) rather than on
 * the socket: the task count, the names and waits compared in the JSON
 * (it must be the same document weft_dump_tasks writes, with "on" "sleep"
 * for weft_sleep and "fd" for weft_wait_fd, and the event's name), and
 * the names looked for in the table and tree forms.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "helpers.h"
#include "example_server.h"

/* ---- helpers ---------------------------------------------------------- */

/* A program next to this test (bin/NAME). */
static void bin_path(const char *name, char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  cr_assert_gt(n, 0);
  self[n] = '\0';
  snprintf(out, cap, "%s/%s", dirname(self), name);
  cr_assert_eq(access(out, X_OK), 0, "no %s next to the test", out);
}

#define OUT_CAP 65536

typedef struct cmd_result {
  char out[OUT_CAP], err[OUT_CAP];
  int status; /* exit code; -1: killed, or still running after 20 s */
} cmd_result;

/* Runs argv (argv[0] looked up on PATH unless it has a slash) with its
 * stdout and stderr in r. `target`: a program of this build, run through
 * the emulator of a cross build. */
static void run_cmd(char *const argv[], bool target, cmd_result *r) {
  int po[2], pe[2];
  cr_assert_eq(pipe2(po, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(pe, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, po[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
  char *av[16];
  int n = 0;
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  if (target && emu && *emu) av[n++] = (char *)emu;
  for (int i = 0; argv[i] && n < 15; i++) av[n++] = argv[i];
  av[n] = NULL;
  pid_t pid;
  int rc = posix_spawnp(&pid, av[0], &fa, NULL, av, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(po[1]);
  close(pe[1]);
  cr_assert_eq(rc, 0, "cannot run %s: %s", av[0], strerror(rc));
  size_t no = 0, ne = 0;
  struct pollfd p[2] = {{.fd = po[0], .events = POLLIN},
                        {.fd = pe[0], .events = POLLIN}};
  int64_t end = weft_now() + WEFT_SEC(20);
  while ((p[0].fd >= 0 || p[1].fd >= 0) && weft_now() < end) {
    if (poll(p, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (p[i].fd < 0 || !p[i].revents) continue;
      char *buf = i ? r->err : r->out;
      size_t *len = i ? &ne : &no;
      ssize_t k = read(p[i].fd, buf + *len, OUT_CAP - 1 - *len);
      if (k <= 0) {
        close(p[i].fd);
        p[i].fd = -1;
      } else {
        *len += (size_t)k;
      }
    }
  }
  for (int i = 0; i < 2; i++)
    if (p[i].fd >= 0) close(p[i].fd);
  r->out[no] = r->err[ne] = '\0';
  int st;
  pid_t w;
  while ((w = waitpid(pid, &st, WNOHANG)) == 0 && weft_now() < end)
    usleep(1000);
  if (w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    r->status = -1;
    return;
  }
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* run_cmd with `input` on its stdin (through a temporary file). */
static void run_cmd_in(char *const argv[], const char *input, cmd_result *r) {
  char in[] = "/tmp/weft-ps-in.XXXXXX";
  int fd = mkstemp(in);
  cr_assert_geq(fd, 0);
  size_t len = strlen(input);
  cr_assert_eq(write(fd, input, len), (ssize_t)len);
  cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
  unlink(in);
  int saved = dup(0);
  cr_assert_geq(saved, 0);
  dup2(fd, 0);
  close(fd);
  run_cmd(argv, false, r);
  dup2(saved, 0);
  close(saved);
}

/* Runs bin/<tool> with up to two arguments. */
static void run_tool(const char *tool, const char *a1, const char *a2,
                     cmd_result *r) {
  char path[PATH_MAX + 32];
  bin_path(tool, path, sizeof path);
  char *argv[] = {path, (char *)a1, (char *)a2, NULL};
  run_cmd(argv, true, r);
}

/* Threads of process pid, and how many of them are named "weft-ps". */
static int count_threads_of(pid_t pid, int *named) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  if (named) *named = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    n++;
    char path[400], comm[32] = "";
    snprintf(path, sizeof path, "%s/%s/comm", dir, e->d_name);
    FILE *f = fopen(path, "re");
    if (f) {
      if (fgets(comm, sizeof comm, f) && named &&
          strcmp(comm, "weft-ps\n") == 0)
        (*named)++;
      fclose(f);
    }
  }
  closedir(d);
  return n;
}

/* The socket directory ps.c picks with this environment, and the socket
 * of process pid in it. */
static void sock_dir(char *dir, size_t cap) {
  const char *x = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  if (x && x[0] == '/' && stat(x, &st) == 0 && S_ISDIR(st.st_mode) &&
      st.st_uid == geteuid() && (st.st_mode & 077) == 0)
    snprintf(dir, cap, "%s/weft", x);
  else
    snprintf(dir, cap, "/tmp/weft-%u", (unsigned)geteuid());
}
static void sock_path(pid_t pid, char *path, size_t cap) {
  char dir[200];
  sock_dir(dir, sizeof dir);
  cr_assert_lt((size_t)snprintf(path, cap, "%s/%d.sock", dir, (int)pid), cap);
}

/* A private temporary directory made the XDG_RUNTIME_DIR of this process
 * (and of the children it makes from now on). */
typedef struct xdg_dir {
  char path[64];
  char weft[80]; /* path/weft, made by ps.c */
} xdg_dir;

static void xdg_make(xdg_dir *x) {
  snprintf(x->path, sizeof x->path, "/tmp/weft-ps-test.XXXXXX");
  cr_assert_not_null(mkdtemp(x->path));
  snprintf(x->weft, sizeof x->weft, "%s/weft", x->path);
  cr_assert_eq(setenv("XDG_RUNTIME_DIR", x->path, 1), 0);
}

/* Removes what the tests and ps.c put in it, then it. */
static void xdg_remove(xdg_dir *x) {
  DIR *d = opendir(x->weft);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char p[400];
      snprintf(p, sizeof p, "%s/%s", x->weft, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  if (rmdir(x->weft) != 0 && errno == ENOTDIR) unlink(x->weft);
  cr_assert_eq(rmdir(x->path), 0, "rmdir %s: %s", x->path, strerror(errno));
  unsetenv("XDG_RUNTIME_DIR");
}

/* One exchange with a weft-ps socket: sends req (unless NULL), then
 * (shut: ends its side) reads the answer until the end of the stream,
 * for at most 5 s. On a loop's thread it waits as a task (the loop must
 * go on to answer the dump), elsewhere with poll. The answer's length,
 * or -errno. */
static ssize_t ask(const char *path, const char *req, bool shut, char *buf,
                   size_t cap) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  ssize_t rc = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    rc = -errno;
    goto out;
  }
  if (req && send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
    rc = -errno;
    goto out;
  }
  if (shut) shutdown(fd, SHUT_WR);
  int64_t end = weft_now() + WEFT_SEC(5);
  size_t n = 0;
  for (;;) {
    ssize_t k = read(fd, buf + n, cap - 1 - n);
    if (k > 0) {
      n += (size_t)k;
      if (n == cap - 1) break;
      continue;
    }
    if (k == 0) break;
    if (errno != EAGAIN) {
      rc = -errno;
      goto out;
    }
    if (weft_current()) {
      int w = weft_wait_fd_until(fd, WEFT_READABLE, end);
      if (w < 0) {
        rc = w;
        goto out;
      }
    } else {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      int64_t left = (end - weft_now()) / 1000000;
      if (left <= 0 || poll(&p, 1, (int)left) == 0) {
        rc = -ETIMEDOUT;
        goto out;
      }
    }
  }
  buf[n] = '\0';
  rc = (ssize_t)n;
out:
  close(fd);
  return rc;
}

/* In a child: killed if the test ends first (a failed assertion),
 * rather than left behind. */
static void die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }

/* ---- a child process with known tasks ------------------------------- */

/* The child runs a loop with the socket and these tasks: "main" (waits on
 * the quit pipe, fd), "sleeper" (a long sleep), "waiter" (an event named
 * "go"), "grouper" (closing a group of "child-a", asleep, and "child-b",
 * on the event). Once they are all parked, a thread of the child (no
 * loop's) writes the process's JSON dump to a file and says so. */
typedef struct kid {
  pid_t pid;
  int ready;      /* parent: 'R' once the dump is written ('E': failed) */
  int quit;       /* parent: closing it ends the child's loop */
  char dump[64];  /* the child's own JSON dump */
  char sock[200]; /* its socket */
} kid;

typedef struct kid_args {
  int quit_rd, settled_rd, settled_wr, ready_wr;
  const char *dump;
} kid_args;

static int k_sleep(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_SEC(60));
}
static int k_wait(void *arg) { return weft_event_wait(arg); }
static int k_group(void *arg) {
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  weft_spawn_opts a = {.name = "child-a"}, b = {.name = "child-b"};
  weft_group_spawn(g, k_sleep, NULL, &a);
  weft_group_spawn(g, k_wait, arg, &b);
  return weft_group_close(g, NULL);
}

static int kid_main(void *arg) {
  kid_args *a = arg;
  weft_event *go = weft_event_new();
  if (!go || weft_set_name(go, "go") != 0) return 1;
  weft_spawn_opts so = {.name = "sleeper"}, wo = {.name = "waiter"},
                  go_ = {.name = "grouper"};
  weft_task *s = weft_spawn(k_sleep, NULL, &so);
  weft_task *w = weft_spawn(k_wait, go, &wo);
  weft_task *g = weft_spawn(k_group, go, &go_);
  if (!s || !w || !g) return 1;
  weft_sleep(WEFT_MS(50)); /* everyone runs and parks */
  /* The dumper's request reaches the loop once main is parked below. */
  if (write(a->settled_wr, "s", 1) != 1) return 1;
  int rc = weft_wait_fd(a->quit_rd, WEFT_READABLE);
  weft_event_set(go);
  weft_cancel(s);
  weft_cancel(g);
  weft_join(s);
  weft_join(w);
  weft_join(g);
  weft_event_free(go);
  return rc > 0 ? 0 : 1;
}

static void *kid_dumper(void *arg) {
  kid_args *a = arg;
  char c, r = 'E';
  if (read(a->settled_rd, &c, 1) == 1) {
    FILE *f = fopen(a->dump, "we");
    int rc = f ? weft_dump_tasks(f, WEFT_DUMP_JSON | WEFT_DUMP_ALL) : -1;
    if (f && fclose(f) != 0) rc = -1;
    if (rc == 0) r = 'R';
  }
  if (write(a->ready_wr, &r, 1) != 1) return NULL;
  return NULL;
}

/* Starts the child and waits until it is ready (its dump written). */
static void kid_start(kid *k) {
  snprintf(k->dump, sizeof k->dump, "/tmp/weft-ps-dump.XXXXXX");
  int tf = mkstemp(k->dump);
  cr_assert_geq(tf, 0);
  close(tf);
  int q[2], s[2], r[2];
  cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(r, O_CLOEXEC), 0);
  fflush(NULL);
  k->pid = fork();
  cr_assert_geq(k->pid, 0);
  if (k->pid == 0) {
    die_with_parent();
    close(q[1]);
    close(r[0]);
    kid_args a = {.quit_rd = q[0], .settled_rd = s[0], .settled_wr = s[1],
                  .ready_wr = r[1], .dump = k->dump};
    int fds0 = count_fds(), thr0 = count_threads_of(getpid(), NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, kid_dumper, &a) != 0) _exit(5);
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.ps_socket = 1;
    int rc = weft_run_with(&cfg, kid_main, &a);
    pthread_join(th, NULL);
    /* Nothing of the socket outlives the loop: no fd, no thread. */
    int bad = count_fds() != fds0 || count_threads_of(getpid(), NULL) != thr0;
    _exit(rc != 0 ? 1 : bad ? 3 : 0);
  }
  close(q[0]);
  close(s[0]);
  close(s[1]);
  close(r[1]);
  k->quit = q[1];
  k->ready = r[0];
  sock_path(k->pid, k->sock, sizeof k->sock);
  struct pollfd p = {.fd = k->ready, .events = POLLIN};
  cr_assert_eq(poll(&p, 1, 10000), 1, "the child did not get ready");
  char c = 0;
  cr_assert_eq(read(k->ready, &c, 1), 1);
  cr_assert_eq(c, 'R', "the child could not write its own dump");
}

/* Ends the child's loop: it must exit 0 (its fd and thread counts back
 * where they were) within 5 s, and leave no socket file. */
static void kid_stop(kid *k) {
  close(k->quit);
  int st = 0;
  pid_t r = 0;
  for (int i = 0; i < 500 && r == 0; i++) {
    r = waitpid(k->pid, &st, WNOHANG);
    if (r == 0) usleep(10000);
  }
  if (r == 0) {
    kill(k->pid, SIGKILL);
    waitpid(k->pid, &st, 0);
  }
  close(k->ready);
  unlink(k->dump);
  cr_assert_neq(r, 0, "the child did not end");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "the child ended with status 0x%x (3: fds or threads left)", st);
  struct stat sb;
  cr_assert_eq(lstat(k->sock, &sb), -1, "%s outlived the loop", k->sock);
  cr_assert_eq(errno, ENOENT);
}

/* ---- what the tools show --------------------------------------------- */

/* ThreadSanitizer kills a process that starts threads after a fork of a
 * multi-threaded one (these tests fork children that run a loop with the
 * listener thread), and its own helper thread throws the thread counts
 * off: these run in the other builds. */
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() cr_skip_test("ThreadSanitizer: fork of a threaded process")
#else
#define SKIP_UNDER_TSAN() ((void)0)
#endif

/* python3 compares the child's own dump with weft-ps's, task by task
 * (name, state, what it waits on and its name; not the times), and
 * prints what it found of the known tasks. */
static const char compare_py[] =
    "import json, sys\n"
    "mine = json.load(open(sys.argv[1]))\n"
    "theirs = json.load(open(sys.argv[2]))\n"
    "pid = int(sys.argv[3])\n"
    "assert mine['pid'] == pid and theirs['pid'] == pid, 'pid'\n"
    "def tasks(d):\n"
    "    r = {}\n"
    "    for l in d['loops']:\n"
    "        for t in l['tasks']:\n"
    "            w = t['wait']\n"
    "            r[(l['loop'], t['id'])] = (t['name'], t['state'],\n"
    "                w and w['on'], w and w['name'])\n"
    "    return r\n"
    "a, b = tasks(mine), tasks(theirs)\n"
    "if a != b:\n"
    "    print('self', sorted(a.items()), 'weft-ps', sorted(b.items()))\n"
    "    sys.exit(1)\n"
    "by = {v[0]: v for v in a.values()}\n"
    "print(len(a), len(mine['loops']), mine['loops'][0]['thread'] == pid,\n"
    "      by['main'][2], by['sleeper'][2], by['waiter'][3],\n"
    "      by['child-b'][3], sorted(by))\n";

Test(ps, tools_show_the_tasks, .timeout = 60) {
  SKIP_UNDER_TSAN();
  if (!have_prog("python3")) cr_skip_test("no python3");
  kid k;
  kid_start(&k);
  char pid[16];
  snprintf(pid, sizeof pid, "%d", (int)k.pid);

  /* The socket and its directory are private. */
  struct stat st;
  cr_assert_eq(lstat(k.sock, &st), 0, "no %s", k.sock);
  cr_assert(S_ISSOCK(st.st_mode));
  cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", st.st_mode & 0777);
  cr_assert_eq(st.st_uid, geteuid());
  char dir[200];
  sock_dir(dir, sizeof dir);
  cr_assert_eq(lstat(dir, &st), 0);
  cr_assert(S_ISDIR(st.st_mode));
  cr_assert_eq(st.st_mode & 0777, 0700, "dir mode %o", st.st_mode & 0777);
  /* One listener thread, by its name. */
  int named;
  cr_assert_geq(count_threads_of(k.pid, &named), 2);
  cr_assert_eq(named, 1);

  static cmd_result r;
  run_tool("weft-ps", "--json", pid, &r);
  cr_assert_eq(r.status, 0, "weft-ps --json: %d, %s", r.status, r.err);
  cr_assert_str_empty(r.err);
  char theirs[] = "/tmp/weft-ps-json.XXXXXX";
  int fd = mkstemp(theirs);
  cr_assert_geq(fd, 0);
  size_t len = strlen(r.out);
  cr_assert_eq(write(fd, r.out, len), (ssize_t)len);
  close(fd);
  char *py[] = {"python3", "-c", (char *)compare_py, k.dump, theirs, pid,
                NULL};
  static cmd_result c;
  run_cmd(py, false, &c);
  unlink(theirs);
  cr_assert_eq(c.status, 0, "compare: %s %s", c.out, c.err);
  cr_assert_str_eq(c.out,
                   "6 1 True fd sleep go go ['child-a', 'child-b', "
                   "'grouper', 'main', 'sleeper', 'waiter']\n");

  static const char *names[] = {"main",    "sleeper", "waiter",
                                "grouper", "child-a", "child-b"};
  run_tool("weft-ps", pid, NULL, &r);
  cr_assert_eq(r.status, 0, "weft-ps: %d, %s", r.status, r.err);
  cr_assert_str_empty(r.err);
  cr_assert_geq(count_lines(r.out), 7, "%s", r.out); /* header + 6 tasks */
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    cr_assert_not_null(strstr(r.out, names[i]), "table lacks %s:\n%s",
                       names[i], r.out);
  run_tool("weft-pstree", pid, NULL, &r);
  cr_assert_eq(r.status, 0, "weft-pstree: %d, %s", r.status, r.err);
  cr_assert_str_empty(r.err);
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    cr_assert_not_null(strstr(r.out, names[i]), "tree lacks %s:\n%s",
                       names[i], r.out);
  kid_stop(&k);
}

/* The protocol: unknown requests, a silent client, a request ended by the
 * end of the stream, CRLF, an over-long line. */
Test(ps, protocol, .timeout = 60) {
  SKIP_UNDER_TSAN();
  kid k;
  kid_start(&k);
  char buf[8192];
  ssize_t n;
  cr_assert_eq(ask(k.sock, "bogus\n", false, buf, sizeof buf), 25);
  cr_assert_str_eq(buf, "weft-ps: unknown request\n");
  cr_assert_eq(ask(k.sock, "JSON\n", false, buf, sizeof buf), 25);
  cr_assert_str_eq(buf, "weft-ps: unknown request\n");
  /* Silence: hung up on after about a second, with nothing said. */
  int64_t t0 = weft_now();
  cr_assert_eq(ask(k.sock, NULL, false, buf, sizeof buf), 0);
  int64_t took = weft_now() - t0;
  cr_assert(took >= WEFT_MS(900) && took < WEFT_SEC(4), "took %.0f ms",
            MS_OF(took));
  /* Too long a line: hung up on, nothing said (the reset: it left what
   * we sent unread). */
  char longreq[200];
  memset(longreq, 'a', sizeof longreq - 1);
  longreq[sizeof longreq - 1] = '\0';
  n = ask(k.sock, longreq, false, buf, sizeof buf);
  cr_assert(n == 0 || n == -ECONNRESET, "%zd", n);
  /* The end of the stream ends a request too; a CR before the LF is
   * dropped. */
  n = ask(k.sock, "json", true, buf, sizeof buf);
  cr_assert_gt(n, 0, "%zd", n);
  cr_assert_eq(buf[0], '{', "%s", buf);
  cr_assert_not_null(strstr(buf, "\"sleeper\""), "%s", buf);
  n = ask(k.sock, "tree\r\n", false, buf, sizeof buf);
  cr_assert_gt(n, 0);
  cr_assert_null(strstr(buf, "weft-ps:"), "%s", buf);
  cr_assert_not_null(strstr(buf, "child-a"), "%s", buf);
  kid_stop(&k);
}

/* Root runs the tests in CI: then a peer of another uid is kept out, by
 * the directory's mode and, past it, by SO_PEERCRED. */
static int as_nobody_connect(const char *path) {
  if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
      setresuid(65534, 65534, 65534) != 0)
    return 10;
  char buf[64];
  ssize_t n = ask(path, "json\n", false, buf, sizeof buf);
  return n == -EACCES ? 0 : 11;
}

/* euid nobody, but the filesystem uid root's: the directory lets it
 * through, the peer check (which sees the euid) must not. */
static int as_nobody_fsroot(const char *path) {
  if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
      setresuid(0, 65534, 0) != 0)
    return 10;
  setfsuid(0);
  if (setfsuid((uid_t)-1) != 0) return 12;
  char buf[64];
  ssize_t n = ask(path, "json\n", false, buf, sizeof buf);
  /* Hung up on: before the request was sent (EPIPE), or after. */
  return n == 0 || n == -ECONNRESET || n == -EPIPE ? 0
         : n < 0 && n > -100                       ? (int)(100 - n)
                                                   : 11;
}

static int in_child(int (*fn)(const char *), const char *arg) {
  fflush(NULL);
  pid_t p = fork();
  cr_assert_geq(p, 0);
  if (p == 0) {
    die_with_parent();
    _exit(fn(arg));
  }
  int st;
  cr_assert_eq(waitpid(p, &st, 0), p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(ps, other_user_refused, .timeout = 60) {
  SKIP_UNDER_TSAN();
  if (geteuid() != 0) cr_skip_test("needs root (to be another user)");
  kid k;
  kid_start(&k);
  cr_assert_eq(in_child(as_nobody_connect, k.sock), 0,
               "uid 65534 reached the socket");
  int fsr = in_child(as_nobody_fsroot, k.sock);
  cr_assert_eq(fsr, 0, "euid 65534 got an answer (%d: 100 + errno)", fsr);
  /* The tool as that user: permission denied. */
  char tool[PATH_MAX + 32], pid[16];
  bin_path("weft-ps", tool, sizeof tool);
  snprintf(pid, sizeof pid, "%d", (int)k.pid);
  int pe[2];
  cr_assert_eq(pipe(pe), 0);
  fflush(NULL);
  pid_t p = fork();
  cr_assert_geq(p, 0);
  if (p == 0) {
    dup2(pe[1], 2);
    dup2(pe[1], 1);
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(10);
    execl(tool, tool, pid, (char *)NULL);
    _exit(127);
  }
  close(pe[1]);
  char err[1024];
  size_t n = 0;
  ssize_t m;
  while (n + 1 < sizeof err &&
         (m = read(pe[0], err + n, sizeof err - 1 - n)) > 0)
    n += (size_t)m;
  err[n] = '\0';
  close(pe[0]);
  int st;
  cr_assert_eq(waitpid(p, &st, 0), p);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
    cr_log_info("uid 65534 cannot run %s: tool part left out", tool);
  } else {
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status 0x%x: %s", st,
              err);
    cr_assert_not_null(strstr(err, "weft-ps: permission denied"), "%s", err);
  }
  kid_stop(&k);
}

/* ---- the tools' own errors -------------------------------------------- */

Test(ps, tool_errors, .timeout = 60) {
  static cmd_result r;
  /* pid_max is never a process's id. */
  FILE *f = fopen("/proc/sys/kernel/pid_max", "re");
  cr_assert_not_null(f);
  long max = 0;
  cr_assert_eq(fscanf(f, "%ld", &max), 1);
  fclose(f);
  char pid[24];
  snprintf(pid, sizeof pid, "%ld", max);
  run_tool("weft-ps", pid, NULL, &r);
  cr_assert_eq(r.status, 1);
  cr_assert_str_empty(r.out);
  char want[256];
  snprintf(want, sizeof want, "weft-ps: no such process: %ld\n", max);
  cr_assert_str_eq(r.err, want);
  run_tool("weft-pstree", pid, NULL, &r);
  cr_assert_eq(r.status, 1);
  snprintf(want, sizeof want, "weft-pstree: no such process: %ld\n", max);
  cr_assert_str_eq(r.err, want);

  /* A process that is not weft's (or did not ask). */
  pid_t sl;
  char *argv[] = {"sleep", "10", NULL};
  cr_assert_eq(posix_spawnp(&sl, "sleep", NULL, NULL, argv, environ), 0);
  snprintf(pid, sizeof pid, "%d", (int)sl);
  run_tool("weft-ps", "--json", pid, &r);
  kill(sl, SIGKILL);
  waitpid(sl, NULL, 0);
  cr_assert_eq(r.status, 1);
  cr_assert_str_empty(r.out);
  snprintf(want, sizeof want,
           "weft-ps: process %d has no weft-ps socket: start it with "
           "WEFT_PS=1 (or weft_config.ps_socket = 1)\n",
           (int)sl);
  cr_assert_str_eq(r.err, want);

  /* A socket at the name that another process listens on is not
   * believed (here: this test's, at the name of a sleep's). */
  cr_assert_eq(posix_spawnp(&sl, "sleep", NULL, NULL, argv, environ), 0);
  char fake[200], dir[200];
  sock_dir(dir, sizeof dir);
  mkdir(dir, 0700);
  sock_path(sl, fake, sizeof fake);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(lfd, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  cr_assert_lt(strlen(fake), sizeof a.sun_path);
  memcpy(a.sun_path, fake, strlen(fake) + 1);
  int brc = bind(lfd, (struct sockaddr *)&a, sizeof a);
  int lrc = brc == 0 ? listen(lfd, 4) : -1;
  snprintf(pid, sizeof pid, "%d", (int)sl);
  if (lrc == 0) run_tool("weft-ps", pid, NULL, &r);
  kill(sl, SIGKILL);
  waitpid(sl, NULL, 0);
  if (brc == 0) unlink(fake);
  close(lfd);
  cr_assert_eq(lrc, 0, "%s: %s", fake, strerror(errno));
  cr_assert_eq(r.status, 1);
  cr_assert_str_empty(r.out);
  snprintf(want, sizeof want,
           "weft-ps: the socket of process %d is not its own (made by "
           "process %d, uid %u): not trusting it\n",
           (int)sl, (int)getpid(), (unsigned)geteuid());
  cr_assert_str_eq(r.err, want);

  /* Usage. */
  run_tool("weft-ps", NULL, NULL, &r);
  cr_assert_eq(r.status, 2);
  cr_assert_not_null(strstr(r.err, "usage: weft-ps [--json] PID"));
  run_tool("weft-ps", "12x", NULL, &r);
  cr_assert_eq(r.status, 2);
  cr_assert_not_null(strstr(r.err, "not a process id: 12x"));
  run_tool("weft-ps", "1", "2", &r);
  cr_assert_eq(r.status, 2);
  run_tool("weft-ps", "--tree", "1", &r);
  cr_assert_eq(r.status, 2);
  cr_assert_not_null(strstr(r.err, "unknown option: --tree"));
  run_tool("weft-pstree", "--json", "1", &r);
  cr_assert_eq(r.status, 2);
  run_tool("weft-pstree", "--help", NULL, &r);
  cr_assert_eq(r.status, 0);
  cr_assert_eq(strncmp(r.out, "usage: weft-pstree PID\n", 23), 0, "%s", r.out);
  run_tool("weft-ps", "-h", NULL, &r);
  cr_assert_eq(r.status, 0);
  cr_assert_eq(strncmp(r.out, "usage: weft-ps [--json] PID\n", 28), 0);
}

/* ---- in this process --------------------------------------------------- */

typedef struct seen {
  char path[200];
  bool exists, is_sock;
  unsigned mode, dir_mode;
  int threads, named;
  ssize_t n_bogus, n_json, n_table;
  char bogus[64], json[8192], table[8192];
  int ran;     /* a task it spawned ran */
  bool no_ask; /* look, do not talk */
  bool no_dump; /* talk, but ask for no dump */
} seen;

static int ran_task(void *arg) {
  ((seen *)arg)->ran++;
  return 0;
}

/* What a loop of this process sees of its socket. */
static int look_main(void *arg) {
  seen *s = arg;
  struct stat st;
  s->exists = lstat(s->path, &st) == 0;
  if (s->exists) {
    s->is_sock = S_ISSOCK(st.st_mode);
    s->mode = st.st_mode & 0777;
  }
  char dir[200];
  sock_dir(dir, sizeof dir);
  if (stat(dir, &st) == 0) s->dir_mode = st.st_mode & 0777;
  s->threads = count_threads_of(getpid(), &s->named);
  if (weft_join(weft_spawn(ran_task, s, NULL)) != 0) return 1;
  if (s->exists && !s->no_ask) {
    s->n_bogus = ask(s->path, "bogus\n", false, s->bogus, sizeof s->bogus);
    if (s->no_dump) return 0;
    s->n_json = ask(s->path, "json\n", false, s->json, sizeof s->json);
    s->n_table = ask(s->path, "table\n", false, s->table, sizeof s->table);
  }
  return 0;
}

static void run_look(int ps_socket, seen *s) {
  memset(s, 0, sizeof *s);
  sock_path(getpid(), s->path, sizeof s->path);
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.ps_socket = ps_socket;
  cr_assert_eq(weft_run_with(&cfg, look_main, s), 0);
  cr_assert_eq(s->ran, 1);
}

Test(ps, in_process_life, .timeout = 60) {
  SKIP_UNDER_TSAN();
  xdg_dir x;
  xdg_make(&x);
  int fds0 = count_fds(), thr0 = count_threads_of(getpid(), NULL);
  static seen s;
  run_look(1, &s);
  cr_assert(s.exists && s.is_sock, "no socket at %s", s.path);
  cr_assert_eq(strncmp(s.path, x.weft, strlen(x.weft)), 0, "%s", s.path);
  cr_assert_eq(s.mode, 0600);
  cr_assert_eq(s.dir_mode, 0700);
  cr_assert_eq(s.threads, thr0 + 1);
  cr_assert_eq(s.named, 1);
  cr_assert_eq(s.n_bogus, 25);
  cr_assert_str_eq(s.bogus, "weft-ps: unknown request\n");
  /* Its own loop answers too (main waits as a task meanwhile). */
  cr_assert_gt(s.n_json, 0, "%zd", s.n_json);
  cr_assert_eq(s.json[0], '{', "%s", s.json);
  cr_assert_not_null(strstr(s.json, "\"main\""), "%s", s.json);
  cr_assert_gt(s.n_table, 0);
  cr_assert_not_null(strstr(s.table, "main"), "%s", s.table);
  /* Gone with the loop: file, fds, thread. */
  struct stat st;
  cr_assert_eq(lstat(s.path, &st), -1);
  cr_assert_eq(count_fds(), fds0);
  cr_assert_eq(count_threads_of(getpid(), NULL), thr0);
  /* And a second loop after it gets a new one. */
  run_look(1, &s);
  cr_assert(s.exists && s.is_sock);
  cr_assert_eq(s.named, 1);
  cr_assert_eq(lstat(s.path, &st), -1);
  cr_assert_eq(count_fds(), fds0);
  cr_assert_eq(count_threads_of(getpid(), NULL), thr0);
  xdg_remove(&x);
}

/* Asked for only by the config or WEFT_PS=1; the config wins. */
Test(ps, off_unless_asked, .timeout = 60) {
  SKIP_UNDER_TSAN();
  xdg_dir x;
  xdg_make(&x);
  int fds0 = count_fds(), thr0 = count_threads_of(getpid(), NULL);
  static seen s;
  static const struct {
    const char *env; /* NULL: unset */
    int cfg;
    bool on;
  } cases[] = {
      {NULL, -1, false}, {"0", -1, false}, {"", -1, false},
      {"1", 0, false},   {"1", -1, true},  {"yes", -1, true},
      {"0", 1, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if (cases[i].env)
      setenv("WEFT_PS", cases[i].env, 1);
    else
      unsetenv("WEFT_PS");
    run_look(cases[i].cfg, &s);
    cr_assert_eq(s.exists, cases[i].on, "case %zu: socket %d", i, s.exists);
    cr_assert_eq(s.named, cases[i].on ? 1 : 0, "case %zu", i);
    cr_assert_eq(s.threads, thr0 + (cases[i].on ? 1 : 0), "case %zu", i);
    if (!cases[i].on) {
      /* Not even the directory is made. */
      struct stat st;
      cr_assert_eq(lstat(x.weft, &st), -1, "case %zu", i);
    }
  }
  unsetenv("WEFT_PS");
  cr_assert_eq(count_fds(), fds0);
  cr_assert_eq(count_threads_of(getpid(), NULL), thr0);
  xdg_remove(&x);
}

/* Two loops on two threads share one listener; it lasts until the last
 * of them ends. */
typedef struct two {
  int quit_rd;
  int rc;
} two;

static int wait_quit(void *arg) {
  two *t = arg;
  return weft_wait_fd(t->quit_rd, WEFT_READABLE) > 0 ? 0 : 1;
}

static void *other_loop(void *arg) {
  two *t = arg;
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.ps_socket = 1;
  t->rc = weft_run_with(&cfg, wait_quit, t);
  return NULL;
}

Test(ps, loops_share_the_listener, .timeout = 60) {
  SKIP_UNDER_TSAN();
  xdg_dir x;
  xdg_make(&x);
  int fds0 = count_fds(), thr0 = count_threads_of(getpid(), NULL);
  int q[2];
  cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
  two t = {.quit_rd = q[0], .rc = -1};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, other_loop, &t), 0);
  char path[200];
  sock_path(getpid(), path, sizeof path);
  struct stat st;
  for (int i = 0; i < 500 && lstat(path, &st) != 0; i++) usleep(10000);
  cr_assert_eq(lstat(path, &st), 0, "the first loop made no socket");
  ino_t ino = st.st_ino;
  static seen s;
  run_look(1, &s);
  cr_assert(s.exists);
  cr_assert_eq(s.named, 1, "one listener for both loops");
  cr_assert_eq(s.threads, thr0 + 2); /* the other loop's and the listener */
  /* Both loops answer, in one document. */
  int nloops = 0;
  for (const char *p = s.json; (p = strstr(p, "\"loop\"")); p++) nloops++;
  cr_assert_eq(nloops, 2, "%s", s.json);
  /* This loop left: the socket stays for the other one. */
  cr_assert_eq(lstat(path, &st), 0);
  cr_assert_eq(st.st_ino, ino);
  char buf[64];
  cr_assert_eq(ask(path, "x\n", false, buf, sizeof buf), 25);
  close(q[1]);
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_assert_eq(t.rc, 0);
  close(q[0]);
  cr_assert_eq(lstat(path, &st), -1);
  cr_assert_eq(count_fds(), fds0);
  cr_assert_eq(count_threads_of(getpid(), NULL), thr0);
  xdg_remove(&x);
}

/* A process forked while a loop has the listener has no copy of its
 * fds (nobody would serve them), and gets a socket of its own when a loop
 * of it asks. */

Test(ps, fork_child_starts_its_own, .timeout = 60) {
  SKIP_UNDER_TSAN();
  xdg_dir x;
  xdg_make(&x);
  int q[2];
  cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
  two t = {.quit_rd = q[0], .rc = -1};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, other_loop, &t), 0);
  char path[200];
  sock_path(getpid(), path, sizeof path);
  struct stat st;
  for (int i = 0; i < 500 && lstat(path, &st) != 0; i++) usleep(10000);
  cr_assert_eq(lstat(path, &st), 0, "the loop made no socket");
  int before = count_fds();
  fflush(NULL);
  pid_t p = fork();
  cr_assert_geq(p, 0);
  if (p == 0) {
    die_with_parent();
    if (count_fds() != before - 2) _exit(40); /* the socket, the eventfd */
    if (count_threads_of(getpid(), NULL) != 1) _exit(41);
    static seen s;
    memset(&s, 0, sizeof s);
    sock_path(getpid(), s.path, sizeof s.path);
    /* No dump: the list of loops (registry.c) still names the parent's
     * loop, whose thread the child does not have. */
    s.no_dump = true;
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.ps_socket = 1;
    if (weft_run_with(&cfg, look_main, &s) != 0) _exit(42);
    _exit(s.exists && s.named == 1 && s.n_bogus == 25 ? 0 : 43);
  }
  int stc;
  cr_assert_eq(waitpid(p, &stc, 0), p);
  bool still = lstat(path, &st) == 0;
  close(q[1]);
  cr_assert_eq(pthread_join(th, NULL), 0);
  close(q[0]);
  cr_assert(WIFEXITED(stc) && WEXITSTATUS(stc) == 0, "child status 0x%x",
            stc);
  cr_assert(still, "the child took the parent's socket file");
  cr_assert_eq(t.rc, 0);
  cr_assert_eq(lstat(path, &st), -1);
  xdg_remove(&x);
}

/* ---- set-up failures: the loop runs on without the socket ------------ */

typedef struct err_run {
  char err[4096];
  int status;
} err_run;

/* Runs fn() in a child with its stderr in r->err. */
static void run_err_child(int (*fn)(void), err_run *r) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    die_with_parent();
    dup2(p[1], 2);
    close(p[0]);
    close(p[1]);
    _exit(fn());
  }
  close(p[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < sizeof r->err &&
         (k = read(p[0], r->err + n, sizeof r->err - 1 - n)) > 0)
    n += (size_t)k;
  r->err[n] = '\0';
  close(p[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A loop with the socket asked for: 0 if it ran (a task of it ran) and
 * made no socket, 1 if it made one, 2 if it failed. */
static int loop_without_socket(void) {
  static seen s;
  memset(&s, 0, sizeof s);
  sock_path(getpid(), s.path, sizeof s.path);
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.ps_socket = 1;
  if (weft_run_with(&cfg, look_main, &s) != 0 || s.ran != 1) return 2;
  return s.exists ? 1 : 0;
}

static int fds_in_main;
static int count_main(void *arg) {
  (void)arg;
  fds_in_main = count_fds();
  return 0;
}

/* Out of fds when the listener starts: just enough for the loop. */
static int emfile_child(void) {
  int base = count_fds();
  if (weft_run(count_main, NULL) != 0) return 20;
  int need = fds_in_main - base; /* the loop's own fds */
  if (need <= 0 || count_fds() != base) return 21;
  /* The lowest limit under which exactly `need` fds are free. */
  int lim = 0, free_ = 0;
  while (free_ < need) {
    if (fcntl(lim, F_GETFD) < 0) free_++;
    lim++;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = (rlim_t)lim;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 22;
  return loop_without_socket();
}

Test(ps, out_of_fds, .timeout = 30) {
  xdg_dir x;
  xdg_make(&x);
  static err_run r;
  run_err_child(emfile_child, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  /* One line from weft (ASan, out of fds too, may add warnings). */
  static const char want[] =
      "weft: ps: socket: Too many open files: weft-ps disabled\n";
  cr_assert_eq(strncmp(r.err, want, sizeof want - 1), 0, "%s", r.err);
  cr_assert_null(strstr(r.err + 1, "weft:"), "%s", r.err);
  xdg_remove(&x);
}

/* The directory is not private: 0755, or a symlink to a private one. */
Test(ps, foreign_directory_refused, .timeout = 30) {
  xdg_dir x;
  xdg_make(&x);
  static err_run r;
  char want[256];
  snprintf(want, sizeof want,
           "weft: ps: %s is not a private directory: weft-ps disabled\n",
           x.weft);
  cr_assert_eq(mkdir(x.weft, 0700), 0);
  cr_assert_eq(chmod(x.weft, 0755), 0);
  run_err_child(loop_without_socket, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_str_eq(r.err, want);
  cr_assert_eq(rmdir(x.weft), 0);

  char other[96];
  snprintf(other, sizeof other, "%s/elsewhere", x.path);
  cr_assert_eq(mkdir(other, 0700), 0);
  cr_assert_eq(symlink(other, x.weft), 0);
  run_err_child(loop_without_socket, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_str_eq(r.err, want);
  cr_assert_eq(unlink(x.weft), 0);
  cr_assert_eq(rmdir(other), 0);
  xdg_remove(&x);
}

/* An XDG_RUNTIME_DIR others may enter is not used: /tmp/weft-<euid> is. */
static int in_tmp_child(void) {
  static seen s;
  memset(&s, 0, sizeof s);
  snprintf(s.path, sizeof s.path, "/tmp/weft-%u/%d.sock", (unsigned)geteuid(),
           (int)getpid());
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.ps_socket = 1;
  if (weft_run_with(&cfg, look_main, &s) != 0) return 2;
  struct stat st;
  if (lstat(s.path, &st) == 0) return 3; /* outlived the loop */
  return s.exists && s.is_sock && s.n_bogus == 25 ? 0 : 1;
}

Test(ps, public_xdg_not_used, .timeout = 30) {
  xdg_dir x;
  xdg_make(&x);
  cr_assert_eq(chmod(x.path, 0755), 0);
  static err_run r;
  run_err_child(in_tmp_child, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_str_empty(r.err);
  struct stat st;
  cr_assert_eq(lstat(x.weft, &st), -1, "made %s", x.weft);
  xdg_remove(&x);
}

/* A file of the socket's name from before. */
static int pre_kind; /* 0: a dead socket, 1: a regular file, 2: a live one */

static int stale_child(void) {
  char path[200], dir[200];
  sock_dir(dir, sizeof dir);
  if (mkdir(dir, 0700) != 0) return 30;
  sock_path(getpid(), path, sizeof path);
  int fd = -1;
  if (pre_kind == 1) {
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "keep", 4) != 4) return 31;
    close(fd);
  } else {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return 32;
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) return 32;
    if (pre_kind == 2 && listen(fd, 4) != 0) return 33;
    if (pre_kind == 0) close(fd);
  }
  static seen s;
  memset(&s, 0, sizeof s);
  snprintf(s.path, sizeof s.path, "%s", path);
  s.no_ask = pre_kind == 2; /* nobody would answer */
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.ps_socket = 1;
  if (weft_run_with(&cfg, look_main, &s) != 0 || s.ran != 1) return 34;
  struct stat st;
  int exists_after = lstat(path, &st) == 0;
  if (pre_kind == 0) /* replaced by a working one, removed after */
    return s.n_bogus == 25 && !exists_after ? 0 : 35;
  if (pre_kind == 2) { /* left alone, still the other's */
    close(fd);
    return exists_after && S_ISSOCK(st.st_mode) ? 0 : 36;
  }
  char buf[8] = "";
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, buf, sizeof buf) != 4 || memcmp(buf, "keep", 4))
    return 37;
  close(fd);
  return 0;
}

Test(ps, stale_socket, .timeout = 60) {
  xdg_dir x;
  xdg_make(&x);
  static err_run r;
  pre_kind = 0;
  run_err_child(stale_child, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_str_empty(r.err);
  xdg_remove(&x);

  xdg_make(&x);
  pre_kind = 1;
  run_err_child(stale_child, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_not_null(strstr(r.err, "exists and is not our socket: weft-ps "
                                   "disabled\n"), "%s", r.err);
  cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
  xdg_remove(&x);

  xdg_make(&x);
  pre_kind = 2;
  run_err_child(stale_child, &r);
  cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
  cr_assert_not_null(strstr(r.err, "exists and is in use: weft-ps "
                                   "disabled\n"), "%s", r.err);
  cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
  xdg_remove(&x);
}

/* ---- a real program ------------------------------------------------------ */

static const char names_py[] =
    "import json, sys\n"
    "d = json.load(sys.stdin)\n"
    "t = {x['name']: x for l in d['loops'] for x in l['tasks']}\n"
    "print(d['pid'], 'main' in t, t['serve']['wait']['on'])\n";

Test(ps, example_server, .timeout = 60) {
  xdg_dir x;
  xdg_make(&x);
  setenv("WEFT_PS", "1", 1);
  server s;
  server_start(&s, "graceful_shutdown");
  unsetenv("WEFT_PS");
  /* Everything is looked at first and judged after the server is
   * stopped: a failed assertion would leave it running. */
  char path[200], pid[16];
  snprintf(path, sizeof path, "%s/%d.sock", x.weft, (int)s.pid);
  snprintf(pid, sizeof pid, "%d", (int)s.pid);
  struct stat st, dst;
  int sock_rc = lstat(path, &st), dir_rc = lstat(x.weft, &dst);
  static cmd_result r, rj, c;
  run_tool("weft-ps", pid, NULL, &r);
  run_tool("weft-ps", "--json", pid, &rj);
  bool py = have_prog("python3");
  if (py && rj.status == 0) {
    char *argv[] = {"python3", "-c", (char *)names_py, NULL};
    run_cmd_in(argv, rj.out, &c);
  }
  server_stop(&s);
  cr_assert_eq(sock_rc, 0, "no %s", path);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(dir_rc, 0);
  cr_assert_eq(dst.st_mode & 0777, 0700);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_not_null(strstr(r.out, "main"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "serve"), "%s", r.out);
  cr_assert_eq(rj.status, 0, "%s", rj.err);
  if (py) {
    char want[64];
    snprintf(want, sizeof want, "%d True accept\n", (int)s.pid);
    cr_assert_str_eq(c.out, want, "%s", c.err);
  }
  cr_assert_eq(lstat(path, &st), -1, "%s outlived the server", path);
  xdg_remove(&x);
}
