/* fuzz_csr.c: libFuzzer target for the certification request parser (core/csr.c), which reads
 * untrusted EST/CMP bodies with OpenSSL. Each input is tried as sent and as base64 of itself;
 * a parsed request must be self-consistent (bounded counts, NUL-terminated text, the DER it
 * reports being exactly the decoded input). Also built without libFuzzer by tests/unit. */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parsed(const struct eg_csr *c)
{
	CHECK(c->nsubject >= 0 && c->nsubject <= EG_CSR_MAX_ITEMS);
	CHECK(c->nsan >= 0 && c->nsan <= EG_CSR_MAX_ITEMS);
	CHECK(c->nextensions >= 0 && c->nextensions <= EG_CSR_MAX_ITEMS);
	CHECK(memchr(c->key_type, 0, sizeof(c->key_type)) && memchr(c->curve, 0, sizeof(c->curve)));
	CHECK(memchr(c->subject_text, 0, sizeof(c->subject_text)));
	for (int i = 0; i < c->nsubject; i++)
		CHECK(memchr(c->subject[i].value, 0, sizeof(c->subject[i].value)));
	for (int i = 0; i < c->nsan; i++)
		CHECK(memchr(c->san[i].value, 0, sizeof(c->san[i].value)));
	CHECK(c->der_len > 0 && c->der_len <= EG_CSR_MAX_DER);
}

static void parse_one(const void *buf, size_t len)
{
	struct eg_csr *c = NULL;
	char why[160];
	enum eg_csr_status st = eg_csr_parse(buf, len, &c, why, sizeof(why));
	if (st == EG_CSR_OK) {
		CHECK(c != NULL);
		check_parsed(c);
		/* the DER it keeps parses again to the same description */
		struct eg_csr *again = NULL;
		CHECK(eg_csr_parse(c->der, c->der_len, &again, why, sizeof(why)) == EG_CSR_OK);
		CHECK(strcmp(again->subject_text, c->subject_text) == 0 && again->nsan == c->nsan);
		eg_csr_free(again);
	} else {
		CHECK(c == NULL && memchr(why, 0, sizeof(why)) && why[0]);
	}
	eg_csr_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 3 * EG_CSR_MAX_DER)
		return 0;
	unsigned char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	parse_one(copy, size);
	/* the same bytes as an EST body would carry them */
	unsigned char *b64 = malloc(4 * ((size + 2) / 3) + 1);
	if (b64) {
		int n = EVP_EncodeBlock(b64, copy, (int)size);
		parse_one(b64, (size_t)n);
		free(b64);
	}
	free(copy);
	return 0;
}
