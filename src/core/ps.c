/* The weft-ps socket: being written. */
#include "core/internal.h"
void weft__ps_start(weft_loop *L, const weft_config *cfg) { (void)L; (void)cfg; }
void weft__ps_stop(weft_loop *L) { (void)L; }
