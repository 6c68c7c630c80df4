/* fuzz_cmp.c: libFuzzer target for the CMP message parser (core/cmp_msg.c), which reads untrusted
 * PKIMessages with OpenSSL twice (OpenSSL's own type and our header/template views). A parsed
 * message must be self-consistent (bounded counts, NUL-terminated text), its signer lookup,
 * error-text reader and fast MAC check (core/pbm.c) must cope with it, and the error answer
 * built for it must parse again as an error message of the same transaction; the shallow
 * body-type read agrees with the full parse wherever that succeeds. Also built without libFuzzer by tests/unit. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fuzz_check.h"
#include "cmp_msg.h"
#include "csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eg_cmp_msg *m = NULL;
	char why[160];
	int peeked = eg_cmp_peek_body_type(data, size); /* the shallow read, of anything */
	CHECK(peeked >= -1 && peeked <= EG_CMP_BODY_MAX);
	enum eg_cmp_status st = eg_cmp_parse(data, size, &m, why, sizeof(why));
	if (st != EG_CMP_OK) {
		CHECK(m == NULL && memchr(why, 0, sizeof(why)) && why[0]);
		return 0;
	}
	CHECK(m->body_type >= 0 && m->body_type <= EG_CMP_BODY_MAX);
	CHECK(peeked == m->body_type); /* whatever parses, the shallow read agrees with */
	CHECK(m->nrequests >= 0 && m->nrequests <= EG_CMP_MAX_REQUESTS);
	CHECK(m->kid_len <= sizeof(m->kid));
	CHECK(memchr(m->sender, 0, sizeof(m->sender)) && memchr(m->recipient, 0, sizeof(m->recipient)));
	CHECK(memchr(m->sender_kid, 0, sizeof(m->sender_kid)) && memchr(m->transaction_id, 0, sizeof(m->transaction_id)));
	CHECK(memchr(m->protection_alg, 0, sizeof(m->protection_alg)));
	CHECK(!m->content_error || m->nrequests == 0);
	for (int i = 0; i < m->nrequests; i++)
		CHECK(m->requests[i] && m->requests[i]->nsubject <= EG_CSR_MAX_ITEMS);
	/* the fast MAC path over the kept ProtectedPart (a copy of header and body, so no longer
	 * than the message plus a new SEQUENCE header) copes with any parameters */
	CHECK(!m->protected_part || (m->protection == EG_CMP_PROT_MAC && m->protected_len <= size + 6));
	int fast = eg_cmp_pbm_fast(m, (const unsigned char *)"fuzz", 4);
	CHECK(fast >= -1 && fast <= 1 && (m->protected_part || fast == -1));
	eg_csr_free(eg_cmp_signer(m));
	char text[300];
	if (eg_cmp_error_text(m, text, sizeof(text)) == 0)
		CHECK(memchr(text, 0, sizeof(text)));

	size_t len = 0;
	unsigned char *der = eg_cmp_error_der(m, 2, "fuzz", &len);
	CHECK(der != NULL);
	struct eg_cmp_msg *e = NULL;
	CHECK(eg_cmp_parse(der, len, &e, why, sizeof(why)) == EG_CMP_OK);
	CHECK(e->body_type == EG_CMP_ERROR && strcmp(e->transaction_id, m->transaction_id) == 0);
	eg_cmp_msg_free(e);
	OPENSSL_free(der);
	eg_cmp_msg_free(m);
	return 0;
}
