/*
 * Subprocesses (include/weft/proc.h): asyncio's create_subprocess_exec,
 * Process.wait/communicate/send_signal, and Trio's run_process.
 *
 * Starting. posix_spawnp (vfork semantics: no copy of the parent's memory,
 * and glibc reports a failed exec, chdir or open of the child as the
 * call's own error). The child's fds 0-2 are set by file actions (dup2 of
 * the pipe ends or the caller's fds, open of /dev/null), then every fd
 * from 3 up is closed (closefrom): a library that opened an fd without
 * CLOEXEC cannot leak it into our children. Signals are unblocked and
 * reset to their default actions in the child (SETSIGMASK, SETSIGDEF), so
 * a parent that ignores SIGPIPE does not make `head` misbehave in its
 * children. Everything that can fail (pipes, streams, the proc record) is
 * made before the spawn, so a failure leaves no child; only the pidfd is
 * made after it, and if that fails the child is killed and reaped.
 *
 * Waiting. Each child has a pidfd (pidfd_open, Linux 5.3), which becomes
 * readable when the child exits; a waiter tries waitid(WNOHANG) and, if the
 * child still runs, waits for the pidfd through the fd registry (one wait
 * per task, several tasks queue on it). The reaping waitid names the pid,
 * never -1: other code's children are not ours to reap.
 *
 * Without pidfd_open (ENOSYS, or WEFT_PROC_PIDFD=0 in the environment when
 * the loop first spawns) the loop watches SIGCHLD (weft_signal_open) in a
 * task of this layer, the reaper: on each SIGCHLD it tries waitid(WNOHANG)
 * on each of the loop's children still running and wakes their waiters,
 * who wait on the proc record's own list. The pid of a child we have not
 * reaped cannot be reused, so kill(pid) is safe in that mode too.
 *
 * No zombie. Every child the loop started is on its list until it is
 * reaped and its handle closed. weft_proc_close of a running child keeps
 * the record (an orphan) and the loop reaps it when it exits: in pidfd
 * mode a small task of this layer waits for it, in SIGCHLD mode the
 * reaper does. When the loop ends (the loop_stop hook, after every task
 * finished), every child still running gets SIGKILL and is reaped with a
 * blocking waitid (immediate after SIGKILL), and every record left is
 * freed with its streams.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/debug.h"
#include "io/internal.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

extern char **environ;

#define DEF_LIMIT ((size_t)64 << 20) /* communicate: per output stream */
#define DEF_GRACE WEFT_SEC(5)        /* weft_proc_run: SIGTERM to SIGKILL */
#define IN_CHUNK ((size_t)64 << 10)  /* communicate: input per write */
#define OUT_FIRST ((size_t)16 << 10) /* communicate: first output buffer */
#define ORPHAN_POLL WEFT_MS(10) /* SIGCHLD mode with no reaper (loop end) */
#define SIGCHLD_NET WEFT_SEC(1) /* SIGCHLD mode: a look without a signal */

/* ---- records ---------------------------------------------------------- */

enum { M_UNKNOWN, M_PIDFD, M_SIGCHLD };

/* A task parked in weft_proc_wait in SIGCHLD mode (in its body's
 * wait_node: no allocation). */
typedef struct pwaiter {
  weft_task *task;
  struct pwaiter *next, **pprev;
} pwaiter;

_Static_assert(sizeof(pwaiter) <= sizeof(((weft__task_body *)0)->wait_node),
               "weft__task_body.wait_node too small for a pwaiter");

struct weft_proc {
  weft_loop *loop;
  weft_proc *prev, *next; /* on the loop's list (proc_loop.head) */
  pid_t pid;
  pid_t pgid;   /* the group weft_proc_signal_group reaches, or 0 */
  int pidfd;    /* -1 in SIGCHLD mode */
  int status;   /* once exited */
  bool exited;  /* reaped: status is set */
  bool closed;  /* weft_proc_close done: an orphan the loop reaps */
  pwaiter *waiters; /* SIGCHLD mode */
  weft_stream *in, *out, *err;
};

/* The layer's data for one loop (made at its first spawn). */
typedef struct proc_loop {
  weft_proc *head;       /* children not yet reaped-and-closed */
  int mode;              /* M_*, decided at the first spawn */
  weft_signal *sigchld;  /* SIGCHLD mode: the reaper's watch */
  weft_task *reaper;     /* SIGCHLD mode: the reaper task, while it lives */
  weft_scope *nap;       /* the reaper's wait for a signal, while it waits */
} proc_loop;

static int proc_layer = -1;

static proc_loop *pl_of(weft_loop *L) {
  return proc_layer >= 0 ? L->layer_data[proc_layer] : NULL;
}

static proc_loop *pl_get(weft_loop *L) {
  proc_loop *pl = pl_of(L);
  if (!pl && proc_layer >= 0) pl = L->layer_data[proc_layer] = calloc(1, sizeof *pl);
  return pl;
}

static void list_add(proc_loop *pl, weft_proc *p) {
  p->prev = NULL;
  p->next = pl->head;
  if (pl->head) pl->head->prev = p;
  pl->head = p;
}

static void list_del(proc_loop *pl, weft_proc *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    pl->head = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

/* ---- waiters (SIGCHLD mode) --------------------------------------------- */

static void pw_unpark(weft_task *t) {
  pwaiter *w = (pwaiter *)weft__body(t)->wait_node;
  *w->pprev = w->next;
  if (w->next) w->next->pprev = w->pprev;
}

static void wake_waiters(weft_proc *p, int code) {
  while (p->waiters) {
    pwaiter *w = p->waiters;
    p->waiters = w->next;
    if (w->next) w->next->pprev = &p->waiters;
    weft__wake(w->task, code);
  }
}

static int proc_describe(const weft_task *t, const void *obj, char *buf,
                         size_t n) {
  (void)t;
  return snprintf(buf, n, "pid %d", (int)((const weft_proc *)obj)->pid);
}
static const weft__wait_kind proc_kind = {"process exit", proc_describe};

static int pw_park(weft_loop *L, weft_task *t, weft_proc *p) {
  pwaiter *w = (pwaiter *)weft__body(t)->wait_node;
  w->task = t;
  w->next = p->waiters;
  if (w->next) w->next->pprev = &w->next;
  w->pprev = &p->waiters;
  p->waiters = w;
  return weft__park(L, t, pw_unpark, &proc_kind, p);
}

/* ---- reaping -------------------------------------------------------------- */

static int status_of(const siginfo_t *si) {
  return si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
}

static void set_exited(weft_proc *p, int status) {
  p->exited = true;
  p->status = status;
  wake_waiters(p, 0);
}

/* Collects p's exit status if it has exited (true then); never blocks.
 * ECHILD means someone else reaped it (a waitpid(-1) elsewhere in the
 * program, or SIGCHLD set to SIG_IGN): the status is lost, 255 as in
 * asyncio. */
static bool try_reap(weft_proc *p) {
  if (p->exited) return true;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do {
    r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    set_exited(p, 255);
    return true;
  }
  if (si.si_pid == 0) return false;
  set_exited(p, status_of(&si));
  return true;
}

/* SIGKILL, then a blocking reap: the loop is ending, or a child could not
 * be given a pidfd. Immediate after SIGKILL (the kernel only has to tear
 * the process down). */
static void kill_and_reap(weft_proc *p) {
  if (p->exited) return;
  if (p->pidfd >= 0)
    syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
  else
    kill(p->pid, SIGKILL);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do {
    r = waitid(P_PID, (id_t)p->pid, &si, WEXITED);
  } while (r < 0 && errno == EINTR);
  set_exited(p, r < 0 ? 255 : status_of(&si));
}

static void streams_abort(weft_proc *p) {
  if (p->in) weft_stream_abort(p->in);
  if (p->out) weft_stream_abort(p->out);
  if (p->err) weft_stream_abort(p->err);
  p->in = p->out = p->err = NULL;
}

/* Frees a reaped child's record (off the list). */
static void proc_free(proc_loop *pl, weft_proc *p) {
  list_del(pl, p);
  streams_abort(p);
  if (p->pidfd >= 0) weft_fd_close(p->pidfd);
  free(p);
}

/* Waits until p has exited (the body of weft_proc_wait, no entry checks).
 * -EBADF: p was closed meanwhile (do not touch it). */
static int proc_wait(weft_loop *L, weft_task *t, weft_proc *p, int *status) {
  int rc;
  if ((rc = weft__checkpoint(t)) != 0) return rc;
  for (;;) {
    if (try_reap(p)) {
      if (status) *status = p->status;
      return 0;
    }
    if (p->pidfd >= 0) {
      /* The pidfd is readable once the child exited; the registry's
       * cache said so, or not yet known: say "not ready" (the waitid
       * above found it running) and wait for the report. */
      weft__fd_clear(p->pidfd, WEFT_READABLE);
      rc = weft__fd_wait(p->pidfd, WEFT_READABLE, WEFT_FOREVER, &proc_kind, p);
      if (rc < 0) return rc;
    } else if (pl_of(L)->reaper) {
      if ((rc = pw_park(L, t, p)) != 0) return rc;
    } else {
      /* No reaper takes SIGCHLD any more (the loop is ending and it was
       * cancelled): look now and then. */
      if ((rc = weft_sleep(ORPHAN_POLL)) != 0) return rc;
    }
  }
}

/* ---- the layer: orphans, the reaper, the end of a loop ------------------ */

/* An orphan's task (pidfd mode): waits for the closed child and frees it.
 * Cancelled when the loop ends: loop_stop kills and frees what is left. */
static int orphan_main(void *arg) {
  weft_proc *p = arg;
  weft_loop *L = weft__tls_loop;
  if (proc_wait(L, L->current, p, NULL) == 0) proc_free(pl_of(L), p);
  return weft__cancelled(L->current) ? -ECANCELED : 0;
}

/* The reaper (SIGCHLD mode): on each SIGCHLD (several count once) looks
 * at every child of the loop still running. While children run it also
 * looks every SIGCHLD_NET without one: a SIGCHLD can be lost to a handler
 * that other code installed over weft's (sigaction behind our back), or
 * be held back by a sanitizer's signal interception while the loop sleeps
 * (TSan defers a signal that arrives in a system call it does not
 * intercept). Costs nothing while no child runs (no deadline then). */
static int reaper_main(void *arg) {
  proc_loop *pl = arg;
  for (;;) {
    weft_scope nap;
    weft_scope_open(&nap, pl->head ? weft_now() + SIGCHLD_NET : WEFT_FOREVER);
    pl->nap = &nap;
    int sig = weft_signal_wait(pl->sigchld);
    pl->nap = NULL;
    weft_scope_close(&nap);
    if (weft_check_cancel() || (sig < 0 && sig != -ECANCELED)) break;
    for (weft_proc *p = pl->head, *n; p; p = n) {
      n = p->next;
      if (!p->exited && try_reap(p) && p->closed) proc_free(pl, p);
    }
  }
  return weft__cancelled(weft__cur()) ? -ECANCELED : 0;
}

/* task_exit hook: the reaper ended (cancelled at the end of the loop, or
 * before it ran): its watch goes with it. */
static void proc_task_exit(weft_loop *L, weft_task *t) {
  proc_loop *pl = pl_of(L);
  if (pl && t == pl->reaper) {
    pl->reaper = NULL;
    if (pl->sigchld) weft_signal_close(pl->sigchld);
    pl->sigchld = NULL;
  }
}

/* Starts an owned task of this layer (not joined: freed when done). */
static weft_task *layer_task(weft_loop *L, weft_fn fn, void *arg,
                             const char *name) {
  weft_spawn_opts o = {.name = name};
  weft_task *t = weft__task_new(L, fn, arg, &o);
  if (!t) return NULL;
  weft__task_set_owner(t, proc_layer);
  weft__task_start(L, NULL, t, false);
  return t;
}

/* SIGCHLD mode: the watch and its reaper, before the first spawn (so
 * that no SIGCHLD of ours comes before the watch). 0 or -errno. */
static int reaper_ensure(weft_loop *L, proc_loop *pl) {
  if (pl->reaper) return 0;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  weft_signal *w = weft_signal_open(&set);
  if (!w) return -errno;
  pl->sigchld = w;
  pl->reaper = layer_task(L, reaper_main, pl, "weft-proc-reaper");
  if (!pl->reaper) {
    weft_signal_close(w);
    pl->sigchld = NULL;
    return -ENOMEM;
  }
  return 0;
}

/* The first spawn of a loop picks the mechanism: pidfd unless the kernel
 * lacks it (or a seccomp filter forbids it) or WEFT_PROC_PIDFD=0. 0, or
 * -errno (EMFILE: no fd for the probe; not decided yet). */
static int pick_mode(proc_loop *pl) {
  if (pl->mode != M_UNKNOWN) return 0;
  const char *env = getenv("WEFT_PROC_PIDFD");
  if (env && !strcmp(env, "0")) {
    pl->mode = M_SIGCHLD;
    return 0;
  }
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (fd >= 0) {
    close(fd);
    pl->mode = M_PIDFD;
    return 0;
  }
  if (errno == ENOSYS || errno == EPERM || errno == EINVAL) {
    pl->mode = M_SIGCHLD;
    return 0;
  }
  return -errno;
}

/* loop_stop: every task has finished. Kill and reap what still runs,
 * free every record (the handles the program did not close die with the
 * loop, as documented at weft_proc_close). */
static void proc_loop_stop(weft_loop *L) {
  proc_loop *pl = pl_of(L);
  if (!pl) return;
  while (pl->head) {
    weft_proc *p = pl->head;
    kill_and_reap(p);
    proc_free(pl, p);
  }
  /* The SIGCHLD watch is gone already: the reaper's end closed it (its
   * task_exit hook runs whether it ran or not, before this). */
}

static void proc_loop_release(weft_loop *L) {
  free(pl_of(L));
  L->layer_data[proc_layer] = NULL;
}

WEFT__LAYER_CTOR static void proc_layer_register(void) {
  static const weft__layer layer = {
      .loop_stop = proc_loop_stop,
      .loop_release = proc_loop_release,
      .task_exit = proc_task_exit,
  };
  proc_layer = weft__layer_register(&layer); /* cannot fail: WEFT__MAX_LAYERS */
}

/* ---- spawning --------------------------------------------------------- */

static bool stdio_ok(const weft_stdio *s, int target) {
  switch (s->mode) {
    case WEFT_STDIO_INHERIT:
    case WEFT_STDIO_NULL:
    case WEFT_STDIO_PIPE:
      return true;
    case WEFT_STDIO_STDOUT:
      return target == 2;
    case WEFT_STDIO_FD:
      return s->fd >= 0 && fcntl(s->fd, F_GETFD) != -1;
  }
  return false;
}

/* The length of NAME in "NAME=value" (0: not such an entry). */
static size_t env_name_len(const char *e) {
  const char *eq = strchr(e, '=');
  return eq && eq != e ? (size_t)(eq - e) : 0;
}

static bool same_name(const char *a, const char *b, size_t alen) {
  return !strncmp(a, b, alen) && b[alen] == '=';
}

/* The child's environment: environ itself (*envp), or a new array of
 * pointers into environ and opts->env (*owned, freed by the caller after
 * the spawn; the strings are not copied: posix_spawn reads them before it
 * returns). An entry of env overrides an inherited one of the same name,
 * and a later entry of env an earlier one. 0, -EINVAL, -ENOMEM. */
static int make_env(const weft_proc_opts *o, char ***envp, char ***owned) {
  *owned = NULL;
  if (!o->env_clear && !o->env) {
    *envp = environ;
    return 0;
  }
  size_t ne = 0, nb = 0;
  if (o->env)
    for (; o->env[ne]; ne++)
      if (!env_name_len(o->env[ne])) return -EINVAL;
  if (!o->env_clear && environ)
    while (environ[nb]) nb++;
  char **a = malloc((nb + ne + 1) * sizeof *a);
  if (!a) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < nb; i++) {
    size_t l = env_name_len(environ[i]);
    bool over = false;
    for (size_t j = 0; l && j < ne && !over; j++)
      over = same_name(environ[i], o->env[j], l);
    if (!over) a[k++] = environ[i];
  }
  for (size_t i = 0; i < ne; i++) {
    size_t l = env_name_len(o->env[i]);
    bool later = false;
    for (size_t j = i + 1; j < ne && !later; j++)
      later = same_name(o->env[i], o->env[j], l);
    if (!later) a[k++] = (char *)o->env[i];
  }
  a[k] = NULL;
  *envp = *owned = a;
  return 0;
}

/* The file actions for fds 0-2 and the attributes of a spawn. src[i] is
 * the fd to become the child's fd i (-1: INHERIT or NULL). */
static int spawn_setup(const weft_proc_opts *o, const int src[3],
                       posix_spawn_file_actions_t *fa,
                       posix_spawnattr_t *at) {
  const weft_stdio *st[3] = {&o->in, &o->out, &o->err};
  int e = 0;
  if (o->cwd) e = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
  for (int i = 0; i < 3 && !e; i++) {
    switch (st[i]->mode) {
      case WEFT_STDIO_NULL:
        e = posix_spawn_file_actions_addopen(fa, i, "/dev/null",
                                             i ? O_WRONLY : O_RDONLY, 0);
        break;
      case WEFT_STDIO_STDOUT: /* after fd 1 is set up, whatever it is */
        e = posix_spawn_file_actions_adddup2(fa, 1, 2);
        break;
      case WEFT_STDIO_PIPE:
      case WEFT_STDIO_FD:
        /* dup2 onto itself clears CLOEXEC (glibc, as POSIX 2024). */
        e = posix_spawn_file_actions_adddup2(fa, src[i], i);
        break;
      case WEFT_STDIO_INHERIT:
        break;
    }
  }
  if (!e) e = posix_spawn_file_actions_addclosefrom_np(fa, 3);
  if (e) return -e;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all); /* glibc leaves out its internal signals */
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  e = posix_spawnattr_setsigmask(at, &none);
  if (!e) e = posix_spawnattr_setsigdefault(at, &all);
  if (!e && (o->new_group || o->join_group > 0)) {
    flags |= POSIX_SPAWN_SETPGROUP;
    e = posix_spawnattr_setpgroup(at, o->new_group ? 0 : o->join_group);
  }
  if (!e) e = posix_spawnattr_setflags(at, flags);
  return -e;
}

weft_proc *weft_proc_spawn(const char *const argv[],
                           const weft_proc_opts *opts) {
  static const weft_proc_opts defaults;
  const weft_proc_opts *o = opts ? opts : &defaults;
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (!argv || !argv[0] || !stdio_ok(&o->in, 0) || !stdio_ok(&o->out, 1) ||
      !stdio_ok(&o->err, 2) || o->join_group < 0 ||
      (o->new_group && o->join_group > 0))
    return weft__null_errno(-EINVAL);
  const weft_stdio *st[3] = {&o->in, &o->out, &o->err};
  int par[3] = {-1, -1, -1}; /* our ends of the pipes, until streams */
  int chi[3] = {-1, -1, -1}; /* the child's ends, closed after the spawn */
  int low[3] = {-1, -1, -1}; /* copies of sources below 3 (see below) */
  int src[3] = {-1, -1, -1};
  char **envp = NULL, **env_owned = NULL;
  bool fa_ok = false, at_ok = false;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  weft_proc *p = NULL;
  weft_stream **sp[3];
  pid_t pid;
  int rc, e;

  proc_loop *pl = pl_get(L);
  if (!pl) {
    rc = -ENOMEM;
    goto fail;
  }
  if ((rc = pick_mode(pl)) != 0) goto fail;
  if (pl->mode == M_SIGCHLD && (rc = reaper_ensure(L, pl)) != 0) goto fail;
  if ((rc = make_env(o, &envp, &env_owned)) != 0) goto fail;
  if (!(p = calloc(1, sizeof *p))) {
    rc = -ENOMEM;
    goto fail;
  }
  p->loop = L;
  p->pidfd = -1;
  for (int i = 0; i < 3; i++) {
    if (st[i]->mode == WEFT_STDIO_FD) src[i] = st[i]->fd;
    if (st[i]->mode != WEFT_STDIO_PIPE) continue;
    /* CLOEXEC on both ends: the child gets its end through dup2 (which
     * clears the flag) and no other child of ours gets either. The
     * child's end stays blocking (programs expect that); ours is made
     * non-blocking by weft_stream_open. */
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) {
      rc = -errno;
      goto fail;
    }
    par[i] = i == 0 ? pp[1] : pp[0];
    chi[i] = src[i] = i == 0 ? pp[0] : pp[1];
  }
  /* A source fd below 3 other than its own target could be overwritten
   * by an earlier dup2 of the file actions (a parent that closed its fd 0
   * gets pipe ends there): use a copy from 3 up instead. */
  for (int i = 0; i < 3; i++) {
    if (src[i] < 0 || src[i] >= 3 || src[i] == i) continue;
    if ((low[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3)) < 0) {
      rc = -errno;
      goto fail;
    }
    src[i] = low[i];
  }
  if ((rc = -posix_spawn_file_actions_init(&fa)) != 0) goto fail;
  fa_ok = true;
  if ((rc = -posix_spawnattr_init(&at)) != 0) goto fail;
  at_ok = true;
  if ((rc = spawn_setup(o, src, &fa, &at)) != 0) goto fail;
  /* The streams before the spawn, so that nothing after it fails but the
   * pidfd. */
  sp[0] = &p->in;
  sp[1] = &p->out;
  sp[2] = &p->err;
  for (int i = 0; i < 3; i++) {
    if (par[i] < 0) continue;
    int fd = par[i];
    par[i] = -1; /* the stream owns it now, also when open fails */
    if (!(*sp[i] = weft_stream_open(fd, o->stream))) {
      rc = -errno;
      goto fail;
    }
  }
  /* posix_spawn blocks this thread until the child has called exec
   * (vfork semantics): a few ms on a loaded machine, which debug mode
   * would take for a blocking call of the task. */
  if (weft__unlikely(L->debug)) weft__debug_blocking_begin(L);
  e = posix_spawnp(&pid, argv[0], &fa, &at, (char *const *)argv, envp);
  if (weft__unlikely(L->debug)) weft__debug_blocking_end(L);
  if (e) {
    rc = -e;
    goto fail;
  }
  p->pid = pid;
  p->pgid = o->new_group ? pid : o->join_group;
  list_add(pl, p); /* reaped at the loop's end, whatever happens next */
  /* A reaper that waits with no deadline (no child ran) gets one now. */
  if (pl->nap && weft_scope_deadline(pl->nap) == WEFT_FOREVER)
    weft_scope_reschedule(pl->nap, weft_now() + SIGCHLD_NET);
  if (pl->mode == M_PIDFD) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
      rc = -errno;
      kill_and_reap(p);
      list_del(pl, p);
      goto fail;
    }
    p->pidfd = fd;
    weft__fd_adopt(fd);
  }
  rc = 0;
fail:
  for (int i = 0; i < 3; i++) {
    if (par[i] >= 0) close(par[i]);
    if (chi[i] >= 0) close(chi[i]);
    if (low[i] >= 0) close(low[i]);
  }
  if (fa_ok) posix_spawn_file_actions_destroy(&fa);
  if (at_ok) posix_spawnattr_destroy(&at);
  free(env_owned);
  if (!rc) return p;
  if (p) {
    streams_abort(p);
    free(p);
  }
  return weft__null_errno(rc);
}

weft_proc *weft_proc_shell(const char *cmd, const weft_proc_opts *opts) {
  if (!cmd) return weft__null_errno(-EINVAL);
  const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  return weft_proc_spawn(argv, opts);
}

/* ---- small calls ---------------------------------------------------------- */

pid_t weft_proc_pid(const weft_proc *p) { return p ? p->pid : -EINVAL; }

weft_stream *weft_proc_stdin(weft_proc *p) { return p ? p->in : NULL; }
weft_stream *weft_proc_stdout(weft_proc *p) { return p ? p->out : NULL; }
weft_stream *weft_proc_stderr(weft_proc *p) { return p ? p->err : NULL; }

/* The entry checks of a call on p: 0 or the code. */
static inline int check(const weft_proc *p, const char *func) {
  if (weft__unlikely(!p)) return -EINVAL;
  if (weft__unlikely(p->loop != weft__tls_loop))
    return weft__misuse(func, WEFT_ELOOP);
  return 0;
}

int weft_proc_wait(weft_proc *p, int *status) {
  int rc = check(p, __func__);
  if (rc) return rc;
  weft_loop *L = p->loop;
  if (!L->current) return weft__misuse(__func__, WEFT_ENOTASK);
  return proc_wait(L, L->current, p, status);
}

int weft_proc_status(weft_proc *p, int *status) {
  int rc = check(p, __func__);
  if (rc) return rc;
  if (!try_reap(p)) return -EAGAIN;
  if (status) *status = p->status;
  return 0;
}

int weft_proc_send_signal(weft_proc *p, int sig) {
  int rc = check(p, __func__);
  if (rc) return rc;
  if (sig < 0 || sig >= NSIG) return -EINVAL;
  if (p->exited) return 0;
  /* A pidfd names this child only; without one, the pid is still ours
   * until we reap it (a zombie keeps its pid), and we have not. */
  int r = p->pidfd >= 0
              ? (int)syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0)
              : kill(p->pid, sig);
  if (r == 0 || errno == ESRCH) return 0; /* ESRCH: exited */
  return -errno;
}

int weft_proc_terminate(weft_proc *p) {
  return weft_proc_send_signal(p, SIGTERM);
}

int weft_proc_kill(weft_proc *p) { return weft_proc_send_signal(p, SIGKILL); }

int weft_proc_signal_group(weft_proc *p, int sig) {
  int rc = check(p, __func__);
  if (rc) return rc;
  if (sig < 0 || sig >= NSIG) return -EINVAL;
  if (p->pgid <= 0) return -ESRCH;
  return killpg(p->pgid, sig) == 0 ? 0 : -errno;
}

int weft_proc_close(weft_proc *p) {
  int rc = check(p, __func__);
  if (rc) return rc;
  if (p->closed) return -EINVAL;
  weft__name_forget(p);
  weft_loop *L = p->loop;
  proc_loop *pl = pl_of(L);
  streams_abort(p);
  /* Tasks still waiting wake with -EBADF and do not touch p again. */
  wake_waiters(p, -EBADF);
  if (p->pidfd >= 0) weft_fd_forget(p->pidfd);
  if (try_reap(p)) {
    proc_free(pl, p);
    return 0;
  }
  p->closed = true; /* an orphan: reaped when it exits */
  if (p->pidfd >= 0) /* no memory for the task: the loop's end reaps it */
    (void)layer_task(L, orphan_main, p, "weft-proc-orphan");
  return 0;
}

/* ---- communicate -------------------------------------------------------- */

typedef struct comm comm;

/* One of stdout, stderr being collected. */
typedef struct sink {
  comm *c;
  weft_stream *s;
  char **buf;
  size_t *len;
  size_t cap;
} sink;

struct comm {
  weft_proc *p;
  weft_proc_io *io;
  weft_group *g;
  size_t limit;
  size_t given;   /* input bytes handed to the stdin stream */
  size_t sent;    /* ... of which its pipe took */
  int err;        /* the first error that ends communicate at once */
  bool epipe;     /* the child closed its stdin early */
  sink out, err_;
};

/* Ends the exchange at once with rc (the first such error wins). */
static void comm_fail(comm *c, int rc) {
  if (!c->err) c->err = rc;
  weft_group_cancel(c->g);
}

static int comm_writer(void *arg) {
  comm *c = arg;
  weft_stream *s = c->p->in;
  const char *in = c->io->input;
  size_t len = c->io->input_len;
  int rc = 0;
  /* In chunks, draining in between: the stream's buffer stays small
   * (it would copy all of the input otherwise). */
  while (c->given < len) {
    size_t n = len - c->given < IN_CHUNK ? len - c->given : IN_CHUNK;
    if ((rc = weft_stream_write(s, in + c->given, n)) != 0) break;
    c->given += n;
    c->sent = c->given - weft_stream_write_buffered(s);
    if ((rc = weft_stream_drain(s)) != 0) break;
    c->sent = c->given - weft_stream_write_buffered(s);
  }
  if (!rc) rc = weft_stream_write_eof(s);
  if (!rc) {
    c->sent = c->given;
  } else if (rc == -ECANCELED) {
    /* What the pipe did not take is still in the stream's buffer. */
    c->sent = c->given - weft_stream_write_buffered(s);
  } else if (rc == -EPIPE || rc == -ECONNRESET) {
    c->epipe = true; /* the rest is dropped; reading goes on */
  } else {
    comm_fail(c, rc);
  }
  return rc == -ECANCELED ? rc : 0;
}

static int comm_reader(void *arg) {
  sink *k = arg;
  comm *c = k->c;
  for (;;) {
    /* The buffer grows by doubling up to limit + 2 bytes: a read may go
     * one byte past the limit (that byte says the limit was passed), and
     * the NUL. */
    if (k->cap - *k->len - 1 < OUT_FIRST && k->cap < c->limit + 2) {
      size_t cap = k->cap * 2;
      if (cap < *k->len + OUT_FIRST + 1) cap = *k->len + OUT_FIRST + 1;
      if (cap > c->limit + 2) cap = c->limit + 2;
      char *nb = realloc(*k->buf, cap);
      if (!nb) {
        comm_fail(c, -ENOMEM);
        return 0;
      }
      *k->buf = nb;
      k->cap = cap;
    }
    size_t want = k->cap - *k->len - 1; /* <= limit + 1 - len */
    ssize_t r = weft_stream_read(k->s, *k->buf + *k->len, want);
    if (r == 0) return 0;
    if (r < 0) {
      if (r != -ECANCELED) comm_fail(c, (int)r);
      return r == -ECANCELED ? -ECANCELED : 0;
    }
    *k->len += (size_t)r;
    if (*k->len > c->limit) {
      *k->len = c->limit; /* the byte past it is dropped */
      (*k->buf)[*k->len] = '\0';
      comm_fail(c, WEFT_ELIMIT);
      return 0;
    }
    (*k->buf)[*k->len] = '\0';
  }
}

/* Sets up k to collect stream s into *buf / *len ("" to start). */
static int sink_init(comm *c, sink *k, weft_stream *s, char **buf,
                     size_t *len) {
  k->c = c;
  k->s = s;
  k->buf = buf;
  k->len = len;
  k->cap = 1;
  *len = 0;
  if (!s) return 0;
  if (!(*buf = malloc(1))) return -ENOMEM;
  **buf = '\0';
  return 0;
}

int weft_proc_communicate(weft_proc *p, weft_proc_io *io) {
  int rc = check(p, __func__);
  if (rc) return rc;
  weft_loop *L = p->loop;
  weft_task *t = L->current;
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  if (!io || (io->input_len && (!io->input || !p->in))) return -EINVAL;
  io->out = io->err = NULL;
  io->out_len = io->err_len = io->input_sent = 0;
  if ((rc = weft__checkpoint(t)) != 0) return rc;
  comm c = {.p = p, .io = io, .limit = io->limit ? io->limit : DEF_LIMIT};
  if (c.limit > SIZE_MAX - 2) c.limit = SIZE_MAX - 2;
  if ((rc = sink_init(&c, &c.out, p->out, &io->out, &io->out_len)) != 0 ||
      (rc = sink_init(&c, &c.err_, p->err, &io->err, &io->err_len)) != 0) {
    weft_proc_io_free(io);
    return rc;
  }
  if (p->in || p->out || p->err) {
    if (!(c.g = weft_group_open())) {
      weft_proc_io_free(io);
      return errno == EPERM ? WEFT_ENOTASK : -errno;
    }
    static const weft_spawn_opts wo = {.name = "weft-proc-stdin"};
    static const weft_spawn_opts oo = {.name = "weft-proc-stdout"};
    static const weft_spawn_opts eo = {.name = "weft-proc-stderr"};
    if ((p->in && !weft_group_spawn(c.g, comm_writer, &c, &wo)) ||
        (p->out && !weft_group_spawn(c.g, comm_reader, &c.out, &oo)) ||
        (p->err && !weft_group_spawn(c.g, comm_reader, &c.err_, &eo)))
      comm_fail(&c, -errno);
    rc = weft_group_close(c.g, NULL);
  }
  io->input_sent = c.sent;
  if (rc == -ECANCELED) return rc; /* the caller was cancelled */
  if (c.err) return c.err;
  if (rc) return rc; /* not reached: the tasks never fail the group */
  if ((rc = proc_wait(L, t, p, &io->status)) != 0) return rc;
  return c.epipe ? -EPIPE : 0;
}

void weft_proc_io_free(weft_proc_io *io) {
  if (!io) return;
  free(io->out);
  free(io->err);
  io->out = io->err = NULL;
}

/* ---- run ------------------------------------------------------------------ */

/* The child must not outlive weft_proc_run: SIGTERM, up to `grace` for it
 * to exit, then SIGKILL; reaped in every case. Shielded: this runs when
 * the caller was cancelled. */
static void stop_child(weft_loop *L, weft_task *t, weft_proc *p,
                       int64_t grace) {
  weft_scope sc;
  if (weft_proc_terminate(p) == 0 &&
      weft_scope_open_shielded(&sc, weft__deadline_after(L, grace)) == 0) {
    int rc = proc_wait(L, t, p, NULL);
    weft_scope_close(&sc);
    if (rc == 0) return;
  }
  weft_proc_kill(p);
  if (weft_scope_open_shielded(&sc, WEFT_FOREVER) == 0) {
    int rc = proc_wait(L, t, p, NULL);
    weft_scope_close(&sc);
    if (rc == 0) return;
  }
  kill_and_reap(p); /* not reached: a wait with no deadline, shielded */
}

int weft_proc_run(const char *const argv[], const weft_proc_opts *opts,
                  weft_proc_io *io, int64_t grace) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  int rc = weft__checkpoint(t);
  if (rc) return rc;
  /* Input for a stdin that is not a pipe: refused before a child starts. */
  if (io && io->input_len && (!opts || opts->in.mode != WEFT_STDIO_PIPE))
    return -EINVAL;
  weft_proc *p = weft_proc_spawn(argv, opts);
  if (!p) return -errno;
  weft_proc_io local = {0};
  rc = weft_proc_communicate(p, io ? io : &local);
  if (rc != 0 && !try_reap(p))
    stop_child(L, t, p, grace > 0 ? grace : DEF_GRACE);
  if (io && rc != 0 && p->exited) io->status = p->status;
  weft_proc_io_free(&local);
  weft_proc_close(p);
  return rc;
}
