/* The per-thread state of the sanitizer annotations (fiber.h). */
#define _GNU_SOURCE
#include <pthread.h>

#include "core/fiber.h"

__thread const void *weft__sched_stack_lo __attribute__((tls_model("initial-exec")));
__thread size_t weft__sched_stack_size __attribute__((tls_model("initial-exec")));
#ifdef WEFT_TSAN
__thread void *weft__sched_fiber __attribute__((tls_model("initial-exec")));
__thread void *weft__zombie_fiber __attribute__((tls_model("initial-exec")));
#endif

void weft__fiber_thread_init(void) {
  pthread_attr_t a;
  void *lo = NULL;
  size_t sz = 0;
  if (pthread_getattr_np(pthread_self(), &a) == 0) {
    pthread_attr_getstack(&a, &lo, &sz);
    pthread_attr_destroy(&a);
  }
  weft__sched_stack_lo = lo;
  weft__sched_stack_size = sz;
#ifdef WEFT_TSAN
  weft__sched_fiber = __tsan_get_current_fiber();
#endif
}
