/* digest.h: the SHA-256 that names a policy bundle (bundle_sha256), incrementally over its files. */
#ifndef EG_DIGEST_H
#define EG_DIGEST_H

#include <stddef.h>

struct eg_sha256;

struct eg_sha256 *eg_sha256_new(void);                 /* NULL when out of memory */
void eg_sha256_update(struct eg_sha256 *d, const void *p, size_t n);
void eg_sha256_final(struct eg_sha256 *d, char hex[65]); /* lower-case hex; frees d */
void eg_sha256_free(struct eg_sha256 *d);              /* without a result (error paths); NULL is fine */

#endif
