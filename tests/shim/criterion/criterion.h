/*
 * A Criterion look-alike for running weft's tests where Criterion cannot
 * run: under qemu-user (Criterion's runner spins forever there) and under
 * valgrind. Selected by the CMake option WEFT_TEST_SHIM; the runner is
 * tests/shim/shim_main.c.
 *
 * It accepts Criterion 2.4's syntax for the subset weft's tests use, so a
 * test compiles unchanged against either:
 *   Test(suite, name) / Test(suite, name, .timeout = 5, .init = f, ...)
 *   TestSuite(suite, .timeout = 5, ...)   (defaults for the suite's tests)
 *   cr_assert(cond [, fmt, ...])  cr_assert_not  cr_assert_eq  cr_assert_neq
 *   cr_assert_lt/leq/gt/geq  cr_assert_null/not_null  cr_assert_str_eq/neq
 *   cr_assert_str_empty/not_empty  cr_assert_float_eq/neq  cr_assert_arr_eq/neq
 *   cr_assert_fail  and every cr_expect_* twin (records, continues)
 *   cr_fail (non-fatal, as in criterion/new/assert.h)  cr_fatal  cr_skip_test
 *   cr_skip  cr_log_info/warn/error  cr_log
 * The optional trailing arguments are a printf format (a string literal,
 * as in Criterion) and its arguments.
 *
 * Each test runs in a forked child with a timeout (the test's .timeout, else
 * the suite's, else 30 s; times WEFT_TIMEOUT_SCALE). Comparisons print the
 * two values when their types are plain numbers, strings or void pointers.
 */
#ifndef WEFT_SHIM_CRITERION_H
#define WEFT_SHIM_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_SHIM 1

/* The options of Test() and TestSuite(), as in Criterion's types.h. */
struct criterion_test_extra_data {
  int sentinel_;
  void (*init)(void);
  void (*fini)(void);
  int signal;
  int exit_code;
  bool disabled;
  const char *description;
  double timeout;
  void *data;
};

struct wshim_test {
  const char *suite;
  const char *name;
  void (*fn)(void);
  const struct criterion_test_extra_data *data;
  const char *file;
  unsigned line;
  struct wshim_test *next;
};

struct wshim_suite {
  const char *name;
  const struct criterion_test_extra_data *data;
  struct wshim_suite *next;
};

void wshim_register_test_(struct wshim_test *t);
void wshim_register_suite_(struct wshim_suite *s);

#define Test(...) WSHIM_TEST_(__VA_ARGS__, .sentinel_ = 0)
#define WSHIM_TEST_(Suite, Name, ...)                                        \
  static void wshim_fn_##Suite##_##Name(void);                               \
  static const struct criterion_test_extra_data wshim_data_##Suite##_##Name = \
      {__VA_ARGS__};                                                         \
  static struct wshim_test wshim_test_##Suite##_##Name = {                   \
      #Suite, #Name, wshim_fn_##Suite##_##Name,                              \
      &wshim_data_##Suite##_##Name, __FILE__, __LINE__, NULL};               \
  __attribute__((constructor)) static void wshim_reg_##Suite##_##Name(void) { \
    wshim_register_test_(&wshim_test_##Suite##_##Name);                      \
  }                                                                          \
  static void wshim_fn_##Suite##_##Name(void)

#define TestSuite(...) WSHIM_SUITE_(__VA_ARGS__, .sentinel_ = 0)
#define WSHIM_SUITE_(Name, ...)                                              \
  static const struct criterion_test_extra_data wshim_sdata_##Name = {      \
      __VA_ARGS__};                                                          \
  static struct wshim_suite wshim_suite_##Name = {#Name, &wshim_sdata_##Name, \
                                                  NULL};                     \
  __attribute__((constructor)) static void wshim_sreg_##Name(void) {        \
    wshim_register_suite_(&wshim_suite_##Name);                              \
  }                                                                          \
  struct wshim_suite_end_##Name

/* ------------------------------------------------------------- reporting */

/* Records a failure; fatal ones end the test. `fmt` is the user's message
 * ("" for none). */
void wshim_fail_(int fatal, const char *file, unsigned line, const char *what,
                 const char *fmt, ...);
/* The same with the two compared values, already formatted ("" if the
 * type is not one the shim knows how to print). */
void wshim_cmp_fail_(int fatal, const char *file, unsigned line,
                     const char *what, const char *va, const char *vb,
                     const char *fmt, ...);
__attribute__((noreturn)) void wshim_skip_(const char *file, unsigned line,
                                           const char *fmt, ...);

enum criterion_severity { CR_LOG_INFO, CR_LOG_WARNING, CR_LOG_ERROR };
void cr_log(enum criterion_severity severity, const char *msg, ...)
    __attribute__((format(printf, 2, 3)));
#define cr_log_info(...) cr_log(CR_LOG_INFO, __VA_ARGS__)
#define cr_log_warn(...) cr_log(CR_LOG_WARNING, __VA_ARGS__)
#define cr_log_error(...) cr_log(CR_LOG_ERROR, __VA_ARGS__)

/* Value formatting for comparison failures. Variadic, so every _Generic
 * branch accepts any argument type; only the selected one reads it. */
void wshim_fmt_i_(char *b, size_t n, ...);
void wshim_fmt_u_(char *b, size_t n, ...);
void wshim_fmt_l_(char *b, size_t n, ...);
void wshim_fmt_ul_(char *b, size_t n, ...);
void wshim_fmt_ll_(char *b, size_t n, ...);
void wshim_fmt_ull_(char *b, size_t n, ...);
void wshim_fmt_d_(char *b, size_t n, ...);
void wshim_fmt_ld_(char *b, size_t n, ...);
void wshim_fmt_s_(char *b, size_t n, ...);
void wshim_fmt_p_(char *b, size_t n, ...);
void wshim_fmt_none_(char *b, size_t n, ...);
#define WSHIM_FMT_(buf, v)                                                   \
  _Generic((v),                                                              \
      _Bool: wshim_fmt_i_, char: wshim_fmt_i_, signed char: wshim_fmt_i_,    \
      unsigned char: wshim_fmt_i_, short: wshim_fmt_i_,                      \
      unsigned short: wshim_fmt_i_, int: wshim_fmt_i_,                       \
      unsigned int: wshim_fmt_u_, long: wshim_fmt_l_,                        \
      unsigned long: wshim_fmt_ul_, long long: wshim_fmt_ll_,                \
      unsigned long long: wshim_fmt_ull_, float: wshim_fmt_d_,               \
      double: wshim_fmt_d_, long double: wshim_fmt_ld_,                      \
      char *: wshim_fmt_s_, const char *: wshim_fmt_s_,                      \
      void *: wshim_fmt_p_, const void *: wshim_fmt_p_,                      \
      default: wshim_fmt_none_)(buf, sizeof(buf), v)

/* Name is the call as written (stringified before A and B are expanded).
 * Criterion evaluates `(a) op (b)` with C's own conversions; so do we, on
 * copies (each operand is evaluated once). The copies would make gcc warn
 * about signed/unsigned comparisons that a literal operand avoids. */
#define WSHIM_DIAG_PUSH_                                                     \
  _Pragma("GCC diagnostic push")                                             \
      _Pragma("GCC diagnostic ignored \"-Wsign-compare\"")
#define WSHIM_DIAG_POP_ _Pragma("GCC diagnostic pop")

#define WSHIM_BOOL_(Fatal, Cond, What, ...)                                  \
  do {                                                                       \
    if (!(Cond))                                                             \
      wshim_fail_(Fatal, __FILE__, __LINE__, What, "" __VA_ARGS__);          \
  } while (0)

#define WSHIM_CMP_(Fatal, Name, A, Op, B, ...)                               \
  do {                                                                       \
    WSHIM_DIAG_PUSH_                                                         \
    __auto_type wshim_a_ = (A);                                              \
    __auto_type wshim_b_ = (B);                                              \
    if (!(wshim_a_ Op wshim_b_)) {                                           \
      char wshim_va_[96], wshim_vb_[96];                                     \
      WSHIM_FMT_(wshim_va_, wshim_a_);                                       \
      WSHIM_FMT_(wshim_vb_, wshim_b_);                                       \
      wshim_cmp_fail_(Fatal, __FILE__, __LINE__,                             \
                      Name " is false", \
                      wshim_va_, wshim_vb_, "" __VA_ARGS__);                 \
    }                                                                        \
    WSHIM_DIAG_POP_                                                          \
  } while (0)

#define WSHIM_STRCMP_(Fatal, Name, A, Op, B, ...)                            \
  do {                                                                       \
    const char *wshim_a_ = (A);                                              \
    const char *wshim_b_ = (B);                                              \
    if (!wshim_a_ || !wshim_b_ || !(strcmp(wshim_a_, wshim_b_) Op 0)) {      \
      char wshim_va_[96], wshim_vb_[96];                                     \
      wshim_fmt_s_(wshim_va_, sizeof(wshim_va_), wshim_a_);                  \
      wshim_fmt_s_(wshim_vb_, sizeof(wshim_vb_), wshim_b_);                  \
      wshim_cmp_fail_(Fatal, __FILE__, __LINE__,                             \
                      Name " is false", wshim_va_, wshim_vb_, \
                      "" __VA_ARGS__);                                       \
    }                                                                        \
  } while (0)

#define WSHIM_FLOAT_(Fatal, Name, A, B, Eps, Want, ...)                      \
  do {                                                                       \
    long double wshim_a_ = (A), wshim_b_ = (B), wshim_e_ = (Eps);            \
    bool wshim_close_ =                                                      \
        wshim_a_ - wshim_b_ <= wshim_e_ && wshim_b_ - wshim_a_ <= wshim_e_;  \
    if (wshim_close_ != (Want)) {                                            \
      char wshim_va_[96], wshim_vb_[96];                                     \
      wshim_fmt_ld_(wshim_va_, sizeof(wshim_va_), wshim_a_);                 \
      wshim_fmt_ld_(wshim_vb_, sizeof(wshim_vb_), wshim_b_);                 \
      wshim_cmp_fail_(Fatal, __FILE__, __LINE__,                             \
                      Name " is false", wshim_va_,  \
                      wshim_vb_, "" __VA_ARGS__);                            \
    }                                                                        \
  } while (0)

/* ------------------------------------------------------------- asserts */

#define cr_assert(Cond, ...) \
  WSHIM_BOOL_(1, (Cond), "cr_assert(" #Cond "): expression is false", __VA_ARGS__)
#define cr_expect(Cond, ...) \
  WSHIM_BOOL_(0, (Cond), "cr_expect(" #Cond "): expression is false", __VA_ARGS__)
#define cr_assert_not(Cond, ...) \
  WSHIM_BOOL_(1, !(Cond), "cr_assert_not(" #Cond "): expression is true", __VA_ARGS__)
#define cr_expect_not(Cond, ...) \
  WSHIM_BOOL_(0, !(Cond), "cr_expect_not(" #Cond "): expression is true", __VA_ARGS__)

#define cr_assert_eq(A, B, ...) WSHIM_CMP_(1, "cr_assert_eq(" #A ", " #B ")", A, ==, B, __VA_ARGS__)
#define cr_expect_eq(A, B, ...) WSHIM_CMP_(0, "cr_expect_eq(" #A ", " #B ")", A, ==, B, __VA_ARGS__)
#define cr_assert_neq(A, B, ...) WSHIM_CMP_(1, "cr_assert_neq(" #A ", " #B ")", A, !=, B, __VA_ARGS__)
#define cr_expect_neq(A, B, ...) WSHIM_CMP_(0, "cr_expect_neq(" #A ", " #B ")", A, !=, B, __VA_ARGS__)
#define cr_assert_lt(A, B, ...) WSHIM_CMP_(1, "cr_assert_lt(" #A ", " #B ")", A, <, B, __VA_ARGS__)
#define cr_expect_lt(A, B, ...) WSHIM_CMP_(0, "cr_expect_lt(" #A ", " #B ")", A, <, B, __VA_ARGS__)
#define cr_assert_leq(A, B, ...) WSHIM_CMP_(1, "cr_assert_leq(" #A ", " #B ")", A, <=, B, __VA_ARGS__)
#define cr_expect_leq(A, B, ...) WSHIM_CMP_(0, "cr_expect_leq(" #A ", " #B ")", A, <=, B, __VA_ARGS__)
#define cr_assert_gt(A, B, ...) WSHIM_CMP_(1, "cr_assert_gt(" #A ", " #B ")", A, >, B, __VA_ARGS__)
#define cr_expect_gt(A, B, ...) WSHIM_CMP_(0, "cr_expect_gt(" #A ", " #B ")", A, >, B, __VA_ARGS__)
#define cr_assert_geq(A, B, ...) WSHIM_CMP_(1, "cr_assert_geq(" #A ", " #B ")", A, >=, B, __VA_ARGS__)
#define cr_expect_geq(A, B, ...) WSHIM_CMP_(0, "cr_expect_geq(" #A ", " #B ")", A, >=, B, __VA_ARGS__)

#define cr_assert_null(V, ...) \
  WSHIM_BOOL_(1, (V) == NULL, "cr_assert_null(" #V "): not NULL", __VA_ARGS__)
#define cr_expect_null(V, ...) \
  WSHIM_BOOL_(0, (V) == NULL, "cr_expect_null(" #V "): not NULL", __VA_ARGS__)
#define cr_assert_not_null(V, ...) \
  WSHIM_BOOL_(1, (V) != NULL, "cr_assert_not_null(" #V "): NULL", __VA_ARGS__)
#define cr_expect_not_null(V, ...) \
  WSHIM_BOOL_(0, (V) != NULL, "cr_expect_not_null(" #V "): NULL", __VA_ARGS__)

#define cr_assert_str_eq(A, B, ...) WSHIM_STRCMP_(1, "cr_assert_str_eq(" #A ", " #B ")", A, ==, B, __VA_ARGS__)
#define cr_expect_str_eq(A, B, ...) WSHIM_STRCMP_(0, "cr_expect_str_eq(" #A ", " #B ")", A, ==, B, __VA_ARGS__)
#define cr_assert_str_neq(A, B, ...) WSHIM_STRCMP_(1, "cr_assert_str_neq(" #A ", " #B ")", A, !=, B, __VA_ARGS__)
#define cr_expect_str_neq(A, B, ...) WSHIM_STRCMP_(0, "cr_expect_str_neq(" #A ", " #B ")", A, !=, B, __VA_ARGS__)
#define cr_assert_str_lt(A, B, ...) WSHIM_STRCMP_(1, "cr_assert_str_lt(" #A ", " #B ")", A, <, B, __VA_ARGS__)
#define cr_expect_str_lt(A, B, ...) WSHIM_STRCMP_(0, "cr_expect_str_lt(" #A ", " #B ")", A, <, B, __VA_ARGS__)
#define cr_assert_str_gt(A, B, ...) WSHIM_STRCMP_(1, "cr_assert_str_gt(" #A ", " #B ")", A, >, B, __VA_ARGS__)
#define cr_expect_str_gt(A, B, ...) WSHIM_STRCMP_(0, "cr_expect_str_gt(" #A ", " #B ")", A, >, B, __VA_ARGS__)
#define cr_assert_str_empty(V, ...) \
  WSHIM_BOOL_(1, (V) != NULL && *(V) == '\0', "cr_assert_str_empty(" #V "): not empty", __VA_ARGS__)
#define cr_expect_str_empty(V, ...) \
  WSHIM_BOOL_(0, (V) != NULL && *(V) == '\0', "cr_expect_str_empty(" #V "): not empty", __VA_ARGS__)
#define cr_assert_str_not_empty(V, ...) \
  WSHIM_BOOL_(1, (V) != NULL && *(V) != '\0', "cr_assert_str_not_empty(" #V "): empty", __VA_ARGS__)
#define cr_expect_str_not_empty(V, ...) \
  WSHIM_BOOL_(0, (V) != NULL && *(V) != '\0', "cr_expect_str_not_empty(" #V "): empty", __VA_ARGS__)

#define cr_assert_float_eq(A, B, Eps, ...) WSHIM_FLOAT_(1, "cr_assert_float_eq(" #A ", " #B ", " #Eps ")", A, B, Eps, true, __VA_ARGS__)
#define cr_expect_float_eq(A, B, Eps, ...) WSHIM_FLOAT_(0, "cr_expect_float_eq(" #A ", " #B ", " #Eps ")", A, B, Eps, true, __VA_ARGS__)
#define cr_assert_float_neq(A, B, Eps, ...) WSHIM_FLOAT_(1, "cr_assert_float_neq(" #A ", " #B ", " #Eps ")", A, B, Eps, false, __VA_ARGS__)
#define cr_expect_float_neq(A, B, Eps, ...) WSHIM_FLOAT_(0, "cr_expect_float_neq(" #A ", " #B ", " #Eps ")", A, B, Eps, false, __VA_ARGS__)

#define cr_assert_arr_eq(A, B, Size, ...) \
  WSHIM_BOOL_(1, memcmp((A), (B), (Size)) == 0, "cr_assert_arr_eq(" #A ", " #B ", " #Size "): differ", __VA_ARGS__)
#define cr_expect_arr_eq(A, B, Size, ...) \
  WSHIM_BOOL_(0, memcmp((A), (B), (Size)) == 0, "cr_expect_arr_eq(" #A ", " #B ", " #Size "): differ", __VA_ARGS__)
#define cr_assert_arr_neq(A, B, Size, ...) \
  WSHIM_BOOL_(1, memcmp((A), (B), (Size)) != 0, "cr_assert_arr_neq(" #A ", " #B ", " #Size "): equal", __VA_ARGS__)
#define cr_expect_arr_neq(A, B, Size, ...) \
  WSHIM_BOOL_(0, memcmp((A), (B), (Size)) != 0, "cr_expect_arr_neq(" #A ", " #B ", " #Size "): equal", __VA_ARGS__)

#define cr_assert_fail(...) wshim_fail_(1, __FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_expect_fail(...) wshim_fail_(0, __FILE__, __LINE__, "cr_expect_fail", "" __VA_ARGS__)
/* criterion/new/assert.h: cr_fail marks the test failed and goes on;
 * cr_fatal ends it. (Plain <criterion/criterion.h> has no usable cr_fail:
 * portable tests use cr_assert_fail / cr_expect_fail.) */
#define cr_fail(...) wshim_fail_(0, __FILE__, __LINE__, "cr_fail", "" __VA_ARGS__)
#define cr_fatal(...) wshim_fail_(1, __FILE__, __LINE__, "cr_fatal", "" __VA_ARGS__)
#define cr_skip_test(...) wshim_skip_(__FILE__, __LINE__, "" __VA_ARGS__)
#define cr_skip(...) wshim_skip_(__FILE__, __LINE__, "" __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SHIM_CRITERION_H */
