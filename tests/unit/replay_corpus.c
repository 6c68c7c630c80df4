/* replay_corpus.c: run fuzz corpus files through a fuzz target without libFuzzer, so that CI
 * exercises the corpus (and the target's property checks) with any compiler. Linked with one
 * of fuzz/fuzz_*.c, which provides LLVMFuzzerTestOneInput. Arguments are files or directories
 * (their regular files, not recursive). Each file is also fed in every prefix length. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 4096, n = 0, r;
	uint8_t *buf = malloc(cap);
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", path);
		return -1;
	}
	for (size_t k = 0; k <= n; k++) {
		/* exact-size copies so that a sanitizer build catches reads past the end */
		uint8_t *copy = malloc(k ? k : 1);
		if (!copy)
			break;
		memcpy(copy, buf, k);
		LLVMFuzzerTestOneInput(copy, k);
		free(copy);
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, errors = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			errors += replay_file(argv[i]) < 0;
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL) {
			char path[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
				errors += replay_file(path) < 0;
				files++;
			}
		}
		if (d)
			closedir(d);
	}
	printf("replayed %d file(s), %d error(s)\n", files, errors);
	return errors || files == 0 ? 1 : 0;
}
