/* The task dump (weft_dump_tasks): being written. */
#include "core/internal.h"
int weft_dump_tasks(FILE *out, int flags) { (void)out; (void)flags; return 0; }
int weft__dump_process(FILE *out, int flags, int64_t timeout) { (void)out; (void)flags; (void)timeout; return 0; }
