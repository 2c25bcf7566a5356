/*
 * check_spf.h - SPF (RFC 7208) check of a client against the MAIL FROM
 * domain, or the HELO name for the null sender, through libspf2 and
 * ravelin's resolver. Blocking (bounded by a time budget): call it from
 * check-pool threads. One spf_checker may serve all threads at once.
 */
#ifndef RAVELIN_CHECK_SPF_H
#define RAVELIN_CHECK_SPF_H

struct sockaddr;
struct dns;
struct spf_checker;

enum spf_result {
	SPF_RES_NONE,
	SPF_RES_NEUTRAL,
	SPF_RES_PASS,
	SPF_RES_FAIL,
	SPF_RES_SOFTFAIL,
	SPF_RES_TEMPERROR,
	SPF_RES_PERMERROR,
};

#define SPF_OUT_HEADER_MAX 2048	/* Received-SPF value; longer inputs are cut */
#define SPF_OUT_TEXT_MAX 256

/* What one check found. All strings are printable ASCII, NUL-terminated. */
struct spf_outcome {
	enum spf_result result;
	const char *identity;		/* "mailfrom", or "helo" for the null sender */
	char domain[256];		/* the domain whose policy was evaluated */
	/*
	 * Value of the Received-SPF header (RFC 7208 9.1) without the
	 * "Received-SPF:" name, one line, e.g. `pass (mx.example.org: domain
	 * of a@example.com designates 192.0.2.1 as permitted sender)
	 * client-ip=192.0.2.1; envelope-from="a@example.com";
	 * helo=mail.example.com; receiver=mx.example.org; identity=mailfrom;`
	 */
	char received_spf[SPF_OUT_HEADER_MAX];
	/*
	 * fail: the domain's explanation (exp=, else "<domain> does not
	 * designate <ip> as permitted sender"); temperror/permerror: what
	 * went wrong; else "".
	 * Untrusted text from DNS, sanitised: fine for an SMTP reply.
	 */
	char reason[SPF_OUT_TEXT_MAX];
};

/*
 * spf_checker_new - a checker using dns for every lookup; our_hostname
 * names the receiver in Received-SPF and the %{r} macro. NULL on failure.
 */
struct spf_checker *spf_checker_new(struct dns *dns, const char *our_hostname);

/*
 * spf_checker_set_budget - total time one spf_check may spend in DNS
 * (default 20000 ms, RFC 7208 4.6.4); call before sharing the checker.
 */
void spf_checker_set_budget(struct spf_checker *checker, unsigned ms);

/* spf_checker_free - free a checker (the dns stays the caller's); accepts NULL. */
void spf_checker_free(struct spf_checker *checker);

/*
 * spf_check - evaluate client (AF_INET or AF_INET6; an IPv4-mapped IPv6
 * address counts as IPv4) with helo (may be NULL or "") and sender (the
 * bare MAIL FROM address, "" for the null sender, which checks
 * postmaster@helo). Fills *out and returns out->result. A loopback client
 * gets "none" (libspf2 would pass it unconditionally). DNS trouble or an
 * exhausted budget gives temperror, never a hang. Thread-safe.
 */
enum spf_result spf_check(struct spf_checker *checker, const struct sockaddr *client,
			  const char *helo, const char *sender, struct spf_outcome *out);

/* spf_result_name - "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result result);

#endif
