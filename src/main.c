/*
 * main.c - ravelin's command line: run the proxy (default), check the
 * configuration (-t), run as a milter (-M), print versions (-V).
 *
 * Public: main()
 */

/* System. */
#include <link.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Library. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <libmilter/mfapi.h>
#include <libpsl.h>
#include <openssl/crypto.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <spf2/spf.h>
#include <unbound.h>

/* Project. */
#include "config.h"
#include "fmt.h"
#include "log.h"
#include "milter.h"
#include "server.h"
#include "version.h"

#define DEFAULT_CONFIG "/etc/ravelin/ravelin.conf"

/* print_error - -t and startup errors go to stderr as FILE:LINE: message. */
static void
print_error(void *arg, const char *msg)
{
	int *n = arg;
	fprintf(stderr, "%s\n", msg);
	(*n)++;
}

/* A linked library looked up by name among the loaded objects. */
struct lib_want {
	const char *name;
	char version[64];
};

/* lib_file - the name of the file a linked library was loaded from. */
static int
lib_file(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct lib_want *want = arg;
	char real[PATH_MAX];
	const char *base;

	if (!info->dlpi_name || !strstr(info->dlpi_name, want->name) ||
	    !realpath(info->dlpi_name, real))
		return 0;
	base = strrchr(real, '/');
	base = base ? base + 1 : real;
	/* The file name carries the library's own version: libopendmarc.so.2.0.3. */
	fmt_snprintf(want->version, sizeof(want->version), "%.60s", base);
	return 1;
}

/* versions - ravelin -V: ours, then each linked library's own report. */
static void
versions(void)
{
	char pcre[64] = "";
	struct lib_want dmarc = { "libopendmarc", "unknown" };
	unsigned int mmaj = 0, mmin = 0, mpl = 0;
	int smaj = 0, smin = 0, spl = 0;

	pcre2_config(PCRE2_CONFIG_VERSION, pcre);
	smfi_version(&mmaj, &mmin, &mpl);
	SPF_get_lib_version(&smaj, &smin, &spl);
	/* libopendmarc has no version call: name the file the loader picked. */
	dl_iterate_phdr(lib_file, &dmarc);
	printf("ravelin %s\n", RAVELIN_VERSION);
	printf("libevent %s\n", event_get_version());
	printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
	printf("PCRE2 %s\n", pcre);
	printf("libunbound %s\n", ub_version());
	printf("hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
	printf("libmilter %u.%u.%u\n", mmaj, mmin, mpl);
	printf("libpsl %s\n", psl_get_version());
	printf("libspf2 %d.%d.%d\n", smaj, smin, spl);
	printf("libopendmarc %s (no run-time version call)\n", dmarc.version);
}

/* usage - the synopsis. */
static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: ravelin [-c FILE] [-t | -M | -V] [-d]\n"
			"  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
			"  -t       check the configuration and rules, then exit\n"
			"  -M       run as a milter (milter_socket)\n"
			"  -V       print versions\n"
			"  -d       log to stderr, whatever the configuration says\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int test = 0, milter = 0, tostderr = 0, c, nerr = 0;

	while ((c = getopt(argc, argv, "c:tMVdh")) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 't': test = 1; break;
		case 'M': milter = 1; break;
		case 'V': versions(); return 0;
		case 'd': tostderr = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("ravelin", LOG_DEST_STDERR, 0);
	struct config *cf = config_load(path, print_error, &nerr);
	if (cf && server_build(cf, print_error, &nerr) < 0)
		cf = config_unref(cf);
	if (!cf) {
		if (!nerr)
			fprintf(stderr, "%s: cannot load\n", path);
		return 1;
	}
	if (test) {
		printf("%s: ok (%zu listen, %zu backend, %zu rule files)\n", path, cf->nlistens,
		       cf->nbackends, cf->nrule_files);
		config_unref(cf);
		return 0;
	}
	log_init("ravelin", tostderr ? LOG_DEST_STDERR : cf->log, cf->log_verbose);
	if (milter)
		return milter_run(path, cf);
	if (!cf->nlistens || !cf->nbackends) {
		fprintf(stderr, "%s: need at least one listen and one backend line\n", path);
		config_unref(cf);
		return 1;
	}
	return server_run(path, cf);
}
