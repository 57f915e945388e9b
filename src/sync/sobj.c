/* Shared by every sync object (see sobj.h). */
#include "sync/sobj.h"

void weft__sobj_unpark(weft_task *t) {
  weft__waiter *w = task_waiter(t);
  wl_remove(w->list, w);
}
