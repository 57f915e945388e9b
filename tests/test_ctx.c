/*
 * The lowest layer: context switch and stacks (src/ctx). These run on
 * every backend and architecture (aarch64 under qemu in CI).
 */
#define _GNU_SOURCE
#include <fenv.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "helpers.h"

static weft__ctx main_ctx, co_ctx;
static volatile long co_counter;
static volatile int co_round;

/* A coroutine body: counts, switching back after every step. Locals live
 * across switches, so callee-saved registers must survive them. */
static void co_body(void *arg) {
  long step = (long)(intptr_t)arg;
  unsigned long a = 1, b = 2, c = 3, d = 5, e = 7, f = 11; /* wrap freely */
  for (;;) {
    co_counter += step;
    a += b; b += c; c += d; d += e; e += f; f += a;
    co_round = (int)((a ^ b ^ c ^ d ^ e ^ f) & 0xff);
    weft__ctx_switch(&co_ctx, &main_ctx);
  }
}

/* Switching into a fresh context runs entry(arg); each switch back and
 * forth resumes exactly where it left off, on both sides. */
Test(ctx, ping_pong, .timeout = 10) {
  weft__stacks s;
  cr_assert_eq(weft__stacks_init(&s, 0, 0, true, false), 0);
  weft__stack *st = weft__stack_get(&s, 0);
  cr_assert_not_null(st);
  weft__ctx_init(&co_ctx, st->lo, st->size, co_body, (void *)(intptr_t)3);
  long mine = 0;
  for (int i = 0; i < 100000; i++) {
    weft__ctx_switch(&main_ctx, &co_ctx);
    mine += 3;
    cr_assert_eq(co_counter, mine);
  }
  cr_assert_str_neq(weft__ctx_backend(), "");
  weft__stack_put(&s, st);
  weft__stacks_destroy(&s);
}

static volatile int fp_round_seen;
static void fp_body(void *arg) {
  (void)arg;
  fp_round_seen = fegetround();
  fesetround(FE_UPWARD);
  weft__ctx_switch(&co_ctx, &main_ctx);
  fp_round_seen = fegetround();
  weft__ctx_switch(&co_ctx, &main_ctx);
  for (;;) weft__ctx_switch(&co_ctx, &main_ctx);
}

/* The floating-point control word is part of a context: a rounding mode
 * set in one context does not leak into the other, and comes back. */
Test(ctx, fp_control_is_per_context, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 0, true, false);
  weft__stack *st = weft__stack_get(&s, 0);
  cr_assert_not_null(st);
  weft__ctx_init(&co_ctx, st->lo, st->size, fp_body, NULL);
  fesetround(FE_TOWARDZERO);
  weft__ctx_switch(&main_ctx, &co_ctx);
#if !(defined(WEFT_CTX_UCONTEXT) && WEFT_CTX_UCONTEXT)
  /* A fresh assembly context starts with the default mode. */
  cr_assert_eq(fp_round_seen, FE_TONEAREST);
#endif
  cr_assert_eq(fegetround(), FE_TOWARDZERO);
  weft__ctx_switch(&main_ctx, &co_ctx);
  cr_assert_eq(fp_round_seen, FE_UPWARD);
  cr_assert_eq(fegetround(), FE_TOWARDZERO);
  fesetround(FE_TONEAREST);
  weft__stack_put(&s, st);
  weft__stacks_destroy(&s);
}

/* Freed stacks are reused LIFO; a custom size is honoured and not
 * pooled; the usable range is page-rounded and at least the request. */
Test(stack, pool_reuse_and_sizes, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 40000, 4, true, false);
  cr_assert_eq(s.size % s.page, 0);
  cr_assert_geq(s.size, 40000);
  weft__stack *a = weft__stack_get(&s, 0), *b = weft__stack_get(&s, 0);
  cr_assert_not_null(a);
  cr_assert_not_null(b);
  cr_assert_neq(a, b);
  cr_assert_eq(s.live, 2);
  weft__stack_put(&s, a);
  cr_assert_eq(weft__stack_get(&s, 0), a);
  weft__stack *c = weft__stack_get(&s, 1 << 20);
  cr_assert_not_null(c);
  cr_assert_geq(c->size, (1 << 20) - s.page);
  cr_assert(c->kind & WEFT__STACK_CUSTOM);
  memset(c->lo, 0xab, c->size); /* all of it is writable */
  weft__stack_put(&s, c);
  cr_assert_eq(s.nfree, 0); /* custom stacks are unmapped, not pooled */
  weft__stack_put(&s, a);
  weft__stack_put(&s, b);
  cr_assert_eq(s.live, 0);
  weft__stacks_destroy(&s);
}

/* The pool keeps at most pool_max stacks after a trim. */
Test(stack, trim_bounds_pool, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 3, true, false);
  weft__stack *v[10];
  for (int i = 0; i < 10; i++) cr_assert_not_null(v[i] = weft__stack_get(&s, 0));
  for (int i = 0; i < 10; i++) weft__stack_put(&s, v[i]);
  cr_assert_eq(s.nfree, 10);
  weft__stacks_trim(&s, SIZE_MAX);
  cr_assert_eq(s.nfree, 3);
  /* Guards made by MADV_GUARD_INSTALL cost no mapping, so none counts. */
  cr_assert_eq(s.nguarded, s.guard_install ? 0 : 3);
  weft__stacks_destroy(&s);
}

/* Where the kernel installs guards without mappings, every stack, slab
 * ones included, has its guard page, and 64 of them share one mapping. */
Test(stack, guarded_slabs, .timeout = 10) {
  if (!weft__stack_guard_install_supported())
    cr_skip_test("no MADV_GUARD_INSTALL (Linux < 6.13)");
  weft__stacks s;
  weft__stacks_init(&s, 0, 0, true, false);
  cr_assert(s.guard_install);
  weft__stack *v[100];
  for (int i = 0; i < 100; i++) {
    cr_assert_not_null(v[i] = weft__stack_get(&s, 0));
    cr_assert_eq(v[i]->kind, WEFT__STACK_SLAB | WEFT__STACK_GUARDED);
    cr_assert(weft__stack_in_guard(v[i], v[i]->lo - 1));
    cr_assert_not(weft__stack_in_guard(v[i], v[i]->lo));
    v[i]->lo[0] = 1; /* the bottom byte is writable */
  }
  cr_assert_eq(s.nslabs, 2);
  cr_assert_eq(s.nguarded, 0);
  for (int i = 0; i < 100; i++) weft__stack_put(&s, v[i]);
  weft__stacks_destroy(&s);
}

/* Past the guard budget, stacks come from slabs without a guard page,
 * and debug mode gives them a canary. Slab stacks given back by a trim
 * are reused before new ones are carved. */
Test(stack, guard_budget_fallback, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 1, true, true);
  s.guard_install = false; /* as on a kernel before 6.13 */
  s.guard_budget = 2;
  weft__stack *v[5];
  for (int i = 0; i < 5; i++) cr_assert_not_null(v[i] = weft__stack_get(&s, 0));
  cr_assert(v[0]->kind & WEFT__STACK_GUARDED);
  cr_assert(v[1]->kind & WEFT__STACK_GUARDED);
  for (int i = 2; i < 5; i++) {
    cr_assert(v[i]->kind & WEFT__STACK_SLAB);
    cr_assert(weft__stack_canary_ok(v[i]));
  }
  cr_assert_eq(s.nslabs, 1);
  for (int i = 0; i < 5; i++) weft__stack_put(&s, v[i]);
  weft__stacks_trim(&s, SIZE_MAX);
  cr_assert_eq(s.nfree, 1);
  cr_assert_not_null(s.cold);
  weft__stack *again = weft__stack_get(&s, 0);
  cr_assert_not_null(again);
  weft__stack_put(&s, again);
  weft__stacks_destroy(&s);
}

/* Without guard pages requested, no stack has one. */
Test(stack, guards_off, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 0, false, false);
  weft__stack *a = weft__stack_get(&s, 0);
  cr_assert_not_null(a);
  cr_assert_not(a->kind & WEFT__STACK_GUARDED);
  cr_assert_eq(s.nguarded, 0);
  weft__stack_put(&s, a);
  weft__stacks_destroy(&s);
}

/* The guard page really is inaccessible: writing to it kills the process
 * with SIGSEGV (checked in a child process). */
Test(stack, guard_page_faults, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 0, true, false);
  weft__stack *a = weft__stack_get(&s, 0);
  cr_assert_not_null(a);
  cr_assert(weft__stack_in_guard(a, a->lo - 1));
  cr_assert_not(weft__stack_in_guard(a, a->lo));
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);
    *(volatile char *)(a->lo - 16) = 1;
    _exit(0);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st));
  cr_assert_eq(WTERMSIG(st), SIGSEGV);
  weft__stack_put(&s, a);
  weft__stacks_destroy(&s);
}

/* Residency counts touched pages: a fresh stack holds about one page
 * (the descriptor's), and touching 8 more pages raises the count. */
Test(stack, resident_counts_touched_pages, .timeout = 10) {
  weft__stacks s;
  weft__stacks_init(&s, 0, 0, true, false);
  weft__stack *a = weft__stack_get(&s, 0);
  cr_assert_not_null(a);
  size_t before = weft__stack_resident(&s, a);
  cr_assert_leq(before, 2 * s.page);
  char *p = (char *)a - 9 * s.page;
  for (int i = 0; i < 8; i++) p[i * s.page] = 1;
  cr_assert_geq(weft__stack_resident(&s, a), before + 8 * s.page);
  weft__stack_put(&s, a);
  weft__stacks_destroy(&s);
}
