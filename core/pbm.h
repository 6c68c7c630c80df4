/* pbm.h: the password-based MAC of CMP (RFC 4211 section 4.4, RFC 4210 section 5.1.3.1),
 * verified with OpenSSL's low-level digests.
 *
 * Why not OSSL_CRMF_pbm_new: the PBM applies its one-way function hundreds of times (openssl
 * cmp sends 500), and OpenSSL 3.0's EVP digest calls cost as much again as the hashing itself:
 * 72 µs against 31 µs per 500 SHA-256 rounds on the benchmark machine, a sixth of the CMP proxy's
 * CPU per message (docs/performance.md). This is the fast path only: what it cannot verify
 * (another algorithm, a mismatch) goes to OSSL_CMP_validate_msg, which stays the authority. */
#ifndef EG_PBM_H
#define EG_PBM_H

#include <stddef.h>

/* Largest iteration count accepted, as OpenSSL's OSSL_CRMF_PBM_MAX_ITERATION_COUNT; the RFC's
 * minimum is 100. */
#define EG_PBM_MAX_ITERATIONS 100000

/* Verify mac (mac_len bytes, the protection BIT STRING's content) over data (the DER of the
 * ProtectedPart) with secret, under the PBMParameter whose DER is param (param_len bytes).
 * 1: the MAC verifies; 0: it does not; -1: not decided here (parameters that do not parse,
 * an iteration count outside 100..EG_PBM_MAX_ITERATIONS, a one-way function or MAC other than
 * SHA-1/SHA-2 and HMAC with them, a libcrypto without the low-level digests). */
int eg_pbm_verify(const unsigned char *param, size_t param_len, const unsigned char *secret, size_t secret_len,
		  const unsigned char *data, size_t data_len, const unsigned char *mac, size_t mac_len);

/* The PBM of data as eg_pbm_verify computes it, into out (at least 64 bytes): its length, or
 * -1 as above. For the unit test, which compares it with OSSL_CRMF_pbm_new. */
int eg_pbm_compute(const unsigned char *param, size_t param_len, const unsigned char *secret, size_t secret_len,
		   const unsigned char *data, size_t data_len, unsigned char out[64]);

#endif
