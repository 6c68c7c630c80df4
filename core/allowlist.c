/* allowlist.c: compiled destination allowlist (see allowlist.h). */
#include "allowlist.h"

#include <ctype.h>
#include "http_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* One hash-table entry: a name or wildcard suffix and the rules that carry it. */
struct host_entry {
	struct host_entry *next;
	int wildcard;
	int *rules;
	int nrules;
	char name[];
};

struct eg_allowlist {
	struct eg_rule *rules;
	int nrules;
	struct host_entry **buckets;
	size_t nbuckets; /* power of two */
	size_t nentries;
	int has_cidr_only; /* any rule without hosts: names may still match by address */
};

static uint64_t hash_name(const char *s, size_t n, int wildcard)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)wildcard;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

struct eg_allowlist *eg_allowlist_new(void)
{
	struct eg_allowlist *al = calloc(1, sizeof(*al));
	if (!al)
		return NULL;
	al->nbuckets = 64;
	al->buckets = calloc(al->nbuckets, sizeof(*al->buckets));
	if (!al->buckets) {
		free(al);
		return NULL;
	}
	return al;
}

void eg_allowlist_free(struct eg_allowlist *al)
{
	if (!al)
		return;
	for (int i = 0; i < al->nrules; i++) {
		free(al->rules[i].name);
		free(al->rules[i].ports);
		free(al->rules[i].cidrs);
	}
	free(al->rules);
	for (size_t b = 0; b < al->nbuckets; b++) {
		struct host_entry *e = al->buckets[b], *nx;
		for (; e; e = nx) {
			nx = e->next;
			free(e->rules);
			free(e);
		}
	}
	free(al->buckets);
	free(al);
}

int eg_allowlist_count(const struct eg_allowlist *al) { return al->nrules; }

static struct host_entry *lookup(const struct eg_allowlist *al, const char *s, size_t n, int wildcard)
{
	struct host_entry *e = al->buckets[hash_name(s, n, wildcard) & (al->nbuckets - 1)];
	for (; e; e = e->next)
		if (e->wildcard == wildcard && strlen(e->name) == n && memcmp(e->name, s, n) == 0)
			return e;
	return NULL;
}

static int grow(struct eg_allowlist *al)
{
	size_t nb = al->nbuckets * 2;
	struct host_entry **b = calloc(nb, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < al->nbuckets; i++) {
		struct host_entry *e = al->buckets[i], *nx;
		for (; e; e = nx) {
			nx = e->next;
			size_t h = hash_name(e->name, strlen(e->name), e->wildcard) & (nb - 1);
			e->next = b[h];
			b[h] = e;
		}
	}
	free(al->buckets);
	al->buckets = b;
	al->nbuckets = nb;
	return 0;
}

int eg_allowlist_add_rule(struct eg_allowlist *al, const char *name, const char **err)
{
	struct eg_rule *r = realloc(al->rules, sizeof(*r) * (size_t)(al->nrules + 1));
	if (!r) {
		*err = "out of memory";
		return -1;
	}
	al->rules = r;
	r = &al->rules[al->nrules];
	memset(r, 0, sizeof(*r));
	r->index = al->nrules;
	r->name = strdup(name);
	if (!r->name) {
		*err = "out of memory";
		return -1;
	}
	al->nrules++;
	return 0;
}

static struct eg_rule *current(struct eg_allowlist *al, const char **err)
{
	if (!al->nrules) {
		*err = "no rule started";
		return NULL;
	}
	return &al->rules[al->nrules - 1];
}

int eg_allowlist_add_cidr(struct eg_allowlist *al, const char *spec, const char **err)
{
	struct eg_rule *r = current(al, err);
	struct eg_cidr c;
	if (!r)
		return -1;
	if (eg_cidr_parse(spec, &c) < 0) {
		*err = "invalid CIDR (expected a.b.c.d/n or v6::/n)";
		return -1;
	}
	struct eg_cidr *nc = realloc(r->cidrs, sizeof(*nc) * (size_t)(r->ncidrs + 1));
	if (!nc) {
		*err = "out of memory";
		return -1;
	}
	r->cidrs = nc;
	r->cidrs[r->ncidrs++] = c;
	return 0;
}

int eg_allowlist_add_host(struct eg_allowlist *al, const char *pattern, const char **err)
{
	struct eg_rule *r = current(al, err);
	char norm[256];
	int wildcard = 0;
	if (!r)
		return -1;
	const char *p = pattern;
	if (p[0] == '*') {
		if (p[1] != '.') {
			*err = "wildcards must have the form *.domain";
			return -1;
		}
		wildcard = 1;
		p += 2;
	}
	int kind = eg_http_normalize_host(p, strlen(p), norm, sizeof(norm));
	if (kind < 0) {
		*err = "invalid host name";
		return -1;
	}
	if (kind > 0) {
		if (wildcard) {
			*err = "a wildcard cannot apply to an IP address";
			return -1;
		}
		/* An IP literal among hosts is a host route: it names that address. */
		return eg_allowlist_add_cidr(al, norm, err);
	}
	size_t n = strlen(norm);
	struct host_entry *e = lookup(al, norm, n, wildcard);
	if (!e) {
		if (al->nentries + 1 > al->nbuckets && grow(al) < 0) {
			*err = "out of memory";
			return -1;
		}
		e = calloc(1, sizeof(*e) + n + 1);
		if (!e) {
			*err = "out of memory";
			return -1;
		}
		memcpy(e->name, norm, n + 1);
		e->wildcard = wildcard;
		size_t h = hash_name(norm, n, wildcard) & (al->nbuckets - 1);
		e->next = al->buckets[h];
		al->buckets[h] = e;
		al->nentries++;
	}
	if (e->nrules && e->rules[e->nrules - 1] == r->index)
		return 0; /* listed twice in one rule */
	int *nr = realloc(e->rules, sizeof(int) * (size_t)(e->nrules + 1));
	if (!nr) {
		*err = "out of memory";
		return -1;
	}
	e->rules = nr;
	e->rules[e->nrules++] = r->index;
	r->nhosts++;
	return 0;
}

int eg_allowlist_add_ports(struct eg_allowlist *al, const char *spec, const char **err)
{
	struct eg_rule *r = current(al, err);
	unsigned long lo, hi;
	char *end;
	if (!r)
		return -1;
	if (!isdigit((unsigned char)spec[0])) /* strtoul would skip blanks and take a sign */
		goto bad;
	lo = strtoul(spec, &end, 10);
	hi = lo;
	if (*end == '-') {
		const char *s2 = end + 1;
		if (!isdigit((unsigned char)*s2))
			goto bad;
		hi = strtoul(s2, &end, 10);
	}
	if (*end != '\0' || lo < 1 || hi > 65535 || lo > hi)
		goto bad;
	struct eg_port_range *np = realloc(r->ports, sizeof(*np) * (size_t)(r->nports + 1));
	if (!np) {
		*err = "out of memory";
		return -1;
	}
	r->ports = np;
	r->ports[r->nports++] = (struct eg_port_range){ (uint16_t)lo, (uint16_t)hi };
	return 0;
bad:
	*err = "invalid port (expected 1-65535 or \"lo-hi\")";
	return -1;
}

int eg_allowlist_end_rule(struct eg_allowlist *al, const char **err)
{
	struct eg_rule *r = current(al, err);
	if (!r)
		return -1;
	if (!r->nports) {
		*err = "rule has no ports (an empty list does not mean all ports)";
		return -1;
	}
	if (!r->nhosts && !r->ncidrs) {
		*err = "rule names no hosts and no cidrs";
		return -1;
	}
	if (!r->nhosts)
		al->has_cidr_only = 1;
	return 0;
}

static int port_ok(const struct eg_rule *r, uint16_t port)
{
	for (int i = 0; i < r->nports; i++)
		if (port >= r->ports[i].lo && port <= r->ports[i].hi)
			return 1;
	return 0;
}

static int rule_names_addr(const struct eg_rule *r, const struct sockaddr *sa)
{
	for (int i = 0; i < r->ncidrs; i++)
		if (eg_cidr_contains(&r->cidrs[i], sa))
			return 1;
	return 0;
}

/* First rule (configuration order) among an entry's rules that allows the port (*best), and the
 * first that names the host at all (*named: the rule a port refusal is logged with). */
static void consider(const struct eg_allowlist *al, const struct host_entry *e, uint16_t port, int *best, int *named)
{
	if (!e)
		return;
	for (int i = 0; i < e->nrules; i++) {
		int idx = e->rules[i];
		if (idx < *named)
			*named = idx;
		if (idx < *best && port_ok(&al->rules[idx], port))
			*best = idx;
	}
}

static int literal_to_sockaddr(const char *host, int kind, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (kind == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	s6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1 ? 0 : -1;
}

enum eg_allow_result eg_allowlist_match_name(const struct eg_allowlist *al, const char *host, int host_is_ip,
					     uint16_t port, const struct eg_rule **rule)
{
	*rule = NULL;
	if (host_is_ip) {
		struct sockaddr_storage ss;
		const struct eg_rule *named = NULL;
		if (literal_to_sockaddr(host, host_is_ip, &ss) < 0)
			return EG_DENY_HOST;
		for (int i = 0; i < al->nrules; i++) {
			if (!rule_names_addr(&al->rules[i], (struct sockaddr *)&ss))
				continue;
			if (port_ok(&al->rules[i], port)) {
				*rule = &al->rules[i];
				return EG_ALLOW_MATCH;
			}
			if (!named)
				named = &al->rules[i];
		}
		*rule = named;
		return named ? EG_DENY_PORT : EG_DENY_HOST;
	}
	int best = al->nrules, named = al->nrules;
	size_t n = strlen(host);
	consider(al, lookup(al, host, n, 0), port, &best, &named);
	/* "*.example.com" matches every name strictly below example.com. */
	for (const char *d = memchr(host, '.', n); d; d = memchr(d + 1, '.', n - (size_t)(d + 1 - host)))
		consider(al, lookup(al, d + 1, n - (size_t)(d + 1 - host), 1), port, &best, &named);
	if (best < al->nrules) {
		*rule = &al->rules[best];
		return EG_ALLOW_MATCH;
	}
	if (al->has_cidr_only) {
		for (int i = 0; i < al->nrules; i++)
			if (!al->rules[i].nhosts && port_ok(&al->rules[i], port))
				return EG_ALLOW_DEFER;
	}
	if (named < al->nrules) {
		*rule = &al->rules[named];
		return EG_DENY_PORT;
	}
	return EG_DENY_HOST;
}

int eg_allowlist_check_addr(const struct eg_allowlist *al, const struct eg_rule *rule,
			    const struct sockaddr *sa, uint16_t port, const struct eg_rule **out, const char **why)
{
	if (rule) {
		const char *cls = eg_addr_internal_class(sa);
		if (cls && !rule_names_addr(rule, sa)) {
			*why = cls;
			return -1;
		}
		*out = rule;
		return 0;
	}
	for (int i = 0; i < al->nrules; i++) {
		const struct eg_rule *r = &al->rules[i];
		if (!r->nhosts && port_ok(r, port) && rule_names_addr(r, sa)) {
			*out = r;
			return 0;
		}
	}
	*why = "not in any allowed CIDR";
	return -1;
}

/* ::ffff:0:0/96, the IPv4-mapped IPv6 addresses */
static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int eg_cidr_parse(const char *spec, struct eg_cidr *out)
{
	char buf[64];
	const char *slash = strchr(spec, '/');
	size_t al = slash ? (size_t)(slash - spec) : strlen(spec);
	if (al == 0 || al >= sizeof(buf))
		return -1;
	memcpy(buf, spec, al);
	buf[al] = '\0';
	memset(out, 0, sizeof(*out));
	int maxp;
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		maxp = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		maxp = 128;
	} else {
		return -1;
	}
	out->prefix = maxp;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (!isdigit((unsigned char)slash[1]) || *end || p < 0 || p > maxp)
			return -1;
		out->prefix = (int)p;
	}
	/* clear host bits so "10.1.2.3/8" means 10.0.0.0/8 */
	int bytes = maxp / 8;
	for (int i = 0; i < bytes; i++) {
		int bit0 = i * 8;
		if (bit0 >= out->prefix)
			out->addr[i] = 0;
		else if (bit0 + 8 > out->prefix)
			out->addr[i] &= (uint8_t)(0xff << (8 - (out->prefix - bit0)));
	}
	/* "::ffff:10.0.0.0/104" is 10.0.0.0/8: addresses are compared as the IPv4 they carry */
	if (out->family == AF_INET6 && out->prefix >= 96 && memcmp(out->addr, v4_mapped, 12) == 0) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return 0;
}

static int prefix_match(const uint8_t *a, const uint8_t *b, int prefix)
{
	int full = prefix / 8, rem = prefix % 8;
	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rem) {
		uint8_t m = (uint8_t)(0xff << (8 - rem));
		if ((a[full] & m) != (b[full] & m))
			return 0;
	}
	return 1;
}

/* Address bytes of sa; v4-mapped IPv6 is treated as the IPv4 address it carries. */
static int addr_bytes(const struct sockaddr *sa, const uint8_t **bytes)
{
	if (sa->sa_family == AF_INET) {
		*bytes = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (memcmp(b, v4_mapped, 12) == 0) {
			*bytes = b + 12;
			return AF_INET;
		}
		*bytes = b;
		return AF_INET6;
	}
	return -1;
}

int eg_cidr_contains(const struct eg_cidr *c, const struct sockaddr *sa)
{
	const uint8_t *b = NULL;
	int fam = addr_bytes(sa, &b);
	return fam == c->family && prefix_match(b, c->addr, c->prefix);
}

const char *eg_addr_internal_class(const struct sockaddr *sa)
{
	static const struct {
		int family;
		uint8_t addr[16];
		int prefix;
		const char *cls;
	} table[] = {
		{ AF_INET, { 169, 254, 169, 254 }, 32, "metadata" },
		{ AF_INET, { 100, 100, 100, 200 }, 32, "metadata" }, /* Alibaba Cloud */
		{ AF_INET, { 0 }, 8, "unspecified" },
		{ AF_INET, { 10 }, 8, "private" },
		{ AF_INET, { 100, 64 }, 10, "shared" },
		{ AF_INET, { 127 }, 8, "loopback" },
		{ AF_INET, { 169, 254 }, 16, "link-local" },
		{ AF_INET, { 172, 16 }, 12, "private" },
		{ AF_INET, { 192, 0, 0 }, 24, "reserved" },
		{ AF_INET, { 192, 168 }, 16, "private" },
		{ AF_INET, { 198, 18 }, 15, "reserved" },
		{ AF_INET, { 224 }, 4, "multicast" },
		{ AF_INET, { 240 }, 4, "reserved" },
		{ AF_INET6, { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54 }, 128, "metadata" }, /* AWS fd00:ec2::254 */
		{ AF_INET6, { 0 }, 128, "unspecified" },
		{ AF_INET6, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128, "loopback" },
		{ AF_INET6, { 0 }, 96, "reserved" }, /* IPv4-compatible (deprecated) */
		{ AF_INET6, { 0, 0x64, 0xff, 0x9b }, 96, "reserved" }, /* NAT64: reaches arbitrary IPv4 */
		{ AF_INET6, { 0x20, 0x02 }, 16, "reserved" },          /* 6to4: likewise */
		{ AF_INET6, { 0xfc }, 7, "private" },
		{ AF_INET6, { 0xfe, 0x80 }, 10, "link-local" },
		{ AF_INET6, { 0xfe, 0xc0 }, 10, "private" }, /* site-local (deprecated) */
		{ AF_INET6, { 0xff }, 8, "multicast" },
	};
	const uint8_t *b = NULL;
	int fam = addr_bytes(sa, &b);
	if (fam < 0)
		return "reserved";
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].family == fam && prefix_match(b, table[i].addr, table[i].prefix))
			return table[i].cls;
	return NULL;
}
