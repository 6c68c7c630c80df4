/* main.c: command line — run, check, reload, test-upstream, hash-password, version. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "build_config.h"
#include "ra.h"
#include "log.h"
#include "policy.h"
#include "server.h"

struct opts {
	const char *conf_dir;
	const char *lua_dir;
	char listen[EG_MAX_LISTEN][128];
	int nlisten;
	const char *admin;
	int workers;       /* --workers, -1 if not given */
	int worker_slot;   /* --worker K (internal: set by the master for the workers it starts) */
	int worker_shm_fd; /* --worker-shm FD (internal) */
};

static void usage(FILE *f, const char *cmd)
{
	if (!cmd || strcmp(cmd, "run") == 0)
		fprintf(f, "enrollgate run [-c DIR] [--listen ADDR:PORT]... [--admin ADDR:PORT] [--lua-dir DIR]\n"
			   "               [--workers N|auto]\n"
			   "    Run the proxy in the foreground (JSON logs on stderr). SIGHUP reloads the policy,\n"
			   "    SIGTERM drains and exits. --workers overrides enrollgate.lua's workers: forward-proxy\n"
			   "    processes sharing the listeners (--worker and --worker-shm are for those it starts).\n");
	if (!cmd || strcmp(cmd, "check") == 0)
		fprintf(f, "enrollgate check [-c DIR] [--lua-dir DIR]\n"
			   "    Load the configuration and policy exactly as a reload would (including the self-test\n"
			   "    vectors); print file:line: message and exit 1 on any error.\n");
	if (!cmd || strcmp(cmd, "reload") == 0)
		fprintf(f, "enrollgate reload [-c DIR] [--admin ADDR:PORT]\n"
			   "    Ask the running daemon to reload (POST /reload on its admin listener) and print the result.\n");
	if (!cmd || strcmp(cmd, "test-upstream") == 0)
		fprintf(f, "enrollgate test-upstream [-c DIR] [--lua-dir DIR] LABEL\n"
			   "    For each upstream CA of an EST label in est.lua (\"\" for the unlabelled one): mutual-TLS\n"
			   "    handshake with the appliance identity and GET cacerts; prints the identity, the chain with\n"
			   "    SHA-256 fingerprints, and exits 0 if at least one upstream works.\n");
	if (!cmd || strcmp(cmd, "hash-password") == 0)
		fprintf(f, "enrollgate hash-password\n"
			   "    Read a password from the first line of stdin and print its hash for est.lua's users\n"
			   "    (pbkdf2-sha256, random salt). The password itself is never stored.\n");
	if (!cmd || strcmp(cmd, "version") == 0)
		fprintf(f, "enrollgate version\n    Print the version.\n");
	if (!cmd)
		fprintf(f, "\nWithout -c: the source tree's conf/ when run from the build tree, else %s.\n",
			EG_INSTALLED_CONF_DIR);
}

/* Default directories: the source tree when this binary lives in the build tree. */
static void default_dirs(struct opts *o)
{
	static char conf[PATH_MAX], lua[PATH_MAX];
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int in_build = 0;
	if (n > 0) {
		exe[n] = '\0';
		size_t bl = strlen(EG_BINARY_DIR);
		in_build = strncmp(exe, EG_BINARY_DIR, bl) == 0 && exe[bl] == '/';
	}
	if (!o->conf_dir) {
		snprintf(conf, sizeof(conf), "%s", in_build ? EG_SOURCE_DIR "/conf" : EG_INSTALLED_CONF_DIR);
		o->conf_dir = conf;
	}
	if (!o->lua_dir) {
		const char *env = getenv("ENROLLGATE_LUA_DIR");
		snprintf(lua, sizeof(lua), "%s", env ? env : in_build ? EG_SOURCE_DIR "/lua" : EG_INSTALLED_LUA_DIR);
		o->lua_dir = lua;
	}
}

static int parse_opts(int argc, char **argv, struct opts *o, const char *cmd)
{
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout, cmd);
			exit(0);
		} else if ((strcmp(a, "-c") == 0 || strcmp(a, "--conf") == 0) && v) {
			o->conf_dir = v;
			i++;
		} else if (strcmp(a, "--lua-dir") == 0 && v) {
			o->lua_dir = v;
			i++;
		} else if (strcmp(a, "--listen") == 0 && v && strcmp(cmd, "run") == 0) {
			if (o->nlisten == EG_MAX_LISTEN) {
				fprintf(stderr, "enrollgate: at most %d --listen\n", EG_MAX_LISTEN);
				return -1;
			}
			snprintf(o->listen[o->nlisten++], sizeof(o->listen[0]), "%s", v);
			i++;
		} else if (strcmp(a, "--workers") == 0 && v && strcmp(cmd, "run") == 0) {
			if (eg_workers_parse(v, &o->workers) < 0) {
				fprintf(stderr, "enrollgate run: --workers: expected auto or 1..%d\n", EG_MAX_WORKERS);
				return -1;
			}
			i++;
		} else if (strcmp(a, "--worker") == 0 && v && strcmp(cmd, "run") == 0) {
			o->worker_slot = atoi(v);
			if (o->worker_slot < 1 || o->worker_slot >= EG_MAX_WORKERS) {
				fprintf(stderr, "enrollgate run: --worker: expected 1..%d\n", EG_MAX_WORKERS - 1);
				return -1;
			}
			i++;
		} else if (strcmp(a, "--worker-shm") == 0 && v && strcmp(cmd, "run") == 0) {
			o->worker_shm_fd = atoi(v);
			i++;
		} else if (strcmp(a, "--admin") == 0 && v && strcmp(cmd, "check") != 0) {
			o->admin = v;
			i++;
		} else {
			fprintf(stderr, "enrollgate %s: unexpected argument '%s'\n", cmd, a);
			usage(stderr, cmd);
			return -1;
		}
	}
	default_dirs(o);
	return 0;
}

static void print_load_error(const struct eg_load_error *e)
{
	fprintf(stderr, "%s:%d: %s (stage: %s)\n", e->file[0] ? e->file : "?", e->line, e->message, e->stage);
}

static int cmd_check(struct opts *o)
{
	struct eg_load_error err;
	struct eg_policy *p = eg_policy_load(o->conf_dir, o->lua_dir, NULL, &err);
	if (!p) {
		print_load_error(&err);
		return 1;
	}
	printf("%s: ok (%d allowlist rules, bundle sha256 %s)\n", o->conf_dir, eg_allowlist_count(p->allowlist), p->sha256);
	eg_policy_unref(p);
	return 0;
}

static int cmd_run(struct opts *o)
{
	struct eg_load_error err;
	struct eg_server srv;
	struct eg_policy *p = eg_policy_load(o->conf_dir, o->lua_dir, NULL, &err);
	if (!p) {
		print_load_error(&err);
		return 1;
	}
	eg_log_set_level(p->settings.log_level);
	struct eg_start start = { o->listen, o->nlisten, o->admin, o->workers, o->worker_slot, o->worker_shm_fd };
	if (o->worker_slot && o->worker_shm_fd <= 2) {
		fprintf(stderr, "enrollgate: --worker needs --worker-shm\n");
		return 2;
	}
	if (eg_server_init(&srv, p, o->conf_dir, o->lua_dir, &start) < 0) {
		eg_log_flush();
		fprintf(stderr, "enrollgate: start-up failed\n");
		return 1;
	}
	int rc = eg_server_run(&srv);
	eg_server_free(&srv);
	return rc;
}

/* POST /reload to the admin listener and relay its answer. */
static int cmd_reload(struct opts *o)
{
	char admin[128];
	if (o->admin) {
		snprintf(admin, sizeof(admin), "%s", o->admin);
	} else {
		struct eg_load_error err;
		struct eg_policy *p = eg_policy_load(o->conf_dir, o->lua_dir, NULL, &err);
		if (!p) {
			print_load_error(&err);
			fprintf(stderr, "enrollgate reload: the configuration does not load; not reloading\n");
			return 1;
		}
		snprintf(admin, sizeof(admin), "%s", p->settings.admin);
		eg_policy_unref(p);
	}
	struct sockaddr_storage ss;
	int len;
	if (eg_parse_listen_addr(admin, &ss, &len) < 0) {
		fprintf(stderr, "enrollgate reload: bad admin address '%s'\n", admin);
		return 1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { 30, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0) {
		fprintf(stderr, "enrollgate reload: cannot reach the daemon at %s: %s\n", admin, strerror(errno));
		return 1;
	}
	static const char req[] = "POST /reload HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		fprintf(stderr, "enrollgate reload: write failed\n");
		return 1;
	}
	char buf[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fd);
	int status = 0;
	sscanf(buf, "HTTP/1.%*d %d", &status);
	char *body = strstr(buf, "\r\n\r\n");
	printf("%s", body ? body + 4 : buf);
	return status == 200 ? 0 : 1;
}

/* hash-password: one line from stdin (without its line end) -> the stored form on stdout. */
static int cmd_hash_password(void)
{
	char pw[1024], out[256];
	if (!fgets(pw, sizeof(pw), stdin)) {
		fprintf(stderr, "enrollgate hash-password: no password on stdin\n");
		return 1;
	}
	pw[strcspn(pw, "\r\n")] = '\0';
	char why[512];
	const struct eg_ra_ops *ra = eg_ra_load(why, sizeof(why));
	if (!ra) {
		explicit_bzero(pw, sizeof(pw));
		fprintf(stderr, "enrollgate hash-password: %s\n", why);
		return 1;
	}
	int rc = pw[0] && ra->est_hash_password(pw, out, sizeof(out)) == 0;
	explicit_bzero(pw, sizeof(pw));
	if (!rc) {
		fprintf(stderr, "enrollgate hash-password: empty password or no randomness\n");
		return 1;
	}
	printf("%s\n", out);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof(o));
	o.workers = -1;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout, NULL);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		if (argc > 2) {
			int help = strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0;
			usage(help ? stdout : stderr, "version");
			return help ? 0 : 2;
		}
		printf("enrollgate %s (libevent %s, %s)\n", EG_VERSION, event_get_version(), "Lua 5.4");
		return 0;
	}
	if (strcmp(cmd, "hash-password") == 0) {
		if (argc > 2) {
			usage(strcmp(argv[2], "--help") == 0 ? stdout : stderr, cmd);
			return strcmp(argv[2], "--help") == 0 ? 0 : 2;
		}
		return cmd_hash_password();
	}
	if (strcmp(cmd, "test-upstream") == 0) {
		/* the label is the last argument (it may be ""); the others are the usual options */
		if (argc < 3 || strcmp(argv[argc - 1], "--help") == 0 || strcmp(argv[argc - 1], "-h") == 0) {
			usage(argc < 3 ? stderr : stdout, cmd);
			return argc < 3 ? 2 : 0;
		}
		if (parse_opts(argc - 1, argv, &o, cmd) < 0)
			return 2;
		struct eg_load_error err;
		struct eg_policy *p = eg_policy_load(o.conf_dir, o.lua_dir, NULL, &err);
		if (!p) {
			print_load_error(&err);
			return 1;
		}
		char why[512];
		const struct eg_ra_ops *ra = eg_ra_load(why, sizeof(why));
		if (!ra) {
			fprintf(stderr, "enrollgate test-upstream: %s\n", why);
			eg_policy_unref(p);
			return 1;
		}
		int rc = ra->est_test_upstream(p, argv[argc - 1], stdout);
		eg_policy_unref(p);
		return rc;
	}
	if (strcmp(cmd, "run") && strcmp(cmd, "check") && strcmp(cmd, "reload")) {
		fprintf(stderr, "enrollgate: unknown command '%s'\n\n", cmd);
		usage(stderr, NULL);
		return 2;
	}
	if (parse_opts(argc, argv, &o, cmd) < 0)
		return 2;
	if (strcmp(cmd, "check") == 0)
		return cmd_check(&o);
	if (strcmp(cmd, "reload") == 0)
		return cmd_reload(&o);
	return cmd_run(&o);
}
