/* Criterion shim: the new assertion API is not emulated beyond what
 * criterion.h offers (plain conditions in cr_assert/cr_expect, cr_fail,
 * cr_fatal, cr_skip); eq(type, a, b) and friends are not supported. */
#include "../criterion.h"
