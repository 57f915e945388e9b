/*
 * Trace files (WEFT_TRACE, weft_config.trace_path; src/core/trace.c): each
 * test runs weft with a trace file in a temporary directory, then has
 * python3's json module read the file (a real, strict JSON parser) and
 * print facts about it, one a line, which the test compares exactly:
 * spawns with their parents, run steps, waits with what they waited on,
 * exits with results, the counts in "otherData", the size limit, several
 * loops in one file. Every test also checks that a run leaves no fd and
 * no thread behind (the writer thread lives only while a loop traces).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

/* ---- the checker ------------------------------------------------------- */

/* Reads the trace file argv[1] and prints what the tests compare. Tasks
 * are keyed "L<i>/<tid>", with i the loop's rank among the file's loops
 * (so the facts do not depend on the process's loop numbers). Checks of
 * order and shape print a fixed word ("ok") or what went wrong. */
static const char checker[] =
    "import json, re, sys\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "d = json.loads(raw.decode('utf-8'))\n"
    "ev = d['traceEvents']\n"
    "od = d['otherData']\n"
    "print('events', 'match' if od['events'] == len(ev) else\n"
    "      '%d != %d' % (od['events'], len(ev)))\n"
    "print('dropped size', 'yes' if od['dropped_for_size'] > 0 else 'no',\n"
    "      'slow', od['dropped_slow_writer'])\n"
    "procs = [e for e in ev\n"
    "         if e['ph'] == 'M' and e['name'] == 'process_name']\n"
    "pids = sorted(e['pid'] for e in procs)\n"
    "rank = {p: i for i, p in enumerate(pids)}\n"
    "print('processes', len(procs), 'distinct', len(set(pids)))\n"
    "for e in procs:\n"
    "  m = re.fullmatch(r'weft loop (\\d+) \\(thread (\\d+)\\)',\n"
    "                   e['args']['name'])\n"
    "  if not m or int(m.group(1)) != e['pid'] or e['tid'] != 0:\n"
    "    print('bad process_name', e)\n"
    "def key(e):\n"
    "  return 'L%d/%d' % (rank.get(e['pid'], -1), e['tid'])\n"
    "names, spawns, runs, waits, exits = {}, {}, {}, {}, {}\n"
    "bad = []\n"
    "for e in ev:\n"
    "  k = key(e)\n"
    "  if e['ph'] == 'M' and e['name'] == 'thread_name':\n"
    "    if k in names: bad.append('two names ' + k)\n"
    "    names[k] = e['args']['name']\n"
    "  elif e['ph'] == 'i' and e['name'] == 'spawn':\n"
    "    spawns.setdefault(k, []).append(e)\n"
    "  elif e['ph'] == 'i' and e['name'] == 'exit':\n"
    "    exits.setdefault(k, []).append(e)\n"
    "  elif e['ph'] == 'X' and e['name'] == 'run':\n"
    "    runs.setdefault(k, []).append(e)\n"
    "  elif e['ph'] == 'X' and e['name'].startswith('wait: '):\n"
    "    waits.setdefault(k, []).append(e)\n"
    "  elif e['ph'] != 'M':\n"
    "    bad.append('unknown event %r' % e)\n"
    "  if e['ph'] in 'iX' and e['pid'] not in rank:\n"
    "    bad.append('event of no process %r' % e)\n"
    "  if e['ph'] == 'i' and e.get('s') != 't': bad.append('scope %r' % e)\n"
    "  if e['ph'] == 'X' and not (e['dur'] >= 0 and e['ts'] >= 0):\n"
    "    bad.append('negative %r' % e)\n"
    "EPS = 0.01\n"
    "# A task's steps follow one another; a loop runs one step at a time.\n"
    "for k, rs in runs.items():\n"
    "  for a, b in zip(rs, rs[1:]):\n"
    "    if b['ts'] < a['ts'] + a['dur'] - EPS:\n"
    "      bad.append('runs out of order %s %r %r' % (k, a, b))\n"
    "for p in pids:\n"
    "  rs = sorted((e for e in ev if e['ph'] == 'X' and e['name'] == 'run'\n"
    "               and e['pid'] == p), key=lambda e: e['ts'])\n"
    "  for a, b in zip(rs, rs[1:]):\n"
    "    if b['ts'] < a['ts'] + a['dur'] - EPS:\n"
    "      bad.append('runs overlap %r %r' % (a, b))\n"
    "# A wait spans from the end of a step to the start of the next one.\n"
    "for k, ws in waits.items():\n"
    "  ends = [r['ts'] + r['dur'] for r in runs.get(k, [])]\n"
    "  starts = [r['ts'] for r in runs.get(k, [])]\n"
    "  for w in ws:\n"
    "    if 'object' not in w['args']: bad.append('no object %r' % w)\n"
    "    # (In a file cut at its size limit, the next step may be cut off.)\n"
    "    cut = od['dropped_for_size'] > 0 and \\\n"
    "          not any(t > w['ts'] for t in starts)\n"
    "    if not any(abs(w['ts'] - t) <= EPS for t in ends) or (not cut and\n"
    "       not any(abs(w['ts'] + w['dur'] - t) <= EPS for t in starts)):\n"
    "      bad.append('wait not between steps %s %r' % (k, w))\n"
    "for k in sorted(set(names) | set(spawns) | set(exits) | set(runs),\n"
    "                key=lambda k: (int(k[1:k.index('/')]),\n"
    "                               int(k[k.index('/') + 1:]))):\n"
    "  sp = spawns.get(k, [])\n"
    "  ex = exits.get(k, [])\n"
    "  rs = runs.get(k, [])\n"
    "  if len(sp) == 1 and rs and rs[0]['ts'] < sp[0]['ts'] - EPS:\n"
    "    bad.append('ran before its spawn ' + k)\n"
    "  if len(ex) == 1 and rs and rs[-1]['ts'] + rs[-1]['dur'] > \\\n"
    "     ex[0]['ts'] + EPS:\n"
    "    bad.append('ran after its exit ' + k)\n"
    "  if (rs or ex or k in waits) and len(sp) != 1:\n"
    "    bad.append('events of a task not spawned once ' + k)\n"
    "  print('task', k, names.get(k, '-'),\n"
    "        'parent', ','.join(str(e['args']['parent']) for e in sp) or '-',\n"
    "        'run', 'yes' if rs else 'no',\n"
    "        'exit', ','.join(str(e['args']['result']) for e in ex) or '-')\n"
    "# The waits of tasks other than a loop's main, in order.\n"
    "for k in sorted(waits):\n"
    "  if names.get(k) == 'main': continue\n"
    "  for w in waits[k]:\n"
    "    a = w['args']\n"
    "    s = 'wait %s %s' % (names.get(k, k), w['name'][6:])\n"
    "    if 'name' in a: s += ' name=' + a['name']\n"
    "    if 'fd' in a: s += ' fd=%d events=%s' % (a['fd'], a['events'])\n"
    "    if w['name'] == 'wait: sleep':\n"
    "      s += ' long' if w['dur'] >= 19000 else ' short %.3f' % w['dur']\n"
    "    print(s)\n"
    "print('checks', '; '.join(bad[:5]) if bad else 'ok')\n";

/* A temporary directory with the checker in it. */
typedef struct {
  char dir[64];
  char trace[96];
  char script[96];
} tmp;

/* The test's directory, for tmp_fini when an assertion stopped the test
 * before its own tmp_remove. */
static tmp *cur_tmp;

static void tmp_make(tmp *t) {
  snprintf(t->dir, sizeof t->dir, "/tmp/weft-trace-XXXXXX");
  cr_assert_not_null(mkdtemp(t->dir));
  cur_tmp = t;
  snprintf(t->trace, sizeof t->trace, "%s/trace.json", t->dir);
  snprintf(t->script, sizeof t->script, "%s/check.py", t->dir);
  FILE *f = fopen(t->script, "w");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(checker, 1, sizeof checker - 1, f), sizeof checker - 1);
  cr_assert_eq(fclose(f), 0);
}

/* Removes the directory and what the test left in it: 0, or -1 if some
 * of it could not be removed. */
static int tmp_clean(tmp *t) {
  DIR *d = opendir(t->dir);
  if (!d) return -1;
  int rc = 0;
  struct dirent *e;
  char p[320];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
    if (unlink(p) != 0) rc = -1;
  }
  closedir(d);
  return rmdir(t->dir) == 0 ? rc : -1;
}

static void tmp_remove(tmp *t) {
  cur_tmp = NULL;
  cr_assert_eq(tmp_clean(t), 0, "%s", t->dir);
}

/* Every test's .fini: the directory of a test that failed half-way. */
static void tmp_fini(void) {
  if (cur_tmp) tmp_clean(cur_tmp);
  cur_tmp = NULL;
}

/* Assertions on what the checker printed. A failed cr_assert ends the
 * test at once, and neither Criterion nor the shim runs .fini then: these
 * remove the directory first. */
#define SAME(out, want)                                                   \
  do {                                                                    \
    if (strcmp((out), (want)) != 0) tmp_fini();                           \
    cr_assert_str_eq((out), (want));                                      \
  } while (0)
#define HOLDS(cond, ...)                                                  \
  do {                                                                    \
    bool holds_ = (cond);                                                 \
    if (!holds_) tmp_fini();                                              \
    cr_assert(holds_, __VA_ARGS__);                                       \
  } while (0)

/* The files in the directory other than the checker. */
static int tmp_others(tmp *t) {
  DIR *d = opendir(t->dir);
  cr_assert_not_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.' && strcmp(e->d_name, "check.py") != 0) n++;
  closedir(d);
  return n;
}

/* The checker's output for the trace file, in out. */
static void check(tmp *t, char *out, size_t cap) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "python3 %s %s 2>&1", t->script, t->trace);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int rc = pclose(p);
  HOLDS(rc == 0, "checker failed:\n%s", out);
}

static off_t file_size(const char *path) {
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "%s", path);
  return st.st_size;
}


/* What a run leaves: counted before it, compared after. */
typedef struct {
  int fds, threads;
} baseline;

static void *noop_thread(void *arg) { return arg; }

static baseline base_take(void) {
  /* A thread started and joined first: a sanitizer's own helper thread
   * (TSan's starts with the process's first other thread) is counted. */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, noop_thread, NULL), 0);
  cr_assert_eq(pthread_join(th, NULL), 0);
  baseline b = {count_fds(), count_threads()};
  cr_assert_geq(b.fds, 0);
  cr_assert_geq(b.threads, 1);
  return b;
}

static void base_check(const baseline *b) {
  HOLDS(count_fds() == b->fds, "an fd was left");
  /* qemu-user keeps threads of its own, and lists an exited one a while. */
  if (!under_emulator())
    HOLDS(count_threads() == b->threads, "a thread was left");
}

static weft_config trace_config(const char *path) {
  weft_config c;
  weft_config_init(&c);
  c.debug = 0;
  c.ps_socket = 0;
  c.trace_path = path;
  return c;
}

static void skip_without_python(void) {
  if (!have_prog("python3")) cr_skip_test("no python3");
}

/* ---- the program of the main test ---------------------------------------- */

static struct {
  weft_event *go;
  int pipe[2];
  int threads_in_run; /* threads while the loop runs */
} prog;

static int sleeper(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_MS(20));
}

static int waiter(void *arg) {
  (void)arg;
  return weft_event_wait(prog.go);
}

static int failer(void *arg) {
  (void)arg;
  return -EIO;
}

/* Cancelled before its first step: weft still runs it (as trio does; not
 * as asyncio, which never starts a task cancelled that early), and its
 * first checkpoint returns -ECANCELED at once, without a wait. */
static int never(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_SEC(10));
}

static int piper(void *arg) {
  (void)arg;
  int rc = weft_wait_fd(prog.pipe[0], WEFT_READABLE);
  if (rc < 0) return rc;
  char c;
  return read(prog.pipe[0], &c, 1) == 1 && c == 'x' ? 0 : -EPROTO;
}

static weft_task *named(weft_fn fn, const char *name) {
  weft_spawn_opts o = {.name = name};
  weft_task *t = weft_spawn(fn, NULL, &o);
  cr_assert_not_null(t);
  return t;
}

static int prog_main(void *arg) {
  (void)arg;
  prog.threads_in_run = count_threads();
  prog.go = weft_event_new();
  cr_assert_not_null(prog.go);
  cr_assert_eq(weft_set_name(prog.go, "go"), 0);
  weft_task *t[5];
  t[0] = named(sleeper, "sleeper");
  t[1] = named(waiter, "waiter");
  t[2] = named(failer, "failer");
  t[3] = named(never, "never");
  cr_assert_eq(weft_cancel(t[3]), 0);
  t[4] = named(piper, "piper");
  cr_assert_eq(weft_sleep(WEFT_MS(30)), 0);
  cr_assert_eq(weft_event_set(prog.go), 0);
  cr_assert_eq(write(prog.pipe[1], "x", 1), 1);
  static const int want[5] = {0, 0, -EIO, -ECANCELED, 0};
  for (int i = 0; i < 5; i++)
    {
      int rc = weft_join(t[i]);
      cr_assert_eq(rc, want[i], "task %d: %d", i, rc);
    }
  weft_event_free(prog.go);
  return 0;
}

/* The facts of prog_main's trace, for the pipe's read end fd. */
static void prog_expect(char *buf, size_t cap, int fd) {
  snprintf(buf, cap,
           "events match\n"
           "dropped size no slow 0\n"
           "processes 1 distinct 1\n"
           "task L0/1 main parent 0 run yes exit 0\n"
           "task L0/2 sleeper parent 1 run yes exit 0\n"
           "task L0/3 waiter parent 1 run yes exit 0\n"
           "task L0/4 failer parent 1 run yes exit -5\n"
           "task L0/5 never parent 1 run yes exit -125\n"
           "task L0/6 piper parent 1 run yes exit 0\n"
           "wait sleeper sleep long\n"
           "wait waiter event name=go\n"
           "wait piper fd fd=%d events=r\n"
           "checks ok\n",
           fd);
}

/* Runs prog_main with cfg; checks the run and what it left. */
static void prog_run(const weft_config *cfg) {
  cr_assert_eq(pipe2(prog.pipe, O_CLOEXEC), 0);
  cr_assert_eq(weft_run_with(cfg, prog_main, NULL), 0);
  close(prog.pipe[0]);
  close(prog.pipe[1]);
}

/* Every kind of event, with its details, in one file. */
Test(trace, events_of_a_program, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  prog_run(&c);
  base_check(&b);
  /* The writer thread ran beside the loop, and only then. */
  if (!under_emulator()) /* qemu-user keeps threads of its own */
    cr_assert_eq(prog.threads_in_run, b.threads + 1);
  char out[4096], want[1024];
  check(&t, out, sizeof out);
  prog_expect(want, sizeof want, prog.pipe[0]);
  SAME(out, want);
  tmp_remove(&t);
}

/* WEFT_TRACE names the file when the config does not. */
Test(trace, environment_variable, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(NULL);
  cr_assert_eq(setenv("WEFT_TRACE", t.trace, 1), 0);
  prog_run(&c);
  cr_assert_eq(unsetenv("WEFT_TRACE"), 0);
  base_check(&b);
  char out[4096], want[1024];
  check(&t, out, sizeof out);
  prog_expect(want, sizeof want, prog.pipe[0]);
  SAME(out, want);
  tmp_remove(&t);
}

/* No trace path: no file, no writer thread. */
Test(trace, off_without_path, .timeout = 30, .fini = tmp_fini) {
  tmp t;
  tmp_make(&t);
  cr_assert_eq(unsetenv("WEFT_TRACE"), 0);
  baseline b = base_take();
  weft_config c = trace_config(NULL);
  prog_run(&c);
  base_check(&b);
  if (!under_emulator())
    cr_assert_eq(prog.threads_in_run, b.threads);
  cr_assert_eq(tmp_others(&t), 0);
  tmp_remove(&t);
}

/* A second run in the same process starts the file over. */
static int second_kid(void *arg) {
  (void)arg;
  return weft_yield();
}

static int second_main(void *arg) {
  (void)arg;
  return weft_join(named(second_kid, "second"));
}

Test(trace, second_run_truncates, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  prog_run(&c);
  off_t first = file_size(t.trace);
  cr_assert_eq(weft_run_with(&c, second_main, NULL), 0);
  base_check(&b);
  HOLDS(file_size(t.trace) < first, "not truncated");
  char out[4096];
  check(&t, out, sizeof out);
  SAME(out,
                   "events match\n"
                   "dropped size no slow 0\n"
                   "processes 1 distinct 1\n"
                   "task L0/1 main parent 0 run yes exit 0\n"
                   "task L0/2 second parent 1 run yes exit 0\n"
                   "checks ok\n");
  tmp_remove(&t);
}

/* ---- the size limit ------------------------------------------------------ */

static int nothing(void *arg) {
  (void)arg;
  return 0;
}

/* arg (or 2000) tasks, each spawned, run and joined: 5 events each. */
static int many_main(void *arg) {
  int n = arg ? (int)(intptr_t)arg : 2000;
  for (int i = 0; i < n; i++) {
    weft_task *t = weft_spawn(nothing, NULL, NULL);
    cr_assert_not_null(t);
    cr_assert_eq(weft_join(t), 0);
  }
  return 0;
}

/* The checker's first lines, for a file cut at the limit. */
static void check_limited(tmp *t) {
  char out[8192];
  check(t, out, sizeof out);
  static const char head[] = "events match\n"
                             "dropped size yes slow 0\n"
                             "processes 1 distinct 1\n"
                             "task L0/1 main parent 0 run yes";
  HOLDS(strncmp(out, head, sizeof head - 1) == 0, "%s", out);
  HOLDS(strstr(out, "\nchecks ok\n"), "%s",
                     strstr(out, "\nchecks ") ? strstr(out, "\nchecks ") : out);
  off_t size = file_size(t->trace);
  HOLDS(size <= 4096 + 256, "%lld bytes", (long long)size);
  HOLDS(size >= 4096 - 512, "the limit is used, not undershot: %lld",
        (long long)size);
}

/* Tasks with long names: events of many sizes, so that events smaller
 * than the one that did not fit come after it. */
static int long_names_main(void *arg) {
  (void)arg;
  char name[64];
  for (int i = 0; i < 60; i++) {
    snprintf(name, sizeof name, "a task with a long name, number %05d", i);
    cr_assert_eq(weft_join(named(nothing, name)), 0);
  }
  return 0;
}

/* Says whether each cut file's events (kind, name, task) are the first
 * ones of the full file's, and that it is no larger than its limit. */
static const char prefix_checker[] =
    "import json, os, sys\n"
    "def shape(p):\n"
    "  return [(e['ph'], e['name'], e['tid'])\n"
    "          for e in json.load(open(p))['traceEvents']]\n"
    "full = shape(sys.argv[1])\n"
    "good = 0\n"
    "for a in sys.argv[2:]:\n"
    "  p, limit = a.split('=')\n"
    "  cut = shape(p)\n"
    "  if cut != full[:len(cut)] or len(cut) >= len(full):\n"
    "    print('not a beginning', p, cut[-3:])\n"
    "  elif os.path.getsize(p) > int(limit):\n"
    "    print('too large', p)\n"
    "  else:\n"
    "    good += 1\n"
    "print('beginnings', good, 'of', len(sys.argv) - 2)\n";

/* The file is the beginning of the run: once an event did not fit, no
 * later one is written, however small (a task's steps without its
 * spawn, or a wait without its step, would be a picture of nothing).
 * The same program, traced whole and then cut at 40 limits from 4096
 * bytes on, 3 apart, so that the cut falls at events of every size. */
Test(trace, size_limit_keeps_a_beginning, .timeout = 60, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  cr_assert_eq(weft_run_with(&c, long_names_main, NULL), 0);
  enum { CUTS = 40 };
  char path[CUTS][96];
  char cmd[CUTS * 160 + 256];
  int k = snprintf(cmd, sizeof cmd, "python3 %s/prefix.py %s", t.dir, t.trace);
  for (int i = 0; i < CUTS; i++) {
    snprintf(path[i], sizeof path[i], "%s/cut-%02d.json", t.dir, i);
    c.trace_path = path[i];
    c.trace_max_bytes = 4096 + 3 * (size_t)i;
    cr_assert_eq(weft_run_with(&c, long_names_main, NULL), 0);
    k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %s=%zu", path[i],
                  c.trace_max_bytes);
  }
  base_check(&b);
  char script[128];
  snprintf(script, sizeof script, "%s/prefix.py", t.dir);
  FILE *f = fopen(script, "w");
  cr_assert_not_null(f);
  fputs(prefix_checker, f);
  cr_assert_eq(fclose(f), 0);
  snprintf(cmd + k, sizeof cmd - (size_t)k, " 2>&1");
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  char out[4096];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int rc = pclose(p);
  HOLDS(rc == 0, "%s", out);
  SAME(out, "beginnings 40 of 40\n");
  /* One of them, checked as the others are. */
  snprintf(t.trace, sizeof t.trace, "%s", path[0]);
  check_limited(&t);
  tmp_remove(&t);
}

Test(trace, size_limit_config, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  c.trace_max_bytes = 4096;
  cr_assert_eq(weft_run_with(&c, many_main, (void *)(intptr_t)300), 0);
  base_check(&b);
  check_limited(&t);
  tmp_remove(&t);
}

Test(trace, size_limit_environment, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  cr_assert_eq(setenv("WEFT_TRACE_MAX", "4096", 1), 0);
  cr_assert_eq(weft_run_with(&c, many_main, (void *)(intptr_t)300), 0);
  cr_assert_eq(unsetenv("WEFT_TRACE_MAX"), 0);
  base_check(&b);
  check_limited(&t);
  tmp_remove(&t);
}

/* Without a limit, the same program's events all get there. */
Test(trace, many_events_unlimited, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  weft_config c = trace_config(t.trace);
  cr_assert_eq(weft_run_with(&c, many_main, NULL), 0);
  base_check(&b);
  char out[1 << 17];
  check(&t, out, sizeof out);
  static const char head[] = "events match\n"
                             "dropped size no slow 0\n"
                             "processes 1 distinct 1\n"
                             "task L0/1 main parent 0 run yes exit 0\n";
  HOLDS(strncmp(out, head, sizeof head - 1) == 0, "%.2000s", out);
  /* Task ids are not reused: 2000 children, each "task-N" (10000
   * records: the loop handed the writer three buffers). */
  char line[128];
  for (int id = 2; id <= 2001; id++) {
    snprintf(line, sizeof line,
             "\ntask L0/%d task-%d parent 1 run yes exit 0\n", id, id);
    HOLDS(strstr(out, line), "%s", line);
  }
  HOLDS(strstr(out, "\nchecks ok\n"), "%s",
                     strstr(out, "\nchecks ") ? strstr(out, "\nchecks ") : out);
  tmp_remove(&t);
}

/* ---- two loops at once --------------------------------------------------- */

static int loop_main(void *arg) {
  const char *prefix = arg;
  weft_task *t[3];
  char name[16];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "%s%d", prefix, i);
    t[i] = named(i == 1 ? sleeper : second_kid, name);
  }
  int rc = 0;
  for (int i = 0; i < 3; i++) rc |= weft_join(t[i]);
  return rc;
}

Test(trace, two_loops_one_file, .timeout = 30, .fini = tmp_fini) {
  skip_without_python();
  tmp t;
  tmp_make(&t);
  baseline b = base_take();
  cr_assert_eq(setenv("WEFT_TRACE", t.trace, 1), 0);
  void *args[2] = {"a", "b"};
  int results[2] = {-1, -1};
  cr_assert_eq(weft_run_threads(2, loop_main, args, results), 0);
  cr_assert_eq(unsetenv("WEFT_TRACE"), 0);
  cr_assert_eq(results[0], 0);
  cr_assert_eq(results[1], 0);
  base_check(&b);
  char out[4096];
  check(&t, out, sizeof out);
  /* Which loop is L0 depends on which thread got loop number 1. */
  static const char *const want[2] = {
      "task L0/1 main parent 0 run yes exit 0\n"
      "task L0/2 a0 parent 1 run yes exit 0\n"
      "task L0/3 a1 parent 1 run yes exit 0\n"
      "task L0/4 a2 parent 1 run yes exit 0\n"
      "task L1/1 main parent 0 run yes exit 0\n"
      "task L1/2 b0 parent 1 run yes exit 0\n"
      "task L1/3 b1 parent 1 run yes exit 0\n"
      "task L1/4 b2 parent 1 run yes exit 0\n"
      "wait a1 sleep long\n"
      "wait b1 sleep long\n",
      "task L0/1 main parent 0 run yes exit 0\n"
      "task L0/2 b0 parent 1 run yes exit 0\n"
      "task L0/3 b1 parent 1 run yes exit 0\n"
      "task L0/4 b2 parent 1 run yes exit 0\n"
      "task L1/1 main parent 0 run yes exit 0\n"
      "task L1/2 a0 parent 1 run yes exit 0\n"
      "task L1/3 a1 parent 1 run yes exit 0\n"
      "task L1/4 a2 parent 1 run yes exit 0\n"
      "wait b1 sleep long\n"
      "wait a1 sleep long\n",
  };
  static const char head[] = "events match\n"
                             "dropped size no slow 0\n"
                             "processes 2 distinct 2\n";
  HOLDS(strncmp(out, head, sizeof head - 1) == 0, "%s", out);
  const char *which = strstr(out, "\ntask L0/2 a0 ") ? want[0] : want[1];
  char full[2048], swapped[2048];
  snprintf(full, sizeof full, "%s%schecks ok\n", head, which);
  /* The two loops' waits come in the order their buffers reached the
   * writer: either. */
  const char *w = strstr(which, "wait ");
  snprintf(swapped, sizeof swapped, "%s%.*s%s%.*schecks ok\n", head,
           (int)(w - which), which, strchr(w, '\n') + 1,
           (int)(strchr(w, '\n') + 1 - w), w);
  if (strcmp(out, swapped) != 0) SAME(out, full);
  tmp_remove(&t);
}

/* ---- a file that cannot be made ------------------------------------------ */

static int answer(void *arg) {
  (void)arg;
  return weft_join(named(second_kid, "kid")) ? -1 : 42;
}

Test(trace, cannot_open, .timeout = 30, .fini = tmp_fini) {
  tmp t;
  tmp_make(&t);
  char path[160];
  snprintf(path, sizeof path, "%s/no-such-dir/trace.json", t.dir);
  baseline b = base_take();
  int p[2];
  cr_assert_eq(pipe(p), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    close(p[1]);
    weft_config c = trace_config(path);
    int before = count_threads();
    int rc = weft_run_with(&c, answer, NULL);
    /* The run was untraced: no thread was left either. */
    _exit(count_threads() == before ? rc : 1);
  }
  close(p[1]);
  char out[1024];
  size_t n = 0;
  ssize_t k;
  while (n + 1 < sizeof out &&
         (k = read(p[0], out + n, sizeof out - 1 - n)) > 0)
    n += (size_t)k;
  out[n] = '\0';
  close(p[0]);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status));
  HOLDS(WEXITSTATUS(status) == 42, "%d: %s", WEXITSTATUS(status), out);
  char want[256];
  snprintf(want, sizeof want, "weft: trace: cannot open %s: ", path);
  HOLDS(strncmp(out, want, strlen(want)) == 0, "%s", out);
  HOLDS(strstr(out, "no such file"), "%s", out);
  base_check(&b);
  cr_assert_eq(tmp_others(&t), 0);
  tmp_remove(&t);
}
