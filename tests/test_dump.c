/*
 * weft_dump_tasks and weft_set_name: the task dump of a known program,
 * read back field by field.
 *
 * The JSON form is parsed by python3's json module (a real peer: the
 * document must be valid JSON, escapes included), whose script prints
 * one line per loop, task, wait and scope (see py_script); the tests
 * compare those lines with what the program set up, field by field ('*'
 * in an expected line matches any one field). The tree and the table are
 * checked as text: each group child below its group, with the tree's
 * indentation, and the table's PARENT column against the JSON's.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "helpers.h"
#include "weft/io.h"
#include "weft/proc.h"
#include "weft/sync.h"
#include "weft/thread.h"

/* ---- reading the JSON form with python3 -------------------------------- */

/* Lines printed (fields joined by '|', null as "-", booleans as
 * true/false), per loop n:
 *   P|pid|number of loops
 *   L|n|thread|busy|ended|measured|number of tasks
 *   T|n|id|name|state|parent task|wait.on|wait.name|wait.detail|fd|events|
 *     cancelled
 *   R|n|id|runs|run_ns|result|group_child|handle|joined_by|has a stack
 *   W|n|id|wait.object|until_ns|for_ns             (waiting tasks only)
 *   X|n|id|name's code points in hex|wait.name's   (exact names)
 *   S|n|scope id|kind|task|parent scope|deadline_ns|cancelled|effective|
 *     shielded|fired|children
 * No single quote in it: it is passed to the shell between two. */
static const char py_script[] =
    "import json,sys\n"
    "d=json.load(open(sys.argv[1]))\n"
    "def s(v):\n"
    "  if v is None: return \"-\"\n"
    "  if v is True: return \"true\"\n"
    "  if v is False: return \"false\"\n"
    "  return str(v).replace(\"\\n\",\"?\").replace(\"|\",\"?\")\n"
    "def hx(v):\n"
    "  return \"-\" if v is None else \" \".join(\"%x\" % ord(c) for c in v)\n"
    "def j(*a):\n"
    "  print(\"|\".join(s(x) for x in a))\n"
    "j(\"P\",d[\"pid\"],len(d[\"loops\"]))\n"
    "for L in d[\"loops\"]:\n"
    "  n=L[\"loop\"]\n"
    "  j(\"L\",n,L.get(\"thread\"),L.get(\"busy\",False),"
    "L.get(\"ended\",False),L.get(\"measured\"),"
    "len(L[\"tasks\"]) if \"tasks\" in L else None)\n"
    "  for t in L.get(\"tasks\",[]):\n"
    "    w=t[\"wait\"] or {}\n"
    "    p=t[\"parent\"]\n"
    "    j(\"T\",n,t[\"id\"],t[\"name\"],t[\"state\"],"
    "p[\"task\"] if p else None,w.get(\"on\"),w.get(\"name\"),"
    "w.get(\"detail\"),w.get(\"fd\"),w.get(\"events\"),t[\"cancelled\"])\n"
    "    j(\"R\",n,t[\"id\"],t[\"runs\"],t[\"run_ns\"],t[\"result\"],"
    "t[\"group_child\"],t[\"handle\"],t[\"joined_by\"],"
    "t[\"stack_size\"] is not None)\n"
    "    if w: j(\"W\",n,t[\"id\"],w[\"object\"],w[\"until_ns\"],"
    "w[\"for_ns\"])\n"
    "    j(\"X\",n,t[\"id\"],hx(t[\"name\"]),hx(w.get(\"name\")))\n"
    "  for c in L.get(\"scopes\",[]):\n"
    "    j(\"S\",n,c[\"id\"],c[\"kind\"],c[\"task\"],c[\"parent\"],"
    "c[\"deadline_ns\"],c[\"cancelled\"],c[\"effective\"],c[\"shielded\"],"
    "c[\"fired\"],c.get(\"children\"))\n";

typedef struct pyout {
  char *text;   /* python's output, split in place */
  char **lines;
  size_t n;
} pyout;

static void pyout_free(pyout *o) {
  free(o->text);
  free(o->lines);
  memset(o, 0, sizeof *o);
}

static void pyout_print(const pyout *o, const char *what) {
  fprintf(stderr, "---- %s (%zu lines)\n", what, o->n);
  for (size_t i = 0; i < o->n; i++) fprintf(stderr, "%s\n", o->lines[i]);
}

/* Parses the JSON document json[0..len) with python3 into *o; asserts that
 * python3 read it (exit status 0). The temporary file is removed. */
static void py_parse(const char *json, size_t len, pyout *o) {
  memset(o, 0, sizeof *o);
  cr_assert_null(strchr(py_script, '\''));
  char path[] = "/tmp/weft-dump-test.XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, json, len), (ssize_t)len);
  close(fd);
  size_t cmdlen = strlen(py_script) + strlen(path) + 64;
  char *cmd = malloc(cmdlen);
  cr_assert_not_null(cmd);
  snprintf(cmd, cmdlen, "python3 -c '%s' %s", py_script, path);
  FILE *p = popen(cmd, "re");
  free(cmd);
  cr_assert_not_null(p);
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  cr_assert_not_null(buf);
  size_t k;
  while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
    n += k;
    if (cap - n - 1 == 0) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert_not_null(buf);
    }
  }
  buf[n] = '\0';
  int st = pclose(p);
  unlink(path);
  if (st != 0) fprintf(stderr, "python3 failed on:\n%.*s\n", (int)len, json);
  cr_assert_eq(st, 0, "python3 could not parse the dump (status %d)", st);
  o->text = buf;
  size_t nl = (size_t)count_lines(buf);
  o->lines = calloc(nl + 1, sizeof *o->lines);
  cr_assert_not_null(o->lines);
  for (char *s = buf, *e; *s && (e = strchr(s, '\n')); s = e + 1) {
    *e = '\0';
    o->lines[o->n++] = s;
  }
}

/* Whether line matches pattern: the same number of '|' fields, each equal
 * or '*' in the pattern. */
static bool line_matches(const char *line, const char *pat) {
  for (;;) {
    size_t a = strcspn(line, "|"), b = strcspn(pat, "|");
    if (!(b == 1 && pat[0] == '*') && (a != b || memcmp(line, pat, a) != 0))
      return false;
    line += a;
    pat += b;
    if (!*line || !*pat) return !*line && !*pat;
    line++;
    pat++;
  }
}

/* The line matching the pattern (there must be exactly one), or NULL. */
static const char *find_line(const pyout *o, const char *pat) {
  const char *found = NULL;
  for (size_t i = 0; i < o->n; i++)
    if (line_matches(o->lines[i], pat)) {
      if (found) return NULL;
      found = o->lines[i];
    }
  return found;
}

/* printf-style pattern: asserts that exactly one line matches; returns it. */
static const char *expect_line(const pyout *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *expect_line(const pyout *o, const char *fmt, ...) {
  char pat[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pat, sizeof pat, fmt, ap);
  va_end(ap);
  const char *l = find_line(o, pat);
  if (!l) pyout_print(o, "python3's reading");
  cr_assert_not_null(l, "no single line matches %s", pat);
  return l;
}

static size_t count_prefix(const pyout *o, const char *prefix) {
  size_t n = 0;
  for (size_t i = 0; i < o->n; i++)
    n += strncmp(o->lines[i], prefix, strlen(prefix)) == 0;
  return n;
}

/* Field k (0: the letter) of a line, as a number (asserts it is one). */
static long long field_ll(const char *line, int k) {
  for (int i = 0; i < k; i++) {
    line = strchr(line, '|');
    cr_assert_not_null(line);
    line++;
  }
  char *end;
  long long v = strtoll(line, &end, 10);
  cr_assert(end != line && (*end == '|' || !*end), "field %d of a line", k);
  return v;
}

/* A dump into memory. */
typedef struct membuf {
  char *buf;
  size_t len;
  int rc;
} membuf;

static void dump_mem(membuf *m, int flags) {
  m->buf = NULL;
  m->len = 0;
  FILE *f = open_memstream(&m->buf, &m->len);
  cr_assert_not_null(f);
  m->rc = weft_dump_tasks(f, flags);
  cr_assert_eq(fclose(f), 0);
}

/* The text's lines, split in place (text must stay alive). */
static size_t split_lines(char *text, char **lines, size_t cap) {
  size_t n = 0;
  for (char *s = text, *e; *s && (e = strchr(s, '\n')) && n < cap; s = e + 1) {
    *e = '\0';
    lines[n++] = s;
  }
  return n;
}

static bool starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The index of the line that starts with prefix, or -1. */
static long line_index(char **lines, size_t n, const char *prefix) {
  for (size_t i = 0; i < n; i++)
    if (starts(lines[i], prefix)) return (long)i;
  return -1;
}

static void need_python(void) {
  if (!have_prog("python3")) cr_skip_test("no python3");
}

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- 1. the dump of a known program ------------------------------------ */

typedef struct known {
  /* objects */
  weft_lock *lk, *lk2;
  weft_cond *cond;
  weft_event *ev_go, *ev_end;
  weft_sem *sem;
  weft_barrier *bar;
  weft_queue *q_in, *q_out;
  weft_chan_ends ch;
  weft_stream_pair sp;
  weft_proc *proc;
  weft_signal *sig;
  int fd_pipe[2], job_pipe[2];
  /* tasks and scopes, recorded by the tasks themselves */
  weft_task *joinee, *holder, *nest_mid, *nest_inner, *g1_barrier;
  weft_task *gs_child;
  weft_group *g1, *g2, *g4;
  weft_scope *deadline_scope, *shield_outer, *shield_inner;
  void *deadline_addr, *shield_outer_addr, *shield_inner_addr; /* kept */
  int proc_status, proc_wait_rc, start_rc;
  int stream_fd;
  pid_t pid;
  /* results */
  membuf json, tree, table;
  uint64_t ids[32];
  const char *names[32];
  size_t ntop;
  uint64_t late_id;
  /* the group children's ids, read while they run */
  uint64_t mid_id, in_id, bar_id, gs_id;
} known;

static known *K;

static int k_sleeper(void *a) {
  (void)a;
  return weft_sleep(WEFT_SEC(5));
}

static int k_long_sleep(void *a) {
  (void)a;
  return weft_sleep(WEFT_SEC(30));
}

static int k_fd_waiter(void *a) {
  (void)a;
  return weft_wait_fd(K->fd_pipe[0], WEFT_READABLE);
}

static int k_joinee(void *a) {
  (void)a;
  return weft_event_wait(K->ev_end);
}

static int k_joiner(void *a) {
  (void)a;
  return weft_join(K->joinee);
}

static int k_holder(void *a) {
  (void)a;
  cr_assert_eq(weft_lock_acquire(K->lk), 0);
  int rc = weft_event_wait(K->ev_go);
  weft_lock_release(K->lk);
  return rc;
}

static int k_locker(void *a) {
  (void)a;
  int rc = weft_lock_acquire(K->lk);
  if (rc == 0) weft_lock_release(K->lk);
  return rc;
}

static int k_cond_waiter(void *a) {
  (void)a;
  cr_assert_eq(weft_lock_acquire(K->lk2), 0);
  int rc = weft_cond_wait(K->cond);
  weft_lock_release(K->lk2); /* held again, also when cancelled */
  return rc;
}

static int k_sem_waiter(void *a) {
  (void)a;
  return weft_sem_acquire(K->sem);
}

static int k_barrier(void *a) {
  (void)a;
  return weft_barrier_wait(K->bar);
}

static int k_nest_mid(void *a) {
  (void)a;
  K->g2 = weft_group_open();
  cr_assert_not_null(K->g2);
  K->nest_inner = gspawn_named(K->g2, k_long_sleep, NULL, "nest-inner");
  return weft_group_close(K->g2, NULL);
}

static int k_nest_outer(void *a) {
  (void)a;
  K->g1 = weft_group_open();
  cr_assert_not_null(K->g1);
  K->nest_mid = gspawn_named(K->g1, k_nest_mid, NULL, "nest-mid");
  K->g1_barrier = gspawn_named(K->g1, k_barrier, NULL, "g1-barrier");
  return weft_group_close(K->g1, NULL);
}

static int k_deadliner(void *a) {
  (void)a;
  weft_scope s;
  cr_assert_eq(weft_scope_open_after(&s, WEFT_SEC(30)), 0);
  K->deadline_scope = K->deadline_addr = &s;
  int rc = weft_sleep(WEFT_SEC(10));
  K->deadline_scope = NULL;
  weft_scope_close(&s);
  return rc;
}

/* Sleeps in a shielded scope inside a scope that main cancels. */
static int k_shielder(void *a) {
  (void)a;
  weft_scope outer, inner;
  cr_assert_eq(weft_scope_open(&outer, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_open_shielded(&inner, WEFT_FOREVER), 0);
  K->shield_outer = K->shield_outer_addr = &outer;
  K->shield_inner = K->shield_inner_addr = &inner;
  int rc = weft_sleep(WEFT_SEC(30));
  K->shield_outer = K->shield_inner = NULL;
  weft_scope_close(&inner);
  weft_scope_close(&outer);
  return rc;
}

static int k_q_get(void *a) {
  (void)a;
  int x;
  return weft_queue_get(K->q_in, &x);
}

static int k_q_put(void *a) {
  (void)a;
  int x = 2;
  return weft_queue_put(K->q_out, &x);
}

static int k_chan_recv(void *a) {
  (void)a;
  int x;
  return weft_chan_recv(K->ch.rx, &x);
}

static int k_stream_read(void *a) {
  (void)a;
  char c;
  return (int)weft_stream_read(K->sp.a, &c, 1);
}

/* A blocking function: reads one byte of the job pipe (released at the
 * end by a write). */
static void *k_blocking_read(void *a) {
  (void)a;
  char c;
  ssize_t r = read(K->job_pipe[0], &c, 1);
  return (void *)(intptr_t)r;
}

static int k_threader(void *a) {
  (void)a;
  return weft_to_thread(k_blocking_read, NULL, NULL);
}

static int k_proc_waiter(void *a) {
  (void)a;
  K->proc_wait_rc = weft_proc_wait(K->proc, &K->proc_status);
  return K->proc_wait_rc;
}

static int k_sig_waiter(void *a) {
  (void)a;
  return weft_signal_wait(K->sig);
}

static int k_gs_owner(void *a) {
  (void)a;
  K->g4 = weft_group_open();
  cr_assert_not_null(K->g4);
  int rc = weft_event_wait(K->ev_end);
  int crc = weft_group_close(K->g4, NULL);
  return rc ? rc : crc;
}

/* Started with weft_group_start: sleeps before it reports. */
static int k_gs_child(void *a) {
  (void)a;
  K->gs_child = weft_current();
  int rc = weft_sleep(WEFT_SEC(30));
  if (rc) return rc;
  return weft_started(NULL);
}

static int k_starter(void *a) {
  (void)a;
  K->start_rc = weft_group_start(K->g4, k_gs_child, NULL,
                                 &(weft_spawn_opts){.name = "gs-child"}, NULL);
  return K->start_rc;
}

static int k_finisher(void *a) {
  (void)a;
  return 7;
}

static weft_task *k_spawn(weft_fn fn, const char *name) {
  weft_task *t = spawn_named(fn, NULL, name);
  K->ids[K->ntop] = weft_task_id(t);
  K->names[K->ntop] = name;
  K->ntop++;
  return t;
}

static int known_main(void *arg) {
  (void)arg;
  K->lk = weft_lock_new();
  K->lk2 = weft_lock_new();
  K->cond = weft_cond_new(K->lk2);
  K->ev_go = weft_event_new();
  K->ev_end = weft_event_new();
  K->sem = weft_sem_new(0);
  K->bar = weft_barrier_new(3);
  K->q_in = weft_queue_new(4, sizeof(int));
  K->q_out = weft_queue_new(1, sizeof(int));
  K->ch = weft_chan_open(4, sizeof(int));
  K->sp = weft_stream_socketpair(NULL);
  cr_assert(K->lk && K->lk2 && K->cond && K->ev_go && K->ev_end && K->sem &&
            K->bar && K->q_in && K->q_out && K->ch.tx && K->sp.a);
  cr_assert_eq(pipe2(K->fd_pipe, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(K->job_pipe, O_CLOEXEC), 0);
  cr_assert_eq(weft_set_name(K->ev_go, "go"), 0);
  cr_assert_eq(weft_set_name(K->q_in, "inbox"), 0);
  cr_assert_eq(weft_set_name(K->q_out, "outbox"), 0);
  cr_assert_eq(weft_set_name(K->ch.rx, "replies"), 0);
  cr_assert_eq(weft_set_name(K->sp.a, "peer"), 0);
  int one = 1;
  cr_assert_eq(weft_queue_try_put(K->q_out, &one), 0); /* full: put waits */
  const char *argv[] = {"sleep", "5", NULL};
  K->proc = weft_proc_spawn(argv, NULL);
  cr_assert_not_null(K->proc, "spawn sleep: errno %d", errno);
  K->pid = weft_proc_pid(K->proc);
  K->stream_fd = weft_stream_fd(K->sp.a);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  K->sig = weft_signal_open(&set);
  cr_assert_not_null(K->sig);

  weft_task *t[32];
  size_t n = 0;
  t[n++] = k_spawn(k_sleeper, "sleeper");
  t[n++] = k_spawn(k_fd_waiter, "fd-waiter");
  t[n++] = K->joinee = k_spawn(k_joinee, "joinee");
  t[n++] = k_spawn(k_joiner, "joiner");
  t[n++] = K->holder = k_spawn(k_holder, "holder");
  t[n++] = k_spawn(k_locker, "locker");
  t[n++] = k_spawn(k_cond_waiter, "cond-waiter");
  t[n++] = k_spawn(k_sem_waiter, "sem-waiter");
  t[n++] = k_spawn(k_nest_outer, "nest-outer");
  t[n++] = k_spawn(k_deadliner, "deadliner");
  t[n++] = k_spawn(k_shielder, "shielder");
  t[n++] = k_spawn(k_q_get, "q-getter");
  t[n++] = k_spawn(k_q_put, "q-putter");
  t[n++] = k_spawn(k_chan_recv, "chan-recv");
  t[n++] = k_spawn(k_stream_read, "stream-reader");
  size_t ithr = n;
  t[n++] = k_spawn(k_threader, "threader");
  size_t iproc = n;
  t[n++] = k_spawn(k_proc_waiter, "proc-waiter");
  t[n++] = k_spawn(k_sig_waiter, "sig-waiter");
  t[n++] = k_spawn(k_gs_owner, "gs-owner");
  t[n++] = k_spawn(k_starter, "starter");
  t[n++] = k_spawn(k_finisher, "finisher");
  /* Every task runs to its wait (the thread job and the process need a
   * moment more than one turn). */
  cr_assert_eq(weft_sleep(WEFT_MS(200)), 0);
  /* On a loaded machine a little longer: until the 20 top-level tasks
   * but the finisher, and the 4 group children, wait. */
  for (int64_t end = weft_now() + WEFT_SEC(5); weft_now() < end;) {
    membuf m;
    dump_mem(&m, WEFT_DUMP_JSON);
    size_t waiting = 0;
    for (const char *s = m.buf; (s = strstr(s, "\"state\":\"waiting\""));
         s++)
      waiting++;
    free(m.buf);
    if (waiting == 24) break;
    cr_assert_eq(weft_sleep(WEFT_MS(10)), 0);
  }
  cr_assert_not_null(K->shield_outer);
  cr_assert_eq(weft_scope_cancel(K->shield_outer), 0);
  /* One not started yet: spawned just before the dump. */
  t[n++] = k_spawn(k_long_sleep, "late");
  K->late_id = weft_task_id(t[n - 1]);
  K->mid_id = weft_task_id(K->nest_mid);
  K->in_id = weft_task_id(K->nest_inner);
  K->bar_id = weft_task_id(K->g1_barrier);
  K->gs_id = weft_task_id(K->gs_child);
  dump_mem(&K->json, WEFT_DUMP_JSON);
  dump_mem(&K->tree, WEFT_DUMP_TREE);
  dump_mem(&K->table, WEFT_DUMP_TABLE);

  /* Clean-up: the process killed, the thread job released, the shielded
   * scope cancelled (an outer cancellation cannot reach it), then every
   * task cancelled and joined, the joiner before its joinee. */
  cr_assert_eq(weft_proc_kill(K->proc), 0);
  cr_assert_eq(weft_join(t[iproc]), 0); /* its wait sees the exit */
  t[iproc] = NULL;
  cr_assert_eq(write(K->job_pipe[1], "x", 1), 1);
  /* Its job finishes (the pipe is closed below: not under the worker's
   * read, as a cancelled weft_to_thread would leave it). */
  weft_join(t[ithr]);
  t[ithr] = NULL;
  cr_assert_eq(weft_scope_cancel(K->shield_inner), 0);
  for (size_t i = 0; i < n; i++)
    if (t[i]) weft_cancel(t[i]);
  for (size_t i = n; i-- > 0;)
    if (t[i]) weft_join(t[i]);
  cr_assert_eq(K->proc_wait_rc, 0);
  cr_assert_eq(K->proc_status, -SIGKILL);
  cr_assert_eq(K->start_rc, -ECANCELED);
  cr_assert_eq(weft_proc_close(K->proc), 0);
  cr_assert_eq(weft_signal_close(K->sig), 0);
  weft_stream_close(K->sp.a);
  weft_stream_close(K->sp.b);
  weft_chan_tx_close(K->ch.tx);
  weft_chan_rx_close(K->ch.rx);
  weft_queue_free(K->q_in);
  weft_queue_free(K->q_out);
  weft_barrier_free(K->bar);
  weft_sem_free(K->sem);
  weft_event_free(K->ev_go);
  weft_event_free(K->ev_end);
  weft_cond_free(K->cond);
  weft_lock_free(K->lk2);
  weft_lock_free(K->lk);
  for (int i = 0; i < 2; i++) {
    close(K->fd_pipe[i]);
    close(K->job_pipe[i]);
  }
  return 0;
}

static uint64_t k_id(const char *name) {
  for (size_t i = 0; i < K->ntop; i++)
    if (strcmp(K->names[i], name) == 0) return K->ids[i];
  cr_assert(false, "no task %s", name);
  return 0;
}

/* Asserts that lines[i...] start with the prefixes want[0..n). */
static void expect_block(char **lines, size_t nlines, long i, char **want,
                         size_t n) {
  cr_assert_geq(i, 0, "no line %s", want[0]);
  for (size_t k = 0; k < n; k++) {
    cr_assert_lt((size_t)i + k, nlines);
    cr_assert(starts(lines[i + k], want[k]), "tree line %zu: '%s', want '%s'",
              (size_t)i + k, lines[i + k], want[k]);
  }
}

#define B(...) \
  (snprintf(w[nw], sizeof w[nw], __VA_ARGS__), wp[nw] = w[nw], nw++)

/* The tree: each group child below its group, scopes below their task,
 * with the tree's indentation. */
static void check_tree(known *k) {
  char *lines[256];
  size_t n = split_lines(k->tree.buf, lines, 256);
  char w[8][256], *wp[8];
  size_t nw = 0;
  char head[64];
  snprintf(head, sizeof head, "loop 1 (thread %d): %zu tasks", my_tid(),
           k->ntop + 5);
  cr_assert_str_eq(lines[0], head);
  cr_assert(starts(lines[1], "task 1 main (main)  running (the dumping task)"),
            "%s", lines[1]);
  uint64_t mid = k->mid_id, in = k->in_id;
  uint64_t bar = k->bar_id, gs = k->gs_id;
  B("task %" PRIu64 " nest-outer  waiting ", k_id("nest-outer"));
  B("`-- group %p (2 children)", (void *)k->g1);
  B("    |-- task %" PRIu64 " nest-mid  waiting ", mid);
  B("    |   `-- group %p (1 child)", (void *)k->g2);
  B("    |       `-- task %" PRIu64 " nest-inner  waiting ", in);
  B("    `-- task %" PRIu64 " g1-barrier  waiting ", bar);
  expect_block(lines, n, line_index(lines, n, w[0]), wp, nw);
  long i = line_index(lines, n, w[0]);
  cr_assert(strstr(lines[i], "on group close (") &&
            strstr(lines[i], "): 2 children left  stack "), "%s", lines[i]);
  /* the line after the block: the next top-level task */
  cr_assert(starts(lines[i + 6], "task "), "%s", lines[i + 6]);
  cr_assert(strstr(lines[i + 4], "on sleep: until +29."), "%s", lines[i + 4]);
  cr_assert(strstr(lines[i + 5], "on barrier (") &&
            strstr(lines[i + 5], "): 1 of 3 parties waiting"), "%s",
            lines[i + 5]);

  nw = 0;
  B("task %" PRIu64 " shielder  waiting ", k_id("shielder"));
  B("`-- scope %p cancelled", (void *)k->shield_outer_addr);
  B("    `-- scope %p shielded", (void *)k->shield_inner_addr);
  i = line_index(lines, n, w[0]);
  expect_block(lines, n, i, wp, nw);
  cr_assert_str_eq(lines[i + 1], w[1]); /* nothing more on these lines */
  cr_assert_str_eq(lines[i + 2], w[2]);

  nw = 0;
  B("task %" PRIu64 " deadliner  waiting ", k_id("deadliner"));
  B("`-- scope %p deadline +29.", (void *)k->deadline_addr);
  i = line_index(lines, n, w[0]);
  expect_block(lines, n, i, wp, nw);
  cr_assert(strstr(lines[i], "on sleep: until +9."), "%s", lines[i]);
  cr_assert_eq(strcmp(lines[i + 1] + strlen(lines[i + 1]) - 2, " s"), 0);

  nw = 0;
  B("task %" PRIu64 " starter  waiting ", k_id("starter"));
  B("`-- task %" PRIu64 " gs-child  waiting ", gs);
  i = line_index(lines, n, w[0]);
  expect_block(lines, n, i, wp, nw);
  char want[64];
  snprintf(want, sizeof want, "on group start: task %" PRIu64 " 'gs-child'  ",
           gs);
  cr_assert(strstr(lines[i], want), "%s", lines[i]);

  nw = 0;
  B("task %" PRIu64 " gs-owner  waiting ", k_id("gs-owner"));
  B("`-- group %p (0 children)", (void *)k->g4);
  expect_block(lines, n, line_index(lines, n, w[0]), wp, nw);

  snprintf(want, sizeof want, "task %" PRIu64 " finisher  done, result 7, "
           "not joined", k_id("finisher"));
  cr_assert(line_index(lines, n, want) >= 0, "no line %s", want);
  snprintf(want, sizeof want, "task %" PRIu64 " late  ready", k->late_id);
  cr_assert(line_index(lines, n, want) >= 0, "no line %s", want);
  /* One line per task, group and scope: 27 tasks, 3 groups, 3 scopes. */
  cr_assert_eq(n, 1 + k->ntop + 5 + 3 + 3, "%zu lines", n);
}

/* The table: a header, then one row per task with its parent's id. */
static void check_table(known *k, const pyout *o) {
  char *lines[256];
  size_t n = split_lines(k->table.buf, lines, 256);
  cr_assert(starts(lines[0], "LOOP ID     PARENT NAME                     "
                             "STATE     STACK   RUNS    CPU_MS   WAIT_S  "
                             "WAITING ON"), "%s", lines[0]);
  cr_assert_eq(n - 1, count_prefix(o, "T|"));
  for (size_t i = 1; i < n; i++) {
    unsigned long long loop, id;
    char parent[32], name[64], state[16];
    cr_assert_eq(sscanf(lines[i], "%llu %llu %31s %63s %15s", &loop, &id,
                        parent, name, state), 5, "%s", lines[i]);
    cr_assert_eq(loop, 1);
    /* Name, state and parent as the JSON has them. */
    expect_line(o, "T|1|%llu|%s|%s|%s|*|*|*|*|*|*", id, name, state, parent);
  }
  char want[128];
  snprintf(want, sizeof want, "1    %-6" PRIu64 " %-6" PRIu64 " nest-inner ",
           k->in_id, k->mid_id);
  cr_assert(line_index(lines, n, want) > 0, "no row %s", want);
}

Test(dump, known_program, .timeout = 30) {
  need_python();
  if (!have_prog("sleep")) cr_skip_test("no sleep program");
  int fds = count_fds();
  known k = {0};
  K = &k;
  cr_assert_eq(weft_run(known_main, NULL), 0);
  cr_assert_eq(count_fds(), fds, "fds before %d, after %d", fds, count_fds());
  cr_assert_eq(k.json.rc, 0);
  cr_assert_eq(k.tree.rc, 0);
  cr_assert_eq(k.table.rc, 0);
  pyout o;
  py_parse(k.json.buf, k.json.len, &o);

  size_t ntasks = k.ntop + 1 + 4; /* main and the group children */
  expect_line(&o, "P|%d|1", (int)getpid());
  expect_line(&o, "L|1|%d|false|false|false|%zu", my_tid(), ntasks);
  cr_assert_eq(count_prefix(&o, "T|"), ntasks);
  cr_assert_eq(count_prefix(&o, "S|"), 6);

#define ID(name) k_id(name)
#define T_(name, rest, ...) \
  expect_line(&o, "T|1|%" PRIu64 "|" name "|" rest, ID(name), ##__VA_ARGS__)
#define W_(id, obj, until) \
  expect_line(&o, "W|1|%" PRIu64 "|%s|" until "|*", id, obj)
  char p[32];
#define PTR(x) (snprintf(p, sizeof p, "%p", (void *)(x)), p)
  expect_line(&o, "T|1|1|main|running|-|-|-|-|-|-|false");
  expect_line(&o, "R|1|1|2|-|-|false|false|-|true");
  T_("sleeper", "waiting|-|sleep|-|-|-|-|false");
  const char *l = W_(ID("sleeper"), "-", "*");
  long long until = field_ll(l, 4);
  cr_assert(until > WEFT_SEC(4) && until <= WEFT_SEC(5) - WEFT_MS(150),
            "until %lld", until);
  cr_assert(field_ll(l, 5) >= WEFT_MS(150) && field_ll(l, 5) < WEFT_SEC(1));
  T_("fd-waiter", "waiting|-|fd|-|-|%d|r|false", k.fd_pipe[0]);
  W_(ID("fd-waiter"), "-", "-");
  T_("joinee", "waiting|-|event|-|-|-|-|false");
  W_(ID("joinee"), PTR(k.ev_end), "-");
  /* joined by the joiner */
  expect_line(&o, "R|1|%" PRIu64 "|1|-|-|false|true|%" PRIu64 "|true",
              ID("joinee"), ID("joiner"));
  T_("joiner", "waiting|-|join|-|task %" PRIu64 " 'joinee'|-|-|false",
     ID("joinee"));
  W_(ID("joiner"), PTR(k.joinee), "-");
  T_("holder", "waiting|-|event|go|-|-|-|false");
  W_(ID("holder"), PTR(k.ev_go), "-");
  T_("locker", "waiting|-|lock|-|held by task %" PRIu64 " 'holder'|-|-|false",
     ID("holder"));
  W_(ID("locker"), PTR(k.lk), "-");
  T_("cond-waiter", "waiting|-|condition|-|-|-|-|false");
  W_(ID("cond-waiter"), PTR(k.cond), "-");
  T_("sem-waiter", "waiting|-|semaphore|-|1 waiting|-|-|false");
  W_(ID("sem-waiter"), PTR(k.sem), "-");
  T_("q-getter", "waiting|-|queue get|inbox|0 of 4 items|-|-|false");
  W_(ID("q-getter"), PTR(k.q_in), "-");
  T_("q-putter", "waiting|-|queue put|outbox|1 of 1 items|-|-|false");
  W_(ID("q-putter"), PTR(k.q_out), "-");
  T_("chan-recv", "waiting|-|channel recv|replies|0 buffered, 1 senders, "
                  "1 receivers|-|-|false");
  W_(ID("chan-recv"), PTR(k.ch.rx), "-");
  T_("stream-reader", "waiting|-|stream read|peer|-|%d|r|false", k.stream_fd);
  W_(ID("stream-reader"), PTR(k.sp.a), "-");
  T_("threader", "waiting|-|thread job|-|-|-|-|false");
  T_("proc-waiter", "waiting|-|process exit|-|pid %d|*|*|false", (int)k.pid);
  W_(ID("proc-waiter"), PTR(k.proc), "-");
  T_("sig-waiter", "waiting|-|signal|-|-|*|*|false");
  W_(ID("sig-waiter"), PTR(k.sig), "-");
  T_("gs-owner", "waiting|-|event|-|-|-|-|false");
  T_("starter", "waiting|-|group start|-|task %" PRIu64 " 'gs-child'|-|-|false",
     k.gs_id);
  T_("finisher", "done|-|-|-|-|-|-|false");
  expect_line(&o, "R|1|%" PRIu64 "|0|-|7|false|true|-|false", ID("finisher"));
  T_("late", "ready|-|-|-|-|-|-|false");
  expect_line(&o, "R|1|%" PRIu64 "|0|-|-|false|true|-|false", k.late_id);
  T_("deadliner", "waiting|-|sleep|-|-|-|-|false");
  l = W_(ID("deadliner"), "-", "*");
  until = field_ll(l, 4);
  cr_assert(until > WEFT_SEC(9) && until <= WEFT_SEC(10), "until %lld", until);
  T_("shielder", "waiting|-|sleep|-|-|-|-|false");

  /* Group children: their parent is the task whose group they are in;
   * the group_start child's is its starter. */
  uint64_t mid = k.mid_id, in = k.in_id;
  uint64_t bar = k.bar_id, gs = k.gs_id;
  expect_line(&o, "T|1|%" PRIu64 "|nest-mid|waiting|%" PRIu64
                  "|group close|-|1 child left|-|-|false",
              mid, ID("nest-outer"));
  expect_line(&o, "T|1|%" PRIu64 "|nest-outer|waiting|-|group close|-|"
                  "2 children left|-|-|false", ID("nest-outer"));
  W_(ID("nest-outer"), PTR(k.g1), "-");
  expect_line(&o, "T|1|%" PRIu64 "|nest-inner|waiting|%" PRIu64
                  "|sleep|-|-|-|-|false", in, mid);
  expect_line(&o, "T|1|%" PRIu64 "|g1-barrier|waiting|%" PRIu64
                  "|barrier|-|1 of 3 parties waiting|-|-|false", bar,
              ID("nest-outer"));
  W_(bar, PTR(k.bar), "-");
  expect_line(&o, "T|1|%" PRIu64 "|gs-child|waiting|%" PRIu64
                  "|sleep|-|-|-|-|false", gs, ID("starter"));
  expect_line(&o, "R|1|%" PRIu64 "|1|-|-|true|false|-|true", gs);
  expect_line(&o, "R|1|%" PRIu64 "|1|-|-|true|false|-|true", in);

  /* Scopes: id|kind|task|parent|deadline|cancelled|effective|shielded|
   * fired|children */
  char q[32];
  snprintf(q, sizeof q, "%p", (void *)k.g1);
  expect_line(&o, "S|1|%s|group|%" PRIu64 "|-|-|false|false|false|false|2", q,
              ID("nest-outer"));
  snprintf(q, sizeof q, "%p", (void *)k.g2);
  expect_line(&o, "S|1|%s|group|%" PRIu64 "|-|-|false|false|false|false|1", q,
              mid);
  snprintf(q, sizeof q, "%p", (void *)k.g4);
  expect_line(&o, "S|1|%s|group|%" PRIu64 "|-|-|false|false|false|false|0", q,
              ID("gs-owner"));
  snprintf(q, sizeof q, "%p", k.deadline_addr);
  l = expect_line(&o, "S|1|%s|scope|%" PRIu64 "|-|*|false|false|false|false|-",
                  q, ID("deadliner"));
  long long dl = field_ll(l, 6);
  cr_assert(dl > WEFT_SEC(29) && dl <= WEFT_SEC(30), "deadline %lld", dl);
  snprintf(q, sizeof q, "%p", k.shield_outer_addr);
  expect_line(&o, "S|1|%s|scope|%" PRIu64 "|-|-|true|true|false|false|-", q,
              ID("shielder"));
  expect_line(&o, "S|1|%s|scope|%" PRIu64 "|%s|-|false|false|true|false|-",
              PTR(k.shield_inner_addr), ID("shielder"), q);
#undef T_
#undef W_
#undef ID
#undef PTR

  check_tree(&k);
  check_table(&k, &o);
  pyout_free(&o);
  free(k.json.buf);
  free(k.tree.buf);
  free(k.table.buf);
}

/* ---- group children not started yet ---------------------------------- */

typedef struct unstarted {
  membuf json, tree;
  uint64_t a, b;
  void *g;
  int close_rc;
} unstarted;

static int nop_task(void *a) {
  (void)a;
  return 0;
}

/* Children spawned into a group and not run yet hang under the group
 * already; one cancelled before it ran says so. */
static int unstarted_main(void *arg) {
  unstarted *u = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  u->g = g;
  weft_task *a = gspawn_named(g, nop_task, NULL, "kid-a");
  weft_task *b = gspawn_named(g, nop_task, NULL, "kid-b");
  u->a = weft_task_id(a);
  u->b = weft_task_id(b);
  cr_assert_eq(weft_cancel(b), 0);
  dump_mem(&u->json, WEFT_DUMP_JSON);
  dump_mem(&u->tree, WEFT_DUMP_TREE);
  u->close_rc = weft_group_close(g, NULL);
  return 0;
}

Test(dump, unstarted_children, .timeout = 10) {
  need_python();
  unstarted u = {0};
  cr_assert_eq(weft_run(unstarted_main, &u), 0);
  cr_assert_eq(u.close_rc, 0); /* a child cancelled alone is no failure */
  cr_assert_eq(u.json.rc, 0);
  cr_assert_eq(u.tree.rc, 0);
  pyout o;
  py_parse(u.json.buf, u.json.len, &o);
  expect_line(&o, "T|1|%" PRIu64 "|kid-a|*|1|-|-|-|-|-|false", u.a);
  expect_line(&o, "T|1|%" PRIu64 "|kid-b|*|1|-|-|-|-|-|true", u.b);
  expect_line(&o, "R|1|%" PRIu64 "|0|-|-|true|false|-|false", u.a);
  char q[32];
  snprintf(q, sizeof q, "%p", u.g);
  expect_line(&o, "S|1|%s|group|1|-|-|false|false|false|false|2", q);
  pyout_free(&o);
  char *lines[16];
  size_t n = split_lines(u.tree.buf, lines, 16);
  cr_assert_eq(n, 5, "%zu lines", n);
  char want[128];
  snprintf(want, sizeof want, "`-- group %p (2 children)", u.g);
  cr_assert_str_eq(lines[2], want);
  snprintf(want, sizeof want, "    |-- task %" PRIu64 " kid-a  ", u.a);
  cr_assert(starts(lines[3], want), "%s", lines[3]);
  snprintf(want, sizeof want, "    `-- task %" PRIu64 " kid-b  ", u.b);
  cr_assert(starts(lines[4], want), "%s", lines[4]);
  free(u.json.buf);
  free(u.tree.buf);
}

/* ---- a deep chain of nested groups ------------------------------------ */

#define DEPTH 200

typedef struct deep {
  int level;
  weft_event *stop;
} deep;

static deep deep_levels[DEPTH + 1];
static bool deep_ready; /* the deepest level runs */

static int deep_level(void *arg) {
  deep *d = arg;
  if (d->level == DEPTH) {
    deep_ready = true;
    return weft_event_wait(d->stop);
  }
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  char name[24];
  snprintf(name, sizeof name, "level-%d", d->level + 1);
  deep_levels[d->level + 1] = (deep){d->level + 1, d->stop};
  gspawn_named(g, deep_level, &deep_levels[d->level + 1], name);
  return weft_group_close(g, NULL);
}

static int deep_main(void *arg) {
  membuf *m = arg;
  weft_event *stop = weft_event_new();
  deep_levels[0] = (deep){0, stop};
  weft_task *t = spawn_named(deep_level, &deep_levels[0], "level-0");
  while (!deep_ready) cr_assert_eq(weft_sleep(WEFT_MS(1)), 0);
  weft_yield(); /* the deepest level parks */
  dump_mem(&m[0], WEFT_DUMP_TREE);
  dump_mem(&m[1], WEFT_DUMP_JSON);
  weft_event_set(stop);
  cr_assert_eq(weft_join(t), 0);
  weft_event_free(stop);
  return 0;
}

/* The tree of 200 nested groups (walked with an explicit stack): each
 * level four columns right of the one above. */
Test(dump, deep_nesting, .timeout = 20) {
  need_python();
  membuf m[2] = {{0}};
  cr_assert_eq(weft_run(deep_main, m), 0);
  cr_assert_eq(m[0].rc, 0);
  cr_assert_eq(m[1].rc, 0);
  static char *lines[2 * DEPTH + 8];
  size_t n = split_lines(m[0].buf, lines, 2 * DEPTH + 8);
  /* loop, main, level-0, then a group and a task per level */
  cr_assert_eq(n, 3 + 2 * DEPTH, "%zu lines", n);
  for (int k = 1; k <= DEPTH; k++) {
    const char *g = lines[3 + 2 * (k - 1)], *t = lines[4 + 2 * (k - 1)];
    size_t gi = (size_t)(2 * k - 2) * 4, ti = (size_t)(2 * k - 1) * 4;
    cr_assert(strspn(g, " ") == gi && starts(g + gi, "`-- group "), "%s", g);
    char want[32];
    snprintf(want, sizeof want, "`-- task %d level-%d  ", k + 2, k);
    cr_assert(strspn(t, " ") == ti && starts(t + ti, want), "%d: %s", k, t);
  }
  cr_assert(strstr(lines[n - 1], "waiting") &&
            strstr(lines[n - 1], "on event"));
  pyout o;
  py_parse(m[1].buf, m[1].len, &o);
  cr_assert_eq(count_prefix(&o, "T|"), DEPTH + 2);
  cr_assert_eq(count_prefix(&o, "S|"), DEPTH);
  expect_line(&o, "T|1|%d|level-%d|waiting|%d|event|-|-|-|-|false", DEPTH + 2,
              DEPTH, DEPTH + 1);
  pyout_free(&o);
  free(m[0].buf);
  free(m[1].buf);
}

/* ---- 2. every loop of the process -------------------------------------- */

typedef struct multi {
  atomic_int ready;     /* loops that spawned their sleeper */
  atomic_int spinning;  /* loop 1's task spins */
  atomic_int loop_dump; /* loop 0: dump now */
  atomic_int loop_dumped;
  atomic_int done;      /* loops may end */
  bool spin;            /* loop 1 spins 1.5 s without a checkpoint */
  bool mutual;          /* both loops dump every loop at once */
  atomic_int arrived;
  membuf both[2];
  int64_t took[2];
  pid_t tid[2];
  membuf own[3]; /* loop 0's dumps of every loop: JSON, tree, table */
  int results[2];
} multi;

typedef struct mloop {
  multi *m;
  int idx;
} mloop;

static int m_sleep(void *a) {
  (void)a;
  return weft_sleep(WEFT_SEC(30));
}

static int m_main(void *arg) {
  mloop *ml = arg;
  multi *m = ml->m;
  m->tid[ml->idx] = my_tid();
  weft_task *t =
      spawn_named(m_sleep, NULL, ml->idx ? "l1-sleeper" : "l0-sleeper");
  weft_yield();
  atomic_fetch_add(&m->ready, 1);
  if (ml->idx == 1 && m->spin) {
    atomic_store(&m->spinning, 1);
    busy_wait(WEFT_MS(1500)); /* no checkpoint: the loop cannot answer */
  }
  if (m->mutual) {
    /* Both arrive, then both ask: each blocks in the other's absence. */
    while (atomic_load(&m->ready) < 2) weft_sleep(WEFT_MS(1));
    atomic_fetch_add(&m->arrived, 1);
    while (atomic_load(&m->arrived) < 2) {
    }
    int64_t t0 = weft_now();
    dump_mem(&m->both[ml->idx], WEFT_DUMP_JSON | WEFT_DUMP_ALL);
    m->took[ml->idx] = weft_now() - t0;
    atomic_store(&m->done, 1);
  }
  if (ml->idx == 0) {
    while (!atomic_load(&m->loop_dump) && !atomic_load(&m->done))
      weft_sleep(WEFT_MS(2));
    if (atomic_load(&m->loop_dump)) {
      dump_mem(&m->own[0], WEFT_DUMP_JSON | WEFT_DUMP_ALL);
      dump_mem(&m->own[1], WEFT_DUMP_TREE | WEFT_DUMP_ALL);
      dump_mem(&m->own[2], WEFT_DUMP_TABLE | WEFT_DUMP_ALL);
      atomic_store(&m->loop_dumped, 1);
    }
  }
  while (!atomic_load(&m->done)) weft_sleep(WEFT_MS(2));
  weft_cancel(t);
  weft_join(t);
  return 0;
}

static void *m_runner(void *arg) {
  multi *m = arg;
  mloop ml[2] = {{m, 0}, {m, 1}};
  void *args[2] = {&ml[0], &ml[1]};
  int rc = weft_run_threads(2, m_main, args, m->results);
  return (void *)(intptr_t)rc;
}

static void wait_flag(atomic_int *f, int v) {
  int64_t end = weft_now() + WEFT_SEC(10);
  while (atomic_load(f) < v) {
    cr_assert_lt(weft_now(), end, "timed out");
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
}

/* Checks a dump of both loops: two entries, distinct numbers, each with
 * its thread and its two tasks. */
static void check_two_loops(const multi *m, const membuf *b) {
  cr_assert_eq(b->rc, 0);
  pyout o;
  py_parse(b->buf, b->len, &o);
  expect_line(&o, "P|%d|2", (int)getpid());
  cr_assert_eq(count_prefix(&o, "L|"), 2);
  long long n0 = field_ll(expect_line(&o, "L|*|%d|false|false|false|2",
                                      m->tid[0]), 1);
  long long n1 = field_ll(expect_line(&o, "L|*|%d|false|false|false|2",
                                      m->tid[1]), 1);
  cr_assert_neq(n0, n1);
  expect_line(&o, "T|%lld|1|main|*|-|*|*|*|*|*|false", n0);
  expect_line(&o, "T|%lld|1|main|*|-|*|*|*|*|*|false", n1);
  expect_line(&o, "T|%lld|2|l0-sleeper|waiting|-|sleep|-|-|-|-|false", n0);
  expect_line(&o, "T|%lld|2|l1-sleeper|waiting|-|sleep|-|-|-|-|false", n1);
  cr_assert_eq(count_prefix(&o, "T|"), 4);
  pyout_free(&o);
}

Test(dump, all_loops, .timeout = 30) {
  need_python();
  int fds = count_fds();
  multi m = {0};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, m_runner, &m), 0);
  wait_flag(&m.ready, 2);
  /* From a thread that runs no loop. */
  membuf b;
  dump_mem(&b, WEFT_DUMP_JSON | WEFT_DUMP_ALL);
  /* From loop 0: itself directly, loop 1 through its inbox. */
  atomic_store(&m.loop_dump, 1);
  wait_flag(&m.loop_dumped, 1);
  atomic_store(&m.done, 1);
  void *rc;
  cr_assert_eq(pthread_join(th, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0);
  cr_assert_eq(m.results[0], 0);
  cr_assert_eq(m.results[1], 0);
  cr_assert_eq(count_fds(), fds);
  check_two_loops(&m, &b);
  check_two_loops(&m, &m.own[0]);
  /* The tree: a heading per loop, in loop order. */
  char *lines[32];
  size_t n = split_lines(m.own[1].buf, lines, 32);
  cr_assert_eq(m.own[1].rc, 0);
  cr_assert_eq(n, 6, "%zu lines", n);
  char want[64];
  cr_assert(starts(lines[0], "loop ") && strstr(lines[0], "): 2 tasks"));
  cr_assert(starts(lines[3], "loop ") && strstr(lines[3], "): 2 tasks"));
  unsigned long long s0, s1;
  int t0, t1;
  cr_assert_eq(sscanf(lines[0], "loop %llu (thread %d)", &s0, &t0), 2);
  cr_assert_eq(sscanf(lines[3], "loop %llu (thread %d)", &s1, &t1), 2);
  cr_assert_lt(s0, s1);
  cr_assert((t0 == m.tid[0] && t1 == m.tid[1]) ||
            (t0 == m.tid[1] && t1 == m.tid[0]));
  snprintf(want, sizeof want, "task 2 l%d-sleeper  waiting ",
           t0 == m.tid[0] ? 0 : 1);
  cr_assert(starts(lines[2], want), "%s", lines[2]);
  /* The table: one header, four rows, each loop's number in front. */
  n = split_lines(m.own[2].buf, lines, 32);
  cr_assert_eq(m.own[2].rc, 0);
  cr_assert_eq(n, 5, "%zu lines", n);
  cr_assert(starts(lines[0], "LOOP ID "));
  size_t rows[2] = {0};
  for (size_t i = 1; i < n; i++) {
    unsigned long long lp;
    cr_assert_eq(sscanf(lines[i], "%llu", &lp), 1);
    cr_assert(lp == s0 || lp == s1);
    rows[lp == s1]++;
  }
  cr_assert_eq(rows[0], 2);
  cr_assert_eq(rows[1], 2);
  free(b.buf);
  for (int i = 0; i < 3; i++) free(m.own[i].buf);
}

/* A loop busy in a long step is listed as busy after the 1 s timeout; the
 * request it answers later is freed by it (ASan: no leak, no
 * use-after-free). */
Test(dump, busy_loop, .timeout = 30) {
  need_python();
  multi m = {.spin = true};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, m_runner, &m), 0);
  wait_flag(&m.ready, 2);
  wait_flag(&m.spinning, 1);
  int64_t t0 = weft_now();
  membuf b;
  dump_mem(&b, WEFT_DUMP_JSON | WEFT_DUMP_ALL);
  int64_t took = weft_now() - t0;
  cr_assert_eq(b.rc, 0);
  cr_assert(took >= WEFT_MS(900) && took < WEFT_MS(1450), "took %.0f ms",
            MS_OF(took));
  atomic_store(&m.done, 1);
  void *rc;
  cr_assert_eq(pthread_join(th, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0);
  pyout o;
  py_parse(b.buf, b.len, &o);
  expect_line(&o, "P|%d|2", (int)getpid());
  long long n0 = field_ll(expect_line(&o, "L|*|%d|false|false|false|2",
                                      m.tid[0]), 1);
  long long n1 = field_ll(expect_line(&o, "L|*|%d|true|false|-|-",
                                      m.tid[1]), 1);
  cr_assert_neq(n0, n1);
  expect_line(&o, "T|%lld|2|l0-sleeper|waiting|-|sleep|-|-|-|-|false", n0);
  cr_assert_eq(count_prefix(&o, "T|"), 2);
  pyout_free(&o);
  /* The exact entry. */
  char want[96];
  snprintf(want, sizeof want, "{\"loop\":%lld,\"thread\":%d,\"busy\":true}",
           n1, m.tid[1]);
  cr_assert_not_null(strstr(b.buf, want), "%s", b.buf);
  free(b.buf);
}

/* ---- 3. errors, and dumps from outside a task ------------------------- */

static int errors_main(void *arg) {
  int *rc = arg;
  rc[0] = weft_dump_tasks(NULL, WEFT_DUMP_TREE);
  rc[1] = weft_dump_tasks(stdout, 3);
  rc[2] = weft_dump_tasks(stdout, WEFT_DUMP_JSON | 0x200);
  rc[3] = weft_dump_tasks(stdout, WEFT_DUMP_TREE | 0x10000);
  FILE *f = fopen("/dev/null", "re"); /* writes to it fail */
  cr_assert_not_null(f);
  rc[4] = weft_dump_tasks(f, WEFT_DUMP_TREE);
  rc[5] = weft_dump_tasks(f, WEFT_DUMP_JSON);
  rc[6] = weft_dump_tasks(f, WEFT_DUMP_TABLE | WEFT_DUMP_ALL);
  fclose(f);
  return 0;
}

Test(dump, errors, .timeout = 10) {
  int rc[7];
  cr_assert_eq(weft_run(errors_main, rc), 0);
  cr_assert_eq(rc[0], -EINVAL);
  cr_assert_eq(rc[1], -EINVAL);
  cr_assert_eq(rc[2], -EINVAL);
  cr_assert_eq(rc[3], -EINVAL);
  cr_assert_eq(rc[4], -EIO);
  cr_assert_eq(rc[5], -EIO);
  cr_assert_eq(rc[6], -EIO);
  /* Outside any loop: -EINVAL first, then WEFT_ENOTASK without
   * WEFT_DUMP_ALL; with it, a document with no loops. */
  cr_assert_eq(weft_dump_tasks(NULL, WEFT_DUMP_ALL), -EINVAL);
  cr_assert_eq(weft_dump_tasks(stdout, 3 | WEFT_DUMP_ALL), -EINVAL);
  cr_assert_eq(weft_dump_tasks(stdout, WEFT_DUMP_TREE), WEFT_ENOTASK);
  cr_assert_eq(weft_dump_tasks(stdout, WEFT_DUMP_JSON), WEFT_ENOTASK);
  membuf b;
  dump_mem(&b, WEFT_DUMP_JSON | WEFT_DUMP_ALL);
  cr_assert_eq(b.rc, 0);
  char want[64];
  snprintf(want, sizeof want, "{\"pid\":%d,\"loops\":[]}\n", (int)getpid());
  cr_assert_str_eq(b.buf, want);
  free(b.buf);
  dump_mem(&b, WEFT_DUMP_TREE | WEFT_DUMP_ALL);
  cr_assert_eq(b.rc, 0);
  cr_assert_str_eq(b.buf, "");
  free(b.buf);
}

/* Dumps from instrument hooks (at each step's end, before a poll) and
 * from a weft_loop_call callback: no task is current there. */
typedef struct hooked {
  int steps, step_fail;
  bool poll_armed;
  membuf poll, call;
  int calls;
} hooked;

static void h_step_end(weft_task *t, void *arg) {
  (void)t;
  hooked *h = arg;
  if (h->steps >= 200) return;
  h->steps++;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    h->step_fail++;
    return;
  }
  for (int form = 0; form < 3; form++)
    if (weft_dump_tasks(f, form) != 0) h->step_fail++;
  fclose(f);
  free(buf);
}

static void h_before_poll(int64_t timeout, void *arg) {
  (void)timeout;
  hooked *h = arg;
  if (!h->poll_armed) return;
  h->poll_armed = false;
  dump_mem(&h->poll, WEFT_DUMP_JSON);
}

static void h_call(void *arg) {
  hooked *h = arg;
  h->calls++;
  dump_mem(&h->call, WEFT_DUMP_TREE);
}

static const weft_instrument h_ins = {.step_end = h_step_end,
                                      .before_poll = h_before_poll};

static int short_task(void *a) {
  (void)a;
  weft_yield();
  return 3;
}

static int hooked_main(void *arg) {
  hooked *h = arg;
  cr_assert_eq(weft_instrument_add(&h_ins, h), 0);
  weft_task *s = spawn_named(m_sleep, NULL, "hook-sleeper");
  weft_task *e = spawn_named(short_task, NULL, "short");
  cr_assert_eq(weft_join(e), 3); /* its exit goes through step_end too */
  h->poll_armed = true;
  cr_assert_eq(weft_sleep(WEFT_MS(20)), 0);
  cr_assert_eq(weft_loop_call(weft_loop_current(), h_call, h), 0);
  while (!h->calls) weft_sleep(WEFT_MS(1));
  weft_cancel(s);
  weft_join(s);
  cr_assert_eq(weft_instrument_remove(&h_ins, h), 0);
  return 0;
}

Test(dump, from_hooks, .timeout = 10) {
  need_python();
  hooked h = {0};
  cr_assert_eq(weft_run(hooked_main, &h), 0);
  cr_assert_geq(h.steps, 4);
  cr_assert_eq(h.step_fail, 0);
  cr_assert_eq(h.poll.rc, 0);
  cr_assert_eq(h.call.rc, 0);
  pyout o;
  py_parse(h.poll.buf, h.poll.len, &o);
  /* Nobody runs before a poll: main sleeps. */
  expect_line(&o, "T|1|1|main|waiting|-|sleep|-|-|-|-|false");
  expect_line(&o, "T|1|2|hook-sleeper|waiting|-|sleep|-|-|-|-|false");
  cr_assert_eq(count_prefix(&o, "T|"), 2);
  pyout_free(&o);
  cr_assert_null(strstr(h.call.buf, "running"), "%s", h.call.buf);
  cr_assert_null(strstr(h.call.buf, "the dumping task"), "%s", h.call.buf);
  cr_assert(starts(h.call.buf, "loop 1 (thread "));
  cr_assert_not_null(strstr(h.call.buf, "\ntask 2 hook-sleeper  waiting "));
  free(h.poll.buf);
  free(h.call.buf);
}

/* ---- 4. names ---------------------------------------------------------- */

#define ODD_NAME "q\"b\\s\nn\xff!"

typedef struct named {
  weft_event *ev;
  weft_lock *lk;
  membuf odd, cleared, reused;
  bool same_addr;
  int rc_null, rc_null_name;
  uint64_t id;
} named;

static int wait_ev(void *a) { return weft_event_wait(a); }

static int acquire_lk(void *a) {
  int rc = weft_lock_acquire(a);
  if (rc == 0) weft_lock_release(a);
  return rc;
}

static int named_main(void *arg) {
  named *n = arg;
  n->rc_null = weft_set_name(NULL, "x");
  n->rc_null_name = weft_set_name(NULL, NULL);
  n->ev = weft_event_new();
  cr_assert_eq(weft_set_name(n->ev, ODD_NAME), 0);
  weft_task *t = spawn_named(wait_ev, n->ev, ODD_NAME);
  n->id = weft_task_id(t);
  weft_yield();
  dump_mem(&n->odd, WEFT_DUMP_JSON);
  cr_assert_eq(weft_set_name(n->ev, NULL), 0);
  dump_mem(&n->cleared, WEFT_DUMP_JSON);
  weft_event_set(n->ev);
  cr_assert_eq(weft_join(t), 0);
  weft_event_free(n->ev);

  /* A named lock freed: a new lock (at the same address, often) does not
   * inherit its name. */
  weft_lock *old = weft_lock_new();
  cr_assert_eq(weft_set_name(old, "old-lock"), 0);
  uintptr_t old_addr = (uintptr_t)old;
  cr_assert_eq(weft_lock_free(old), 0);
  n->lk = weft_lock_new();
  n->same_addr = (uintptr_t)n->lk == old_addr;
  cr_assert_eq(weft_lock_acquire(n->lk), 0);
  weft_task *u = spawn_named(acquire_lk, n->lk, "lk-waiter");
  weft_yield();
  dump_mem(&n->reused, WEFT_DUMP_JSON);
  cr_assert_eq(weft_lock_release(n->lk), 0);
  cr_assert_eq(weft_join(u), 0);
  /* Set, free, set on another: the first name goes with its object. */
  cr_assert_eq(weft_set_name(n->lk, "first"), 0);
  cr_assert_eq(weft_lock_free(n->lk), 0);
  weft_event *e2 = weft_event_new();
  cr_assert_eq(weft_set_name(e2, "second"), 0);
  cr_assert_eq(weft_set_name(e2, "second, renamed"), 0);
  weft_task *v = spawn_named(wait_ev, e2, "e2-waiter");
  weft_yield();
  membuf m;
  dump_mem(&m, WEFT_DUMP_TREE);
  cr_assert_eq(m.rc, 0);
  cr_assert_not_null(strstr(m.buf, "on event 'second, renamed' ("), "%s",
                     m.buf);
  cr_assert_null(strstr(m.buf, "first"), "%s", m.buf);
  free(m.buf);
  weft_event_set(e2);
  cr_assert_eq(weft_join(v), 0);
  weft_event_free(e2);
  return 0;
}

Test(dump, names, .timeout = 10) {
  need_python();
  named n = {0};
  cr_assert_eq(weft_run(named_main, &n), 0);
  cr_assert_eq(n.rc_null, -EINVAL);
  cr_assert_eq(n.rc_null_name, -EINVAL);
  cr_assert_eq(n.odd.rc, 0);
  pyout o;
  /* The name comes back equal, 0xff as U+00FF. */
  py_parse(n.odd.buf, n.odd.len, &o);
  const char *hex = "71 22 62 5c 73 a 6e ff 21";
  expect_line(&o, "X|1|%" PRIu64 "|%s|%s", n.id, hex, hex);
  expect_line(&o, "T|1|%" PRIu64 "|q\"b\\s?n\xc3\xbf!|waiting|-|event|"
                  "q\"b\\s?n\xc3\xbf!|-|-|-|false", n.id);
  pyout_free(&o);
  py_parse(n.cleared.buf, n.cleared.len, &o);
  expect_line(&o, "X|1|%" PRIu64 "|%s|-", n.id, hex);
  expect_line(&o, "T|1|%" PRIu64 "|*|waiting|-|event|-|-|-|-|false", n.id);
  pyout_free(&o);
  py_parse(n.reused.buf, n.reused.len, &o);
  cr_log_info("the new lock is %sat the freed one's address",
              n.same_addr ? "" : "not ");
  expect_line(&o, "T|1|*|lk-waiter|waiting|-|lock|-|held by task 1 'main'|-|"
                  "-|false");
  pyout_free(&o);
  free(n.odd.buf);
  free(n.cleared.buf);
  free(n.reused.buf);
}

/* The text forms: control characters of a name become '?'. */
static int odd_text_main(void *arg) {
  membuf *m = arg;
  weft_event *ev = weft_event_new();
  cr_assert_eq(weft_set_name(ev, ODD_NAME), 0);
  weft_task *t = spawn_named(wait_ev, ev, "tab\there");
  weft_yield();
  dump_mem(&m[0], WEFT_DUMP_TREE);
  dump_mem(&m[1], WEFT_DUMP_TABLE);
  weft_event_set(ev);
  weft_join(t);
  weft_event_free(ev);
  return 0;
}

Test(dump, names_in_text, .timeout = 10) {
  membuf m[2];
  cr_assert_eq(weft_run(odd_text_main, m), 0);
  cr_assert_eq(m[0].rc, 0);
  cr_assert_eq(m[1].rc, 0);
  cr_assert_eq(count_lines(m[0].buf), 3, "%s", m[0].buf);
  cr_assert_eq(count_lines(m[1].buf), 3, "%s", m[1].buf);
  cr_assert_not_null(strstr(m[0].buf, "\ntask 2 tab?here  waiting "));
  cr_assert_not_null(strstr(m[0].buf, "on event 'q\"b\\s?n\xff!' ("));
  cr_assert_not_null(strstr(m[1].buf, " tab?here "));
  free(m[0].buf);
  free(m[1].buf);
}

/* ---- 5. run time -------------------------------------------------------- */

static int worker(void *a) {
  (void)a;
  busy_wait(WEFT_MS(3));
  return weft_sleep(WEFT_SEC(30));
}

static int measured_main(void *arg) {
  membuf *m = arg;
  weft_task *t = spawn_named(worker, NULL, "worker");
  weft_sleep(WEFT_MS(10));
  dump_mem(m, WEFT_DUMP_JSON);
  weft_cancel(t);
  weft_join(t);
  return 0;
}

static void check_measured(int debug) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.debug = debug;
  cfg.ps_socket = 0;
  cfg.trace_path = NULL;
  membuf m;
  cr_assert_eq(weft_run_with(&cfg, measured_main, &m), 0);
  cr_assert_eq(m.rc, 0);
  pyout o;
  py_parse(m.buf, m.len, &o);
  expect_line(&o, "L|1|*|false|false|%s|2", debug ? "true" : "false");
  if (debug) {
    long long ns =
        field_ll(expect_line(&o, "R|1|2|1|*|-|false|true|-|true"), 4);
    cr_assert(ns >= WEFT_MS(3) && ns < WEFT_SEC(2), "run_ns %lld", ns);
    /* main: its current step counts too */
    ns = field_ll(expect_line(&o, "R|1|1|2|*|-|false|false|-|true"), 4);
    cr_assert_gt(ns, 0);
  } else {
    expect_line(&o, "R|1|2|1|-|-|false|true|-|true");
    expect_line(&o, "R|1|1|2|-|-|false|false|-|true");
  }
  pyout_free(&o);
  free(m.buf);
}

Test(dump, run_time_unmeasured, .timeout = 10) {
  need_python();
  unsetenv("WEFT_DEBUG");
  unsetenv("WEFT_TRACE");
  unsetenv("WEFT_PS");
  check_measured(0);
}

Test(dump, run_time_measured, .timeout = 10) {
  need_python();
  unsetenv("WEFT_TRACE");
  unsetenv("WEFT_PS");
  check_measured(1);
}

/* ---- 6. speed ------------------------------------------------------------ */

#define MANY 10000

static int many_main(void *arg) {
  int64_t *took = arg;
  weft_task **t = malloc(MANY * sizeof *t);
  cr_assert_not_null(t);
  for (int i = 0; i < MANY; i++) {
    t[i] = weft_spawn(m_sleep, NULL, NULL);
    cr_assert_not_null(t[i]);
  }
  cr_assert_eq(weft_sleep(WEFT_MS(1)), 0); /* every one parks */
  FILE *f = fopen("/dev/null", "we");
  cr_assert_not_null(f);
  for (int form = 0; form < 3; form++) {
    int64_t t0 = weft_now();
    cr_assert_eq(weft_dump_tasks(f, form), 0);
    took[form] = weft_now() - t0;
  }
  fclose(f);
  for (int i = 0; i < MANY; i++) weft_cancel(t[i]);
  for (int i = 0; i < MANY; i++) weft_join(t[i]);
  free(t);
  return 0;
}

Test(dump, ten_thousand_tasks, .timeout = 60) {
#if defined(__SANITIZE_THREAD__)
  cr_skip_test("ThreadSanitizer counts each task's fiber as a thread (8,128 at most)");
#endif
  if (under_valgrind()) cr_skip_test("too slow under valgrind");
  int64_t took[3];
  cr_assert_eq(weft_run(many_main, took), 0);
  cr_log_info("10000 tasks: tree %.1f ms, table %.1f ms, JSON %.1f ms",
              MS_OF(took[0]), MS_OF(took[1]), MS_OF(took[2]));
  for (int i = 0; i < 3; i++)
    cr_assert_lt(took[i], WEFT_SEC(1), "form %d: %.0f ms", i, MS_OF(took[i]));
}

/* Two loops that dump every loop at the same moment each wait for the
 * other, which cannot answer while it waits too: after the timeout each
 * lists the other as busy (or complete, if it answered first), nothing
 * hangs, and the requests answered late are freed (ASan). */
Test(dump, mutual_dumps, .timeout = 30) {
  need_python();
  multi m = {.mutual = true};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, m_runner, &m), 0);
  void *rc;
  cr_assert_eq(pthread_join(th, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(m.both[i].rc, 0);
    cr_assert_lt(m.took[i], WEFT_MS(2500), "%.0f ms", MS_OF(m.took[i]));
    pyout o;
    py_parse(m.both[i].buf, m.both[i].len, &o);
    expect_line(&o, "P|%d|2", (int)getpid());
    /* Its own loop in full: main runs, the sleeper waits. */
    long long n = field_ll(expect_line(&o, "L|*|%d|false|false|false|2",
                                       m.tid[i]), 1);
    expect_line(&o, "T|%lld|1|main|running|-|-|-|-|-|-|false", n);
    expect_line(&o, "T|%lld|2|l%d-sleeper|waiting|-|sleep|-|-|-|-|false", n,
                i);
    /* The other: busy, or answered (by then perhaps ending, with no
     * task left: it answers requests still in its inbox as it ends). */
    const char *other = find_line(&o, "L|*|*|true|false|-|-");
    if (!other)
      other = expect_line(&o, "L|*|%d|false|false|false|*", m.tid[1 - i]);
    cr_assert_eq(field_ll(other, 2), m.tid[1 - i]);
    cr_log_info("loop %d: %.0f ms, the other %s", i, MS_OF(m.took[i]),
                strstr(other, "|true|") ? "busy" : "answered");
    pyout_free(&o);
    free(m.both[i].buf);
  }
}
