/* est_auth.h: HTTP Basic checks for the EST registration authority without stalling the event
 * loop. A PBKDF2 verification costs tens of milliseconds by design; it runs on a short-lived
 * thread and the answer comes back to the loop as an event. Recent successes are remembered
 * (keyed by an HMAC under a per-process key, so neither password nor hash is kept), unknown
 * users cost the same as known ones, and only a few checks run at once. */
#ifndef EG_EST_AUTH_H
#define EG_EST_AUTH_H

#include <stddef.h>

struct eg_wake;
struct eg_est_conf;
struct eg_pw_checker;

#define EG_PW_MAX_RUNNING 2       /* verifications at once; more are refused as busy */
#define EG_PW_CACHE_TTL 300.0     /* seconds a verified user/password pair is remembered */

enum eg_pw_result {
	EG_PW_REFUSED = 0,        /* no or malformed credentials (nothing started) */
	EG_PW_OK = 1,             /* verified now (remembered) */
	EG_PW_PENDING = 2,        /* done() runs on the loop later */
	EG_PW_BUSY = 3,           /* too many verifications running: answer 503, retry soon */
};

/* done(ok, user, arg) runs on the loop thread; user is the name that was checked. */
typedef void (*eg_pw_done_fn)(int ok, const char *user, void *arg);

struct eg_pw_checker *eg_pw_checker_new(struct eg_wake *wake);
/* Waits for running verifications to end, then frees (their done() never runs). */
void eg_pw_checker_free(struct eg_pw_checker *pc);

/* Check the value of an Authorization header against conf's users. On EG_PW_OK the user name
 * is in user. */
enum eg_pw_result eg_pw_check(struct eg_pw_checker *pc, const struct eg_est_conf *conf, const char *authorization,
			      char *user, size_t ulen, eg_pw_done_fn done, void *arg);

#endif
