/* ra.c: finding and loading the registration-authority module; see ra.h. */
#include "ra.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_config.h"

/* Defined by ra_module.c: in the module, or in a test program that links the module's objects. */
extern const struct eg_ra_ops eg_ra_module_ops __attribute__((weak));

static _Atomic(const struct eg_ra_ops *) loaded;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

const struct eg_ra_ops *eg_ra(void)
{
	return atomic_load_explicit(&loaded, memory_order_acquire);
}

static void module_path(char *out, size_t cap)
{
	const char *env = getenv("ENROLLGATE_RA_MODULE");
	if (env && *env) {
		snprintf(out, cap, "%s", env);
		return;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t bl = strlen(EG_BINARY_DIR);
	if (n > 0) {
		exe[n] = '\0';
		if (strncmp(exe, EG_BINARY_DIR, bl) == 0 && exe[bl] == '/') {
			snprintf(out, cap, "%s/enrollgate-ra.so", EG_BINARY_DIR);
			return;
		}
	}
	snprintf(out, cap, "%s", EG_INSTALLED_RA_MODULE);
}

const struct eg_ra_ops *eg_ra_load(char *why, size_t cap)
{
	const struct eg_ra_ops *r = eg_ra();
	if (r)
		return r;
	pthread_mutex_lock(&load_lock);
	if (!(r = eg_ra())) {
		if (&eg_ra_module_ops) {
			r = &eg_ra_module_ops;
		} else {
			char path[PATH_MAX];
			module_path(path, sizeof(path));
			/* never closed: OpenSSL cannot be unloaded anyway (it is NODELETE) */
			void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
			const struct eg_ra_ops *ops = h ? dlsym(h, "eg_ra_module_ops") : NULL;
			if (!h)
				snprintf(why, cap, "cannot load the EST/CMP module: %s", dlerror());
			else if (!ops)
				snprintf(why, cap, "%s is not an enrollgate EST/CMP module", path);
			else if (ops->abi != EG_RA_ABI)
				snprintf(why, cap, "%s belongs to another enrollgate build (abi %d, this one %d)", path, ops->abi,
					 EG_RA_ABI);
			else
				r = ops;
		}
		if (r)
			atomic_store_explicit(&loaded, r, memory_order_release);
	}
	pthread_mutex_unlock(&load_lock);
	return r;
}
