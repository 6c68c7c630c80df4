/* sni.h: read the server_name out of a TLS ClientHello without consuming it. */
#ifndef EG_SNI_H
#define EG_SNI_H

#include <stddef.h>

enum eg_sni_result {
	EG_SNI_FOUND = 1,     /* name copied into out */
	EG_SNI_ABSENT = 0,    /* a ClientHello without server_name */
	EG_SNI_NOT_TLS = -1,  /* the bytes are not a TLS handshake */
	EG_SNI_MORE = -2,     /* the first record is not complete yet */
};

/* Parse the first TLS record in buf[0..len). The name is lower-cased and validated as a
 * host name; an invalid name counts as EG_SNI_NOT_TLS. */
enum eg_sni_result eg_sni_parse(const unsigned char *buf, size_t len, char *out, size_t cap);

#endif
