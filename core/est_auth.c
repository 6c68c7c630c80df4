/* est_auth.c: HTTP Basic verification off the event loop; see est_auth.h. */
#include "est_auth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "csr.h"
#include "est_conf.h"
#include "log.h"
#include "wake.h"

#define CACHE_SLOTS 64

/* What an unknown user is checked against, so that the answer takes as long as for a known
 * one (a random salt; no password matches it). */
#define DUMMY_HASH_FMT "pbkdf2-sha256$200000$%s$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

struct remembered {
	unsigned char mac[32];
	double at;                 /* monotonic seconds; 0 = empty */
};

struct eg_pw_checker {
	struct eg_wake *wake;      /* the loop's: a finished check is handed back through it */
	unsigned char key[32];     /* HMAC key of the cache, random per process */
	char dummy_hash[160];
	struct remembered cache[CACHE_SLOTS];
	int running;               /* jobs whose done() has not run (loop thread only) */
	atomic_int threads;        /* threads not yet finished (any thread) */
};

struct job {
	struct eg_pw_checker *pc;
	struct eg_wake_item done_item;     /* posted by the thread when the check is over */
	char user[64];
	char password[256];
	char hash[200];
	int known, ok;
	unsigned char mac[32];
	eg_pw_done_fn done;
	void *arg;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct eg_pw_checker *eg_pw_checker_new(struct eg_wake *wake)
{
	struct eg_pw_checker *pc = calloc(1, sizeof(*pc));
	unsigned char salt[16];
	unsigned char salt64[32];
	if (!pc || RAND_bytes(pc->key, sizeof(pc->key)) != 1 || RAND_bytes(salt, sizeof(salt)) != 1) {
		free(pc);
		return NULL;
	}
	EVP_EncodeBlock(salt64, salt, sizeof(salt));
	snprintf(pc->dummy_hash, sizeof(pc->dummy_hash), DUMMY_HASH_FMT, salt64);
	pc->wake = wake;
	atomic_init(&pc->threads, 0);
	return pc;
}

void eg_pw_checker_free(struct eg_pw_checker *pc)
{
	if (!pc)
		return;
	while (atomic_load(&pc->threads) > 0)
		usleep(1000);
	OPENSSL_cleanse(pc, sizeof(*pc));
	free(pc);
}

/* HMAC(key, user NUL password NUL hash): what the cache remembers of a verified pair. */
static void pair_mac(const struct eg_pw_checker *pc, const char *user, const char *password, const char *hash,
		     unsigned char out[32])
{
	size_t ul = strlen(user), pl = strlen(password), hl = strlen(hash);
	unsigned char *msg = malloc(ul + pl + hl + 2);
	unsigned int n = 0;
	memset(out, 0, 32);
	if (!msg)
		return;
	memcpy(msg, user, ul + 1);
	memcpy(msg + ul + 1, password, pl + 1);
	memcpy(msg + ul + pl + 2, hash, hl);
	HMAC(EVP_sha256(), pc->key, sizeof(pc->key), msg, ul + pl + hl + 2, out, &n);
	OPENSSL_cleanse(msg, ul + pl + hl + 2);
	free(msg);
}

static int remembered(struct eg_pw_checker *pc, const unsigned char mac[32])
{
	double now = mono();
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (pc->cache[i].at > 0 && now - pc->cache[i].at < EG_PW_CACHE_TTL &&
		    CRYPTO_memcmp(pc->cache[i].mac, mac, 32) == 0)
			return 1;
	return 0;
}

static void remember(struct eg_pw_checker *pc, const unsigned char mac[32])
{
	struct remembered *oldest = &pc->cache[0];
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (pc->cache[i].at < oldest->at)
			oldest = &pc->cache[i];
	memcpy(oldest->mac, mac, 32);
	oldest->at = mono();
}

static void *verify_thread(void *arg)
{
	struct job *j = arg;
	struct eg_pw_checker *pc = j->pc;
	j->ok = eg_est_verify_hash(j->hash, j->password) && j->known;
	eg_wake_post(pc->wake, &j->done_item); /* j may be gone from here on */
	atomic_fetch_sub(&pc->threads, 1);
	return NULL;
}

/* Back on the loop: remember a success, hand over the answer, clean up. */
static void job_done(void *arg)
{
	struct job *j = arg;
	j->pc->running--;
	if (j->ok)
		remember(j->pc, j->mac);
	j->done(j->ok, j->user, j->arg);
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
}

enum eg_pw_result eg_pw_check(struct eg_pw_checker *pc, const struct eg_est_conf *conf, const char *authorization,
			      char *user, size_t ulen, eg_pw_done_fn done, void *arg)
{
	if (!authorization || strncasecmp(authorization, "Basic ", 6) != 0)
		return EG_PW_REFUSED;
	const char *a = authorization + 6;
	while (*a == ' ')
		a++;
	unsigned char dec[512];
	long n = eg_base64_decode_ws(a, strlen(a), dec, sizeof(dec) - 1);
	if (n <= 0)
		return EG_PW_REFUSED;
	dec[n] = '\0';
	char *colon = memchr(dec, ':', (size_t)n);
	enum eg_pw_result r = EG_PW_REFUSED;
	struct job *j = NULL;
	if (!colon || memchr(dec, '\0', (size_t)n) || (size_t)(colon - (char *)dec) >= sizeof(j->user) ||
	    strlen(colon + 1) >= sizeof(j->password))
		goto out;
	*colon = '\0';
	const char *name = (const char *)dec, *password = colon + 1;
	const char *hash = eg_est_user_hash(conf, name);
	unsigned char mac[32];
	pair_mac(pc, name, password, hash ? hash : pc->dummy_hash, mac);
	if (hash && remembered(pc, mac)) {
		snprintf(user, ulen, "%s", name);
		r = EG_PW_OK;
		goto out;
	}
	if (pc->running >= EG_PW_MAX_RUNNING) {
		r = EG_PW_BUSY;
		goto out;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		r = EG_PW_BUSY;
		goto out;
	}
	j->pc = pc;
	j->done_item = (struct eg_wake_item){ job_done, j, NULL };
	snprintf(j->user, sizeof(j->user), "%s", name);
	snprintf(j->password, sizeof(j->password), "%s", password);
	snprintf(j->hash, sizeof(j->hash), "%s", hash ? hash : pc->dummy_hash);
	j->known = hash != NULL;
	memcpy(j->mac, mac, sizeof(mac));
	j->done = done;
	j->arg = arg;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&pc->threads, 1);
	if (pthread_create(&t, &attr, verify_thread, j) != 0) {
		atomic_fetch_sub(&pc->threads, 1);
		OPENSSL_cleanse(j, sizeof(*j));
		free(j);
		r = EG_PW_BUSY;
	} else {
		pc->running++;
		r = EG_PW_PENDING;
	}
	pthread_attr_destroy(&attr);
out:
	OPENSSL_cleanse(dec, sizeof(dec));
	return r;
}
