/* fuzz_check.h: the property checks of the fuzz targets. CHECK(x) aborts when x does not hold,
 * which libFuzzer (and the corpus replay of tests/unit) reports as a crash with the input. */
#ifndef EG_FUZZ_CHECK_H
#define EG_FUZZ_CHECK_H

#include <stdlib.h>

#define CHECK(x)                      \
	do {                          \
		if (!(x))             \
			abort();      \
	} while (0)

#endif
