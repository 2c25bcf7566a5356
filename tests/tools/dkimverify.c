/*
 * dkimverify.c - feed a message file through ravelin's DKIM verifier
 * (check_dkim.c) the way the SMTP session does (header fields one by one,
 * end of header, body in chunks, end of message) and print the outcome:
 *
 *   sig N result=R d=D s=S b=B a=ALG reason="..."
 *   best result=R d=D
 *
 * usage: dkimverify [--dns ADDR:PORT] [--timeout MS] [--keyfile FILE]
 *                   [--time UNIXTIME] [--chunk N] MESSAGE-FILE
 * Bare LF line ends in the file are turned into CRLF.
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "check_dkim.h"
#include "dns.h"

/* read_crlf - read a file, normalising line ends to CRLF. */
static char *
read_crlf(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 65536, len = 0;
	char *buf;
	int c, prev = 0;

	if (f == NULL)
		return NULL;
	buf = malloc(cap);
	while (buf != NULL && (c = getc(f)) != EOF) {
		if (len + 3 > cap) {
			char *nb = realloc(buf, cap *= 2);

			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		if (c == '\n' && prev != '\r')
			buf[len++] = '\r';
		buf[len++] = (char)c;
		prev = c;
	}
	fclose(f);
	*lenp = len;
	return buf;
}

/* feed - split header fields (with their folds) and body; feed them. */
static void
feed(struct dkimv *v, const char *msg, size_t len, size_t chunk)
{
	size_t pos = 0, start;

	/* Header: a field runs until a CRLF not followed by SP or HTAB. */
	while (pos < len) {
		if (len - pos >= 2 && msg[pos] == '\r' && msg[pos + 1] == '\n') {
			pos += 2;	/* the empty line */
			break;
		}
		start = pos;
		for (;;) {
			const char *nl = memmem(msg + pos, len - pos, "\r\n", 2);

			if (nl == NULL) {
				pos = len;
				break;
			}
			pos = (size_t)(nl - msg) + 2;
			if (pos >= len || (msg[pos] != ' ' && msg[pos] != '\t'))
				break;
		}
		{
			size_t end = pos;

			if (end - start >= 2 && msg[end - 2] == '\r' && msg[end - 1] == '\n')
				end -= 2;
			dkimv_header(v, msg + start, end - start);
		}
	}
	if (!dkimv_eoh(v))
		return;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;

		dkimv_body(v, (const unsigned char *)msg + pos, n);
		pos += n;
	}
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *keyfile = NULL, *path = NULL, *bestd;
	unsigned timeout = 2000;
	long long now = 0;
	size_t chunk = 4096, len, i;
	struct dns *dns = NULL;
	struct dkimv_lib *lib;
	struct dkimv *v;
	char err[256], *msg;
	enum dkimv_result best;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--dns") == 0 && a + 1 < argc)
			server = argv[++a];
		else if (strcmp(argv[a], "--timeout") == 0 && a + 1 < argc)
			timeout = (unsigned)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--keyfile") == 0 && a + 1 < argc)
			keyfile = argv[++a];
		else if (strcmp(argv[a], "--time") == 0 && a + 1 < argc)
			now = strtoll(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--chunk") == 0 && a + 1 < argc)
			chunk = strtoul(argv[++a], NULL, 10);
		else if (argv[a][0] != '-' && path == NULL)
			path = argv[a];
		else {
			fprintf(stderr, "usage: dkimverify [--dns ADDR:PORT] [--timeout MS] "
					"[--keyfile FILE] [--time T] [--chunk N] FILE\n");
			return 2;
		}
	}
	if (path == NULL || chunk == 0 || (server == NULL && keyfile == NULL)) {
		fprintf(stderr, "dkimverify: need a file and --dns or --keyfile\n");
		return 2;
	}
	if ((msg = read_crlf(path, &len)) == NULL) {
		perror(path);
		return 2;
	}
	if (keyfile == NULL && (dns = dns_new(server, timeout, err, sizeof err)) == NULL) {
		fprintf(stderr, "dkimverify: dns: %s\n", err);
		return 2;
	}
	if ((lib = dkimv_lib_new(dns, keyfile, err, sizeof err)) == NULL) {
		fprintf(stderr, "dkimverify: %s\n", err);
		return 2;
	}
	if (now != 0)
		dkimv_lib_set_time(lib, now);
	if ((v = dkimv_new(lib, "dkimverify")) == NULL) {
		fprintf(stderr, "dkimverify: dkimv_new failed\n");
		return 2;
	}
	feed(v, msg, len, chunk);
	dkimv_eom(v);
	for (i = 0; i < dkimv_nsigs(v); i++) {
		const struct dkimv_sig *s = dkimv_sig(v, i);

		printf("sig %zu result=%s d=%s s=%s b=%s a=%s reason=\"%s\"\n", i,
		       dkimv_result_str(s->result), s->domain, s->selector, s->b, s->algorithm,
		       s->reason);
	}
	best = dkimv_best(v, &bestd);
	printf("best result=%s d=%s\n", dkimv_result_str(best), bestd);
	dkimv_free(v);
	dkimv_lib_free(lib);
	dns_free(dns);
	free(msg);
	return 0;
}
