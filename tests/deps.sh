#!/bin/sh
# deps.sh - install ravelin's build and test dependencies on Debian 12.
# Idempotent and non-interactive; run as root (make deps).
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev
 libevent-dev libssl-dev libspf2-dev libopendkim-dev libopendmarc-dev
 libmilter-dev libpcre2-dev libhiredis-dev libunbound-dev libpsl-dev
 publicsuffix libcrypt-dev libcmocka-dev libjemalloc-dev
 postfix swaks redis-server haproxy miltertest openssl socat tmux procps
 python3 python3-pytest python3-aiosmtpd python3-dnslib python3-dkim
 python3-authres python3-yaml valgrind cppcheck clang-tidy man-db
 fail2ban strace whois iproute2 libnet-ssleay-perl
 python3-pytest-rerunfailures"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all installed"
	exit 0
fi
echo "deps: installing$missing"
# Postfix must not ask questions nor start a system instance: the tests run
# their own smtp-sink and Postfix instances on loopback ports.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
