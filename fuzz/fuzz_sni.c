/* fuzz_sni.c: libFuzzer target for the ClientHello server_name reader (core/sni.c).
 * A found name must be a valid, lower-case DNS name that fits the buffer; a truncated copy of
 * an input must never be judged more favourably than MORE/NOT_TLS/ABSENT allow.
 * Also built without libFuzzer by tests/unit (replay_corpus.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "http_parse.h"
#include "sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum eg_sni_result parse_checked(const unsigned char *buf, size_t len, size_t cap)
{
	char out[300], again[300];
	memset(out, 0x55, sizeof(out));
	enum eg_sni_result r = eg_sni_parse(buf, len, out, cap);
	CHECK(r == EG_SNI_FOUND || r == EG_SNI_ABSENT || r == EG_SNI_NOT_TLS || r == EG_SNI_MORE);
	/* nothing is written past cap */
	for (size_t i = cap; i < sizeof(out); i++)
		CHECK((unsigned char)out[i] == 0x55);
	if (r == EG_SNI_FOUND) {
		size_t n = strnlen(out, cap);
		CHECK(n > 0 && n < cap);
		CHECK(eg_http_normalize_host(out, n, again, sizeof(again)) == 0);
		CHECK(strcmp(out, again) == 0);
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	enum eg_sni_result r = parse_checked(copy, size, 256);
	(void)parse_checked(copy, size, 16);
	(void)parse_checked(copy, size, 1);
	/* every prefix of a complete first record is incomplete */
	if (size >= 5 && r != EG_SNI_NOT_TLS && r != EG_SNI_MORE) {
		size_t rlen = ((size_t)copy[3] << 8) | copy[4];
		size_t cut = size ? copy[size - 1] % (5 + rlen) : 0;
		CHECK(eg_sni_parse(copy, cut, (char[256]){ 0 }, 256) == EG_SNI_MORE);
	}
	free(copy);
	return 0;
}
