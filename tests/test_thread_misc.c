/*
 * test_thread_misc.c -- file helpers on the pool, and loop-only functions
 * called from the wrong thread.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Files                                                             */
/* ---------------------------------------------------------------- */

typedef struct {
  char dir[64];
  char path[128];
} tmpdir;

static void tmpdir_make(tmpdir *t) {
  strcpy(t->dir, "/tmp/weft-test-XXXXXX");
  cr_assert_not_null(mkdtemp(t->dir));
  snprintf(t->path, sizeof t->path, "%s/file", t->dir);
}

/* Entries in the directory other than "file" (temporary files left). */
static int stray_files(const tmpdir *t) {
  DIR *d = opendir(t->dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
        strcmp(e->d_name, "file"))
      n++;
  if (d) closedir(d);
  return n;
}

static void tmpdir_remove(tmpdir *t) {
  DIR *d = opendir(t->dir);
  struct dirent *e;
  char p[400];
  while (d && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(t->dir);
}

typedef struct {
  tmpdir t;
  char *big;
  size_t big_len;
  int rc[16];
  char *data;
  size_t len;
  mode_t mode_kept, mode_new;
} file_state;

static int files_main(void *arg) {
  file_state *s = arg;
  char *d = NULL;
  size_t n = 99;
  /* Write, read back. */
  s->rc[0] = weft_file_write_atomic(s->t.path, "hello\n", 6);
  s->rc[1] = weft_file_read(s->t.path, &d, &n);
  cr_assert_eq(n, 6);
  cr_assert_str_eq(d, "hello\n");
  free(d);
  struct stat st;
  stat(s->t.path, &st);
  s->mode_new = st.st_mode & 0777;
  /* Replace: the permission bits stay. */
  chmod(s->t.path, 0600);
  s->rc[2] = weft_file_write_atomic(s->t.path, s->big, s->big_len);
  stat(s->t.path, &st);
  s->mode_kept = st.st_mode & 0777;
  s->rc[3] = weft_file_read(s->t.path, &s->data, &s->len);
  /* Empty. */
  s->rc[4] = weft_file_write_atomic(s->t.path, NULL, 0);
  d = NULL;
  s->rc[5] = weft_file_read(s->t.path, &d, &n);
  cr_assert_not_null(d);
  cr_assert_eq(n, 0);
  cr_assert_eq(d[0], '\0');
  free(d);
  /* Errors. */
  char missing[160];
  snprintf(missing, sizeof missing, "%s/nope", s->t.dir);
  s->rc[6] = weft_file_read(missing, &d, &n);
  s->rc[7] = weft_file_read(s->t.dir, &d, &n);
  snprintf(missing, sizeof missing, "%s/no/such/file", s->t.dir);
  s->rc[8] = weft_file_write_atomic(missing, "x", 1);
  s->rc[9] = weft_file_read(NULL, &d, &n);
  s->rc[10] = weft_file_read(s->t.path, NULL, &n);
  s->rc[11] = weft_file_write_atomic(NULL, "x", 1);
  s->rc[12] = weft_file_write_atomic(s->t.path, NULL, 1);
  /* A file whose size stat does not know. */
  d = NULL;
  s->rc[13] = weft_file_read("/proc/self/status", &d, &n);
  if (d) {
    s->rc[14] = strstr(d, "Name:") ? 0 : -EPROTO;
    free(d);
  }
  return 0;
}

Test(thread_misc, file_read_and_atomic_write, .timeout = 10) {
  file_state s = {0};
  tmpdir_make(&s.t);
  s.big_len = 3 * 1024 * 1024 + 17;
  s.big = malloc(s.big_len);
  for (size_t i = 0; i < s.big_len; i++) s.big[i] = (char)(i * 7 + (i >> 9));
  mode_t um = umask(022);
  cr_assert_eq(weft_run(files_main, &s), 0);
  umask(um);
  for (int i = 0; i <= 5; i++) cr_assert_eq(s.rc[i], 0, "call %d: %d", i, s.rc[i]);
  cr_assert_eq(s.mode_new, 0644);
  cr_assert_eq(s.mode_kept, 0600);
  cr_assert_eq(s.len, s.big_len);
  cr_assert_eq(memcmp(s.data, s.big, s.big_len), 0);
  cr_assert_eq(s.data[s.len], '\0');
  cr_assert_eq(s.rc[6], -ENOENT);
  cr_assert_eq(s.rc[7], -EISDIR);
  cr_assert_eq(s.rc[8], -ENOENT);
  for (int i = 9; i <= 12; i++) cr_assert_eq(s.rc[i], -EINVAL, "call %d", i);
  cr_assert_eq(s.rc[13], 0);
  cr_assert_eq(s.rc[14], 0);
  cr_assert_eq(stray_files(&s.t), 0, "temporary files left");
  free(s.data);
  free(s.big);
  tmpdir_remove(&s.t);
}

typedef struct {
  tmpdir t;
  char *big;
  size_t big_len;
  int rc;
} cancel_write_state;

static int writer(void *arg) {
  cancel_write_state *s = arg;
  s->rc = weft_file_write_atomic(s->t.path, s->big, s->big_len);
  free(s->big); /* at once, even on -ECANCELED: the data was copied */
  s->big = NULL;
  return 0;
}

static int cancel_write_main(void *arg) {
  cancel_write_state *s = arg;
  cr_assert_eq(weft_file_write_atomic(s->t.path, "old", 3), 0);
  weft_task *t = weft_spawn(writer, s, NULL);
  weft_yield(); /* the writer is waiting for the pool now */
  weft_cancel(t);
  weft_join(t);
  /* The thread finishes in the background: wait for its temp file to go. */
  int64_t end = weft_now() + WEFT_SEC(8);
  while (stray_files(&s->t) && weft_now() < end) weft_sleep(WEFT_MS(2));
  return 0;
}

/* A cancelled atomic write returns -ECANCELED at once; the file is then
 * either untouched or fully replaced, and no temporary file remains. */
Test(thread_misc, cancelled_atomic_write, .timeout = 10) {
  cancel_write_state s = {0};
  tmpdir_make(&s.t);
  s.big_len = 8 * 1024 * 1024;
  s.big = malloc(s.big_len);
  memset(s.big, 'n', s.big_len);
  cr_assert_eq(weft_run(cancel_write_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(stray_files(&s.t), 0);
  struct stat st;
  cr_assert_eq(stat(s.t.path, &st), 0);
  cr_assert(st.st_size == 3 || st.st_size == 8 * 1024 * 1024,
            "a mix: %lld bytes", (long long)st.st_size);
  tmpdir_remove(&s.t);
}

/* The mode a file had when weft_file_write_atomic fchmod'ed it: the mode
 * its temporary file was created with. This binary's fchmod takes the
 * place of libc's (it is called from the pool thread) and records it. */
static atomic_int fchmod_calls, fchmod_created_mode;

int fchmod(int fd, mode_t mode) {
  struct stat st;
  if (fstat(fd, &st) == 0) {
    atomic_store(&fchmod_created_mode, (int)(st.st_mode & 0777));
    atomic_fetch_add(&fchmod_calls, 1);
  }
  return (int)syscall(SYS_fchmod, fd, mode);
}

static int private_main(void *arg) {
  tmpdir *t = arg;
  int rc = weft_file_write_atomic(t->path, "secret", 6);
  if (rc) return rc;
  chmod(t->path, 0600);
  return weft_file_write_atomic(t->path, "new secret", 10);
}

/* Replacing a private file never exposes the new contents: the temporary
 * file is not created readable (or writable) by others and then narrowed
 * (whoever opened it meanwhile would keep access to the data). */
Test(thread_misc, atomic_write_of_a_private_file, .timeout = 10) {
  tmpdir t;
  tmpdir_make(&t);
  mode_t um = umask(0);
  int rc = weft_run(private_main, &t);
  umask(um);
  cr_assert_eq(rc, 0);
  struct stat st;
  cr_assert_eq(stat(t.path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_gt(atomic_load(&fchmod_calls), 0);
  cr_assert_eq(atomic_load(&fchmod_created_mode) & 0077, 0,
               "temporary file created %o", atomic_load(&fchmod_created_mode));
  tmpdir_remove(&t);
}

Test(thread_misc, files_outside_a_task, .timeout = 10) {
  char *d = NULL;
  size_t n = 0;
  cr_assert_eq(weft_file_read("/etc/hostname", &d, &n), WEFT_ENOTASK);
  cr_assert_null(d);
  cr_assert_eq(weft_file_write_atomic("/tmp/weft-never", "x", 1), WEFT_ENOTASK);
  cr_assert_neq(access("/tmp/weft-never", F_OK), 0);
}

/* ---------------------------------------------------------------- */
/* Loop-only functions from the wrong thread                         */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_task *t;
  weft_group *g;
  weft_scope sc;
  /* From a plain thread: */
  int join, join_until, cancel, detach, on_done, scope_cancel, resched;
  int gspawn_errno, gcancel, gfail, gclose, gstart;
  /* From another loop's task: */
  int l_join, l_cancel, l_scope, l_gclose, l_gspawn_errno;
} wrong_state;

static void done_cb(weft_task *t, void *arg) {
  (void)t, (void)arg;
}

static int nothing(void *arg) {
  (void)arg;
  return 0;
}

static void *from_plain_thread(void *arg) {
  wrong_state *s = arg;
  s->join = weft_join(s->t);
  s->join_until = weft_join_until(s->t, WEFT_FOREVER);
  s->cancel = weft_cancel(s->t);
  s->detach = weft_detach(s->t);
  s->on_done = weft_task_on_done(s->t, done_cb, NULL);
  s->scope_cancel = weft_scope_cancel(&s->sc);
  s->resched = weft_scope_reschedule(&s->sc, WEFT_FOREVER);
  errno = 0;
  if (!weft_group_spawn(s->g, nothing, NULL, NULL)) s->gspawn_errno = errno;
  s->gcancel = weft_group_cancel(s->g);
  s->gfail = weft_group_fail(s->g, -EIO, "no");
  s->gclose = weft_group_close(s->g, NULL);
  s->gstart = weft_group_start(s->g, nothing, NULL, NULL, NULL);
  return NULL;
}

static int other_loop_main(void *arg) {
  wrong_state *s = arg;
  s->l_join = weft_join(s->t);
  s->l_cancel = weft_cancel(s->t);
  s->l_scope = weft_scope_cancel(&s->sc);
  s->l_gclose = weft_group_close(s->g, NULL);
  errno = 0;
  if (!weft_group_spawn(s->g, nothing, NULL, NULL)) s->l_gspawn_errno = errno;
  return 0;
}

static void *from_other_loop(void *arg) {
  weft_run(other_loop_main, arg);
  return NULL;
}

static int long_nap(void *arg) {
  (void)arg;
  weft_sleep(WEFT_SEC(10));
  return 0;
}

static void *join_thread(void *arg) {
  pthread_join(*(pthread_t *)arg, NULL);
  return NULL;
}

static int wrong_main(void *arg) {
  wrong_state *s = arg;
  s->t = weft_spawn(long_nap, NULL, NULL);
  s->g = weft_group_open();
  weft_group_spawn(s->g, long_nap, NULL, NULL);
  weft_scope_open(&s->sc, WEFT_FOREVER);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, from_plain_thread, s), 0);
  cr_assert_eq(weft_to_thread(join_thread, &th, NULL), 0);
  cr_assert_eq(pthread_create(&th, NULL, from_other_loop, s), 0);
  cr_assert_eq(weft_to_thread(join_thread, &th, NULL), 0);
  /* Nothing was touched: the scope is not cancelled, the group is open. */
  cr_assert_not(weft_scope_cancelled(&s->sc));
  weft_scope_close(&s->sc);
  weft_group_cancel(s->g);
  cr_assert_eq(weft_group_close(s->g, NULL), 0);
  weft_cancel(s->t);
  return weft_join(s->t);
}

/* Called from a plain thread or another loop's task, the loop-only
 * functions return WEFT_ELOOP (or WEFT_ENOTASK when they need a task)
 * and change nothing. */
Test(thread_misc, wrong_thread_errors, .timeout = 10) {
  wrong_state s = {0};
  cr_assert_eq(weft_run(wrong_main, &s), 0);
  cr_assert_eq(s.join, WEFT_ELOOP);
  cr_assert_eq(s.join_until, WEFT_ELOOP); /* as weft_join */
  cr_assert_eq(s.cancel, WEFT_ELOOP);
  cr_assert_eq(s.detach, WEFT_ELOOP);
  cr_assert_eq(s.on_done, WEFT_ELOOP);
  cr_assert_eq(s.scope_cancel, WEFT_ELOOP);
  cr_assert_eq(s.resched, WEFT_ELOOP);
  cr_assert_eq(s.gspawn_errno, EXDEV);
  cr_assert_eq(s.gcancel, WEFT_ELOOP);
  cr_assert_eq(s.gfail, WEFT_ELOOP);
  cr_assert_eq(s.gclose, WEFT_ELOOP);
  cr_assert_eq(s.gstart, WEFT_ENOTASK);
  cr_assert_eq(s.l_join, WEFT_ELOOP);
  cr_assert_eq(s.l_cancel, WEFT_ELOOP);
  cr_assert_eq(s.l_scope, WEFT_ELOOP);
  cr_assert_eq(s.l_gclose, WEFT_ELOOP);
  cr_assert_eq(s.l_gspawn_errno, EXDEV);
}

typedef struct {
  weft_task *t;
  int rc;
  int pipe[2];
} debug_state;

static void *cancel_from_thread(void *arg) {
  debug_state *d = arg;
  pthread_setname_np(pthread_self(), "intruder");
  int saved = dup(2);
  dup2(d->pipe[1], 2);
  d->rc = weft_cancel(d->t);
  dup2(saved, 2);
  close(saved);
  return NULL;
}

static int debug_main(void *arg) {
  debug_state *d = arg;
  d->t = weft_spawn(long_nap, NULL, NULL);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, cancel_from_thread, d), 0);
  cr_assert_eq(weft_to_thread(join_thread, &th, NULL), 0);
  weft_cancel(d->t);
  return weft_join(d->t);
}

/* In debug mode the misuse is also reported on stderr, with the
 * function's name and the thread. */
Test(thread_misc, wrong_thread_debug_report, .timeout = 10) {
  setenv("WEFT_DEBUG", "1", 1);
  debug_state d = {0};
  cr_assert_eq(pipe(d.pipe), 0);
  cr_assert_eq(weft_run(debug_main, &d), 0);
  cr_assert_eq(d.rc, WEFT_ELOOP);
  char buf[1024];
  drain_fd(d.pipe[0], buf, sizeof buf);
  cr_assert_not_null(strstr(buf, "weft_cancel"), "report: %s", buf);
  cr_assert_not_null(strstr(buf, "intruder"), "report: %s", buf);
  close(d.pipe[0]);
  close(d.pipe[1]);
  unsetenv("WEFT_DEBUG");
}
