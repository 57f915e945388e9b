/* Trace files: being written. */
#include "core/internal.h"
void weft__trace_start(weft_loop *L, const weft_config *cfg) { (void)L; (void)cfg; }
void weft__trace_stop(weft_loop *L) { (void)L; }
