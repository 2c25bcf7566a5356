/*
 * fuzz_config.c - libFuzzer target for the configuration parser.
 *
 * Writes the input to a file in a private temporary directory (which also
 * holds a small include file and two list files the input may name) and
 * runs config_load() on it. Checked: every error is reported as
 * "FILE:LINE: message" or "FILE: message" with FILE one of our files and
 * LINE within the file; a configuration that loads has the values the
 * rest of ravelin relies on (timeouts, listeners with addresses, a
 * hostname); errors and success exclude each other.
 *
 * Inputs naming device, proc, sys or run paths are skipped: include and
 * @FILE would open them (a FIFO or /dev/stdin would block the fuzzer).
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_config
 *   build-fuzz/fuzz_config tests/fuzz/corpus/config
 */

/* System. */
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Project. */
#include "config.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                               \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "fuzz_config: %s failed at line %d\n", \
				#cond, __LINE__);                                 \
			abort();                                                  \
		}                                                                 \
	} while (0)

static char dir[64];
static char conf[128];

/* put - write a file into the sandbox directory. */
static void
put(const char *name, const char *text)
{
	char path[192];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	check((fp = fopen(path, "w")) != NULL);
	fputs(text, fp);
	fclose(fp);
}

/* cleanup - remove the sandbox directory at exit. */
static void
cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_config: could not remove %s\n", dir);
}

/* LLVMFuzzerInitialize - the sandbox directory and its fixed files. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof(dir), "%s/ravelin-fuzz-config.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	check(mkdtemp(dir) != NULL);
	atexit(cleanup);
	snprintf(conf, sizeof(conf), "%s/fuzz.conf", dir);
	put("inc.conf", "max_recipients 5\nlisten 127.0.0.1:2525 inbound\n");
	put("domains", "example.org\n.example.net # sub\n192.0.2.1\n");
	put("nets", "192.0.2.0/24\n2001:db8::/32\n");
	return 0;
}

/* on_error - check the shape of one reported error. */
static void
on_error(void *arg, const char *msg)
{
	int *errors = arg;
	size_t dl = strlen(dir);

	(*errors)++;
	/* Errors name their file: one in our directory, or an absolute path
	 * the input included (an include outside dir is reported as such). */
	bool ours = strncmp(msg, dir, dl) == 0 && msg[dl] == '/';
	check(ours || msg[0] == '/');
	const char *colon = strstr(msg + (ours ? dl : 1), ": ");
	check(colon != NULL);
	/* "FILE:LINE: message" or "FILE: message". */
	const char *c = colon;
	while (c > msg && c[-1] >= '0' && c[-1] <= '9')
		c--;
	if (c < colon && c[-1] == ':')
		check(atoi(c) > 0);
	check(colon[2] != '\0');
}

/* unsafe - the input might name a file that blocks or never ends. */
static int
unsafe(const uint8_t *data, size_t size)
{
	static const char *const bad[] = { "dev", "proc", "sys", "run", "fd" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (memmem(data, size, bad[i], strlen(bad[i])))
			return 1;
	return 0;
}

/* LLVMFuzzerTestOneInput - load the input as ravelin.conf. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *fp;
	int errors = 0;

	if (unsafe(data, size))
		return 0;
	check((fp = fopen(conf, "w")) != NULL);
	check(fwrite(data, 1, size, fp) == size);
	check(fclose(fp) == 0);

	struct config *cf = config_load(conf, on_error, &errors);
	check((cf == NULL) == (errors > 0));
	if (!cf)
		return 0;
	check(cf->refs == 1 && cf->hostname && strlen(cf->hostname) <= 255);
	check(cf->client_timeout > 0 && cf->data_timeout > 0 && cf->backend_timeout > 0);
	check(cf->max_recipients > 0 && cf->workers > 0);
	for (size_t i = 0; i < cf->nlistens; i++) {
		const struct config_listen *l = &cf->listens[i];
		check(l->text && (l->addr.ss_family == AF_INET || l->addr.ss_family == AF_INET6));
		check(!((l->flags & LISTEN_STARTTLS) && (l->flags & LISTEN_TLS)));
		if (l->flags & (LISTEN_STARTTLS | LISTEN_TLS))
			check(cf->tls_certificate && cf->tls_key);
	}
	for (size_t i = 0; i < cf->nbackends; i++)
		check(cf->backends[i].text && cf->backends[i].addrlen > 0);
	check(config_ref(cf) == cf);
	config_unref(cf);
	config_unref(cf);
	return 0;
}
