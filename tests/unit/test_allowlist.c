/* test_allowlist.c: unit tests of the compiled destination allowlist and the address classes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "allowlist.h"

/* A rule as data: NULL-terminated lists. */
struct rule_spec {
	const char *name;
	const char *hosts[8];
	const char *ports[8];
	const char *cidrs[8];
};

static struct eg_allowlist *build(const struct rule_spec *rules, int n)
{
	struct eg_allowlist *al = eg_allowlist_new();
	const char *err = NULL;
	assert_non_null(al);
	for (int i = 0; i < n; i++) {
		const struct rule_spec *r = &rules[i];
		if (eg_allowlist_add_rule(al, r->name, &err) < 0)
			fail_msg("rule %s: %s", r->name, err);
		for (int k = 0; r->hosts[k]; k++)
			if (eg_allowlist_add_host(al, r->hosts[k], &err) < 0)
				fail_msg("rule %s host %s: %s", r->name, r->hosts[k], err);
		for (int k = 0; r->cidrs[k]; k++)
			if (eg_allowlist_add_cidr(al, r->cidrs[k], &err) < 0)
				fail_msg("rule %s cidr %s: %s", r->name, r->cidrs[k], err);
		for (int k = 0; r->ports[k]; k++)
			if (eg_allowlist_add_ports(al, r->ports[k], &err) < 0)
				fail_msg("rule %s ports %s: %s", r->name, r->ports[k], err);
		if (eg_allowlist_end_rule(al, &err) < 0)
			fail_msg("rule %s: %s", r->name, err);
	}
	assert_int_equal(eg_allowlist_count(al), n);
	return al;
}

/* Match a name and check the result (and the rule's name on a match). */
static void expect_name(const struct eg_allowlist *al, const char *host, int is_ip, uint16_t port,
			enum eg_allow_result want, const char *rule_name)
{
	const struct eg_rule *r = (const struct eg_rule *)1;
	enum eg_allow_result got = eg_allowlist_match_name(al, host, is_ip, port, &r);
	if (got != want)
		fail_msg("%s:%u: got %d, want %d", host, port, (int)got, (int)want);
	if (want == EG_ALLOW_MATCH || want == EG_DENY_PORT) {  /* DENY_PORT: the rule naming the host */
		assert_non_null(r);
		if (strcmp(r->name, rule_name) != 0)
			fail_msg("%s:%u: matched rule %s, want %s", host, port, r->name, rule_name);
	} else {
		assert_null(r);
	}
}

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
			fail_msg("bad test address %s", text);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
			fail_msg("bad test address %s", text);
	}
	return ss;
}

static const struct rule_spec BASIC[] = {
	{ "exact", { "example.com", NULL }, { "443", NULL }, { NULL } },
	{ "wild", { "*.example.org", NULL }, { "443", "8000-8100", NULL }, { NULL } },
	{ "multi", { "a.example.net", "B.Example.NET.", NULL }, { "80", "443", NULL }, { NULL } },
};

static void test_exact_host(void **state)
{
	(void)state;
	struct eg_allowlist *al = build(BASIC, 3);
	expect_name(al, "example.com", 0, 443, EG_ALLOW_MATCH, "exact");
	expect_name(al, "www.example.com", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "example.co", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "xexample.com", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "example.com.evil", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "a.example.net", 0, 80, EG_ALLOW_MATCH, "multi");
	expect_name(al, "b.example.net", 0, 443, EG_ALLOW_MATCH, "multi"); /* normalised when added */
	expect_name(al, "c.example.net", 0, 443, EG_DENY_HOST, NULL);
	eg_allowlist_free(al);
}

static void test_wildcard(void **state)
{
	(void)state;
	struct eg_allowlist *al = build(BASIC, 3);
	expect_name(al, "sub.example.org", 0, 443, EG_ALLOW_MATCH, "wild");
	expect_name(al, "a.b.example.org", 0, 443, EG_ALLOW_MATCH, "wild");
	expect_name(al, "x.y.z.example.org", 0, 443, EG_ALLOW_MATCH, "wild");
	expect_name(al, "example.org", 0, 443, EG_DENY_HOST, NULL); /* not the domain itself */
	expect_name(al, "notexample.org", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "sub.example.org.evil.com", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "org", 0, 443, EG_DENY_HOST, NULL);
	eg_allowlist_free(al);
}

static void test_ports(void **state)
{
	(void)state;
	struct eg_allowlist *al = build(BASIC, 3);
	expect_name(al, "sub.example.org", 0, 8000, EG_ALLOW_MATCH, "wild");
	expect_name(al, "sub.example.org", 0, 8050, EG_ALLOW_MATCH, "wild");
	expect_name(al, "sub.example.org", 0, 8100, EG_ALLOW_MATCH, "wild");
	expect_name(al, "sub.example.org", 0, 7999, EG_DENY_PORT, "wild");
	expect_name(al, "sub.example.org", 0, 8101, EG_DENY_PORT, "wild");
	expect_name(al, "sub.example.org", 0, 80, EG_DENY_PORT, "wild");
	expect_name(al, "example.com", 0, 80, EG_DENY_PORT, "exact");
	expect_name(al, "example.com", 0, 442, EG_DENY_PORT, "exact");
	expect_name(al, "example.com", 0, 444, EG_DENY_PORT, "exact");
	/* DENY_PORT only when the host is named; otherwise DENY_HOST whatever the port */
	expect_name(al, "unknown.example", 0, 80, EG_DENY_HOST, NULL);
	expect_name(al, "unknown.example", 0, 443, EG_DENY_HOST, NULL);
	eg_allowlist_free(al);

	static const struct rule_spec all[] = { { "all", { "x.test", NULL }, { "1-65535", NULL }, { NULL } } };
	al = build(all, 1);
	expect_name(al, "x.test", 0, 1, EG_ALLOW_MATCH, "all");
	expect_name(al, "x.test", 0, 65535, EG_ALLOW_MATCH, "all");
	eg_allowlist_free(al);
}

static void test_bad_port_specs(void **state)
{
	(void)state;
	static const char *const bad[] = { "0", "65536", "abc", "", "10-5", "443-", "-443", "1-65536", "0-10",
					   "443x", "443-444x", "80,443", "4294967297", " 443", "+443",
					   "80-+90", "80- 90", "0x50", NULL };
	struct eg_allowlist *al = eg_allowlist_new();
	const char *err = NULL;
	assert_int_equal(eg_allowlist_add_rule(al, "r", &err), 0);
	for (int i = 0; bad[i]; i++) {
		err = NULL;
		if (eg_allowlist_add_ports(al, bad[i], &err) == 0)
			fail_msg("port spec '%s' accepted", bad[i]);
		assert_non_null(err);
	}
	assert_int_equal(eg_allowlist_add_ports(al, "443", &err), 0);
	assert_int_equal(eg_allowlist_add_ports(al, "8000-8000", &err), 0);
	eg_allowlist_free(al);
}

static void test_first_rule_wins(void **state)
{
	(void)state;
	static const struct rule_spec r1[] = {
		{ "broad", { "*.example.net", NULL }, { "443", NULL }, { NULL } },
		{ "narrow", { "api.example.net", NULL }, { "443", "8443", NULL }, { NULL } },
		{ "again", { "api.example.net", NULL }, { "443", NULL }, { NULL } },
	};
	struct eg_allowlist *al = build(r1, 3);
	expect_name(al, "api.example.net", 0, 443, EG_ALLOW_MATCH, "broad");
	/* the first rule that allows the port */
	expect_name(al, "api.example.net", 0, 8443, EG_ALLOW_MATCH, "narrow");
	expect_name(al, "www.example.net", 0, 8443, EG_DENY_PORT, "broad");
	eg_allowlist_free(al);

	static const struct rule_spec r2[] = {
		{ "narrow", { "api.example.net", NULL }, { "443", NULL }, { NULL } },
		{ "broad", { "*.example.net", NULL }, { "443", NULL }, { NULL } },
	};
	al = build(r2, 2);
	expect_name(al, "api.example.net", 0, 443, EG_ALLOW_MATCH, "narrow");
	expect_name(al, "www.example.net", 0, 443, EG_ALLOW_MATCH, "broad");
	eg_allowlist_free(al);

	/* nested wildcards: the earlier rule wins, whichever suffix it names */
	static const struct rule_spec r3[] = {
		{ "deep", { "*.b.example.net", NULL }, { "443", NULL }, { NULL } },
		{ "shallow", { "*.example.net", NULL }, { "443", NULL }, { NULL } },
	};
	al = build(r3, 2);
	expect_name(al, "a.b.example.net", 0, 443, EG_ALLOW_MATCH, "deep");
	expect_name(al, "b.example.net", 0, 443, EG_ALLOW_MATCH, "shallow");
	eg_allowlist_free(al);
}

static void test_rule_validation(void **state)
{
	(void)state;
	struct eg_allowlist *al = eg_allowlist_new();
	const char *err = NULL;
	/* nothing before a rule is started */
	assert_int_equal(eg_allowlist_add_host(al, "example.com", &err), -1);
	assert_non_null(err);
	assert_int_equal(eg_allowlist_add_ports(al, "443", &err), -1);
	assert_int_equal(eg_allowlist_add_cidr(al, "10.0.0.0/8", &err), -1);
	assert_int_equal(eg_allowlist_end_rule(al, &err), -1);

	/* no ports */
	assert_int_equal(eg_allowlist_add_rule(al, "noports", &err), 0);
	assert_int_equal(eg_allowlist_add_host(al, "example.com", &err), 0);
	err = NULL;
	assert_int_equal(eg_allowlist_end_rule(al, &err), -1);
	assert_non_null(strstr(err, "no ports"));
	/* no hosts and no cidrs */
	assert_int_equal(eg_allowlist_add_rule(al, "empty", &err), 0);
	assert_int_equal(eg_allowlist_add_ports(al, "443", &err), 0);
	err = NULL;
	assert_int_equal(eg_allowlist_end_rule(al, &err), -1);
	assert_non_null(err);

	static const char *const bad_hosts[] = { "*example.com", "*.", "*", "a..b", "exa mple.com", "*.*.example.com",
						 "example.com:443", "http://example.com", "*.10.0.0.1", "1.2.3", "", NULL };
	assert_int_equal(eg_allowlist_add_rule(al, "hosts", &err), 0);
	for (int i = 0; bad_hosts[i]; i++) {
		err = NULL;
		if (eg_allowlist_add_host(al, bad_hosts[i], &err) == 0)
			fail_msg("host pattern '%s' accepted", bad_hosts[i]);
		assert_non_null(err);
	}
	eg_allowlist_free(al);
}

static void test_ip_literals(void **state)
{
	(void)state;
	static const struct rule_spec rules[] = {
		{ "lit", { "192.0.2.10", "[2001:db8::10]", NULL }, { "443", NULL }, { NULL } },
		{ "net", { "named.example", NULL }, { "8443", NULL }, { "198.51.100.0/24", "2001:db8:1::/48", NULL } },
	};
	struct eg_allowlist *al = build(rules, 2);
	/* host literal */
	expect_name(al, "192.0.2.10", 4, 443, EG_ALLOW_MATCH, "lit");
	expect_name(al, "192.0.2.10", 4, 80, EG_DENY_PORT, "lit");
	expect_name(al, "192.0.2.11", 4, 443, EG_DENY_HOST, NULL);
	expect_name(al, "2001:db8::10", 6, 443, EG_ALLOW_MATCH, "lit");
	/* via cidrs */
	expect_name(al, "198.51.100.7", 4, 8443, EG_ALLOW_MATCH, "net");
	expect_name(al, "198.51.100.255", 4, 8443, EG_ALLOW_MATCH, "net");
	expect_name(al, "198.51.101.1", 4, 8443, EG_DENY_HOST, NULL);
	expect_name(al, "198.51.100.7", 4, 443, EG_DENY_PORT, "net");
	expect_name(al, "2001:db8:1:ffff::1", 6, 8443, EG_ALLOW_MATCH, "net");
	expect_name(al, "2001:db8:2::1", 6, 8443, EG_DENY_HOST, NULL);
	/* a v4-mapped literal is the IPv4 address */
	expect_name(al, "::ffff:198.51.100.7", 6, 8443, EG_ALLOW_MATCH, "net");
	/* names do not match CIDRs before resolution; rule "lit" holds no names, so it acts as a
	 * CIDR-only rule: a name on its port is deferred to the resolved-address check */
	expect_name(al, "other.example", 0, 443, EG_ALLOW_DEFER, NULL);
	expect_name(al, "other.example", 0, 8443, EG_DENY_HOST, NULL);
	/* garbage literal */
	expect_name(al, "not-an-ip", 4, 443, EG_DENY_HOST, NULL);
	eg_allowlist_free(al);
}

static void test_cidr_only_defer(void **state)
{
	(void)state;
	static const struct rule_spec rules[] = {
		{ "named", { "www.example.com", NULL }, { "443", NULL }, { NULL } },
		{ "lab", { NULL }, { "443", "8443", NULL }, { "192.0.2.0/24", "2001:db8::/32", NULL } },
	};
	struct eg_allowlist *al = build(rules, 2);
	const struct eg_rule *rule = NULL, *out = NULL;
	const char *why = NULL;
	/* a name rule wins before resolution */
	expect_name(al, "www.example.com", 0, 443, EG_ALLOW_MATCH, "named");
	/* any other name on a CIDR-only rule's port is deferred to the address check */
	expect_name(al, "host.lab.example", 0, 443, EG_ALLOW_DEFER, NULL);
	expect_name(al, "www.example.com", 0, 8443, EG_ALLOW_DEFER, NULL);
	expect_name(al, "host.lab.example", 0, 22, EG_DENY_HOST, NULL);
	assert_int_equal(eg_allowlist_match_name(al, "host.lab.example", 0, 8443, &rule), EG_ALLOW_DEFER);
	assert_null(rule);

	struct sockaddr_storage a = addr("192.0.2.77");
	assert_int_equal(eg_allowlist_check_addr(al, NULL, (struct sockaddr *)&a, 443, &out, &why), 0);
	assert_non_null(out);
	assert_string_equal(out->name, "lab");
	a = addr("2001:db8:ffff::1");
	out = NULL;
	assert_int_equal(eg_allowlist_check_addr(al, NULL, (struct sockaddr *)&a, 8443, &out, &why), 0);
	assert_string_equal(out->name, "lab");
	a = addr("203.0.113.1");
	why = NULL;
	assert_int_equal(eg_allowlist_check_addr(al, NULL, (struct sockaddr *)&a, 443, &out, &why), -1);
	assert_string_equal(why, "not in any allowed CIDR");
	/* the port is checked again against the CIDR rule */
	a = addr("192.0.2.77");
	assert_int_equal(eg_allowlist_check_addr(al, NULL, (struct sockaddr *)&a, 22, &out, &why), -1);
	/* a name rule's host does not allow addresses when deferred */
	eg_allowlist_free(al);
}

static void test_internal_refused(void **state)
{
	(void)state;
	static const struct rule_spec rules[] = {
		{ "public", { "www.example.com", NULL }, { "443", NULL }, { NULL } },
		{ "local", { "intranet.example", NULL }, { "443", NULL }, { "127.0.0.0/8", "10.1.0.0/16", "::1", NULL } },
	};
	static const struct {
		const char *addr, *cls;
	} internal[] = {
		{ "127.0.0.1", "loopback" },     { "127.255.0.9", "loopback" },  { "10.0.0.1", "private" },
		{ "10.255.255.255", "private" }, { "172.16.0.1", "private" },    { "192.168.1.1", "private" },
		{ "169.254.169.254", "metadata" }, { "100.100.100.200", "metadata" }, { "169.254.1.1", "link-local" },
		{ "0.0.0.0", "unspecified" },    { "100.64.0.1", "shared" },     { "224.0.0.1", "multicast" },
		{ "255.255.255.255", "reserved" }, { "198.18.0.1", "reserved" }, { "192.0.0.8", "reserved" },
		{ "::1", "loopback" },           { "::", "unspecified" },        { "fe80::1", "link-local" },
		{ "fc00::1", "private" },        { "fd12:3456::1", "private" },
		{ "ff02::1", "multicast" },      { "::ffff:127.0.0.1", "loopback" }, { "::ffff:169.254.169.254", "metadata" },
		{ "::ffff:10.0.0.1", "private" }, { "::127.0.0.1", "reserved" }, { "64:ff9b::7f00:1", "reserved" },
		{ "2002:7f00:1::1", "reserved" }, { "fec0::1", "private" },
	};
	static const char *const external[] = { "93.184.216.34", "8.8.8.8", "172.15.255.255", "172.32.0.1",
						"100.63.255.255", "100.128.0.1", "192.0.2.1", "2606:4700::1111",
						"2001:db8::1", "::ffff:93.184.216.34", NULL };
	struct eg_allowlist *al = build(rules, 2);
	const struct eg_rule *pub = NULL, *loc = NULL, *out = NULL;
	const char *why = NULL;
	assert_int_equal(eg_allowlist_match_name(al, "www.example.com", 0, 443, &pub), EG_ALLOW_MATCH);
	assert_int_equal(eg_allowlist_match_name(al, "intranet.example", 0, 443, &loc), EG_ALLOW_MATCH);

	for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++) {
		struct sockaddr_storage a = addr(internal[i].addr);
		const char *cls = eg_addr_internal_class((struct sockaddr *)&a);
		if (!cls || strcmp(cls, internal[i].cls) != 0)
			fail_msg("%s: class %s, want %s", internal[i].addr, cls ? cls : "(none)", internal[i].cls);
		why = NULL;
		if (eg_allowlist_check_addr(al, pub, (struct sockaddr *)&a, 443, &out, &why) != -1)
			fail_msg("%s allowed for a rule that does not name it", internal[i].addr);
		assert_string_equal(why, internal[i].cls);
	}
	for (int i = 0; external[i]; i++) {
		struct sockaddr_storage a = addr(external[i]);
		if (eg_addr_internal_class((struct sockaddr *)&a))
			fail_msg("%s classed as internal", external[i]);
		out = NULL;
		assert_int_equal(eg_allowlist_check_addr(al, pub, (struct sockaddr *)&a, 443, &out, &why), 0);
		assert_ptr_equal(out, pub);
	}
	/* unless the rule's cidrs name the address */
	static const char *const named[] = { "127.0.0.1", "127.8.8.8", "10.1.2.3", "::1", "::ffff:127.0.0.1", NULL };
	for (int i = 0; named[i]; i++) {
		struct sockaddr_storage a = addr(named[i]);
		out = NULL;
		if (eg_allowlist_check_addr(al, loc, (struct sockaddr *)&a, 443, &out, &why) != 0)
			fail_msg("%s refused for a rule that names it", named[i]);
		assert_ptr_equal(out, loc);
	}
	/* ... and only those */
	static const char *const unnamed[] = { "10.2.0.1", "169.254.169.254", "192.168.0.1", "fe80::1", "::2", NULL };
	for (int i = 0; unnamed[i]; i++) {
		struct sockaddr_storage a = addr(unnamed[i]);
		if (eg_allowlist_check_addr(al, loc, (struct sockaddr *)&a, 443, &out, &why) != -1)
			fail_msg("%s allowed", unnamed[i]);
	}
	/* an address family that is not IP is never reachable */
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	assert_string_equal(eg_addr_internal_class((struct sockaddr *)&un), "reserved");
	assert_int_equal(eg_allowlist_check_addr(al, pub, (struct sockaddr *)&un, 443, &out, &why), -1);
	eg_allowlist_free(al);
}

static void test_cidr_parse(void **state)
{
	(void)state;
	struct eg_cidr c;
	uint8_t want4[4];
	assert_int_equal(eg_cidr_parse("10.1.2.3/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	inet_pton(AF_INET, "10.0.0.0", want4);
	assert_memory_equal(c.addr, want4, 4); /* host bits cleared */
	assert_int_equal(eg_cidr_parse("192.168.1.255/23", &c), 0);
	inet_pton(AF_INET, "192.168.0.0", want4);
	assert_memory_equal(c.addr, want4, 4);
	assert_int_equal(eg_cidr_parse("10.0.0.1", &c), 0);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(eg_cidr_parse("0.0.0.0/0", &c), 0);
	assert_int_equal(c.prefix, 0);
	assert_int_equal(eg_cidr_parse("::1", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	assert_int_equal(eg_cidr_parse("2001:db8:ffff::1/33", &c), 0);
	uint8_t want6[16];
	inet_pton(AF_INET6, "2001:db8:8000::", want6);
	assert_memory_equal(c.addr, want6, 16);
	assert_int_equal(eg_cidr_parse("::/0", &c), 0);
	assert_int_equal(eg_cidr_parse("10.0.0.0/32", &c), 0);
	assert_int_equal(eg_cidr_parse("::/128", &c), 0);

	static const char *const bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8x",
					   "10.0.0.0/8/8", "1.2.3/8", "10.0.0.256/8", "a.b.c.d", "example.com", "[::1]",
					   "::1/", "fe80::1%eth0", "010.0.0.0/8",
					   "0000000000000000000000000000000000000000000000000000000000000000000000.1/8", NULL };
	for (int i = 0; bad[i]; i++)
		if (eg_cidr_parse(bad[i], &c) == 0)
			fail_msg("CIDR '%s' accepted", bad[i]);
}

static void test_cidr_contains(void **state)
{
	(void)state;
	struct eg_cidr c;
	struct sockaddr_storage a;
	assert_int_equal(eg_cidr_parse("10.0.0.0/8", &c), 0);
	a = addr("10.255.255.255");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("11.0.0.0");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("9.255.255.255");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("::ffff:10.1.1.1"); /* v4-mapped counts as IPv4 */
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("::a01:101"); /* IPv4-compatible does not */
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));

	assert_int_equal(eg_cidr_parse("192.168.0.0/23", &c), 0);
	a = addr("192.168.1.255");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("192.168.2.0");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));

	assert_int_equal(eg_cidr_parse("0.0.0.0/0", &c), 0);
	a = addr("203.0.113.9");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("2001:db8::1");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));

	assert_int_equal(eg_cidr_parse("2001:db8::/32", &c), 0);
	a = addr("2001:db8:ffff:ffff::1");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("2001:db9::1");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("32.1.13.184");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));

	assert_int_equal(eg_cidr_parse("fe80::/10", &c), 0);
	a = addr("febf::1");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("fec0::1");
	assert_false(eg_cidr_contains(&c, (struct sockaddr *)&a));
}

/* A v4-mapped CIDR ("::ffff:10.0.0.0/104") is the IPv4 CIDR it spells: addresses are compared
 * as IPv4 once mapped, so it contains both spellings of its addresses. */
static void test_v4_mapped_cidr(void **state)
{
	(void)state;
	struct eg_cidr c;
	struct sockaddr_storage a;
	assert_int_equal(eg_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	a = addr("::ffff:10.1.2.3");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
	a = addr("10.1.2.3");
	assert_true(eg_cidr_contains(&c, (struct sockaddr *)&a));
}

/* The AWS IPv6 metadata endpoint is fd00:ec2::254 (not ::54); both are refused by default
 * (fc00::/7), but the class in the log must name the endpoint right. */
static void test_aws_v6_metadata_class(void **state)
{
	(void)state;
	struct sockaddr_storage a = addr("fd00:ec2::254");
	const char *cls = eg_addr_internal_class((struct sockaddr *)&a);
	assert_non_null(cls);
	assert_string_equal(cls, "metadata");
	a = addr("fd00:ec2::54");
	assert_string_equal(eg_addr_internal_class((struct sockaddr *)&a), "private");
}

static void test_many_hosts(void **state)
{
	(void)state;
	struct eg_allowlist *al = eg_allowlist_new();
	const char *err = NULL;
	char name[64];
	assert_int_equal(eg_allowlist_add_rule(al, "big", &err), 0);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), i % 2 ? "*.d%d.example" : "h%d.example", i);
		assert_int_equal(eg_allowlist_add_host(al, name, &err), 0);
	}
	/* listed twice in one rule is harmless */
	assert_int_equal(eg_allowlist_add_host(al, "h0.example", &err), 0);
	assert_int_equal(eg_allowlist_add_ports(al, "443", &err), 0);
	assert_int_equal(eg_allowlist_end_rule(al, &err), 0);
	assert_int_equal(eg_allowlist_add_rule(al, "second", &err), 0);
	assert_int_equal(eg_allowlist_add_host(al, "h0.example", &err), 0);
	assert_int_equal(eg_allowlist_add_ports(al, "80", &err), 0);
	assert_int_equal(eg_allowlist_end_rule(al, &err), 0);
	for (int i = 0; i < 2000; i++) {
		if (i % 2)
			snprintf(name, sizeof(name), "www.d%d.example", i);
		else
			snprintf(name, sizeof(name), "h%d.example", i);
		expect_name(al, name, 0, 443, EG_ALLOW_MATCH, "big");
	}
	expect_name(al, "d1.example", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "h1.example", 0, 443, EG_DENY_HOST, NULL);
	expect_name(al, "h0.example", 0, 80, EG_ALLOW_MATCH, "second");
	expect_name(al, "h2.example", 0, 80, EG_DENY_PORT, "big");
	eg_allowlist_free(al);
	eg_allowlist_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_host),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_bad_port_specs),
		cmocka_unit_test(test_first_rule_wins),
		cmocka_unit_test(test_rule_validation),
		cmocka_unit_test(test_ip_literals),
		cmocka_unit_test(test_cidr_only_defer),
		cmocka_unit_test(test_internal_refused),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_contains),
		cmocka_unit_test(test_v4_mapped_cidr),
		cmocka_unit_test(test_aws_v6_metadata_class),
		cmocka_unit_test(test_many_hosts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
