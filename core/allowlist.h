/* allowlist.h: the destination allowlist, compiled once per policy generation into C.
 *
 * Built from the policy's Lua `allowlist` table (policy.c) and then immutable, so the
 * hot path never touches Lua tables. Names are looked up in one hash table (exact names
 * and "*.suffix" wildcards), IP destinations against CIDR lists. First matching rule in
 * configuration order wins. Address classes (loopback, private, link-local, metadata, ...)
 * are refused after DNS resolution unless the matching rule names them in its cidrs. */
#ifndef EG_ALLOWLIST_H
#define EG_ALLOWLIST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct eg_allowlist;

struct eg_port_range {
	uint16_t lo, hi;
};

struct eg_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int prefix;
};

struct eg_rule {
	char *name;
	int index; /* position in the configuration, first match wins */
	struct eg_port_range *ports;
	int nports;
	struct eg_cidr *cidrs;
	int ncidrs;
	int nhosts;
};

enum eg_allow_result {
	EG_ALLOW_MATCH,   /* a rule names this destination and port */
	EG_ALLOW_DEFER,   /* no name rule; CIDR-only rules may match the resolved address */
	EG_DENY_HOST,     /* nothing names this destination */
	EG_DENY_PORT,     /* a rule names the host, but not this port */
};

struct eg_allowlist *eg_allowlist_new(void);
void eg_allowlist_free(struct eg_allowlist *al);

/* Builder: each returns 0, or -1 with a static message in *err. */
int eg_allowlist_add_rule(struct eg_allowlist *al, const char *name, const char **err);
int eg_allowlist_add_host(struct eg_allowlist *al, const char *pattern, const char **err);
int eg_allowlist_add_ports(struct eg_allowlist *al, const char *spec, const char **err); /* "443" or "8000-8100" */
int eg_allowlist_add_cidr(struct eg_allowlist *al, const char *spec, const char **err);
/* Check the rule under construction is complete (ports present, hosts or cidrs present). */
int eg_allowlist_end_rule(struct eg_allowlist *al, const char **err);

int eg_allowlist_count(const struct eg_allowlist *al);

/* Decide on a destination before resolution. host is normalised (http_parse). For IP
 * literals (host_is_ip 4/6) the CIDR lists decide right away. *rule: the matching rule
 * (EG_ALLOW_MATCH), the first rule naming the host (EG_DENY_PORT), else NULL. */
enum eg_allow_result eg_allowlist_match_name(const struct eg_allowlist *al, const char *host, int host_is_ip,
					     uint16_t port, const struct eg_rule **rule);

/* Decide on a resolved address. rule is the name match (or NULL after EG_ALLOW_DEFER); on
 * success *out is the rule that allows it. Returns 0 allowed, -1 denied with a static *why. */
int eg_allowlist_check_addr(const struct eg_allowlist *al, const struct eg_rule *rule,
			    const struct sockaddr *sa, uint16_t port, const struct eg_rule **out, const char **why);

/* Class of an address that must not be reached by default: "loopback", "private",
 * "link-local", "metadata", "unspecified", "multicast", "reserved", "shared" — or NULL. */
const char *eg_addr_internal_class(const struct sockaddr *sa);

/* Parse "a.b.c.d/n" or "v6/n" (prefix optional = host route). 0 or -1. */
int eg_cidr_parse(const char *spec, struct eg_cidr *out);
int eg_cidr_contains(const struct eg_cidr *c, const struct sockaddr *sa);

#endif
