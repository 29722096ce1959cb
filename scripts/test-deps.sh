#!/bin/sh
# Installs what ftpsgate's tests, demo and benchmark need on a Debian
# machine, when it is missing: FTP servers (vsftpd; pure-ftpd; ProFTPD with
# mod_tls and, for make bench, mod_proxy), FTP clients (curl, lftp, wget,
# Python 3, rclone, and a JDK with Apache Commons Net for the small
# FTPSClient the tests compile), HAProxy for the scale-out test, Chromium
# for the status page's test, testssl.sh for the TLS scan of the listeners,
# Prometheus to scrape the admin listener with credentials, ClamAV (clamd
# from clamav-daemon, sigtool from clamav) and c-icap with its virus_scan
# module (libc-icap-mod-virus-scan) for the upload-scanning tests,
# redis-server for the shared-state tests, Knot DNS (knotd, from knot) for
# the ACME DNS-01 test, slapd (with ldap-utils) for the LDAP tests of edge
# authentication (each test starts its own on loopback, with a generated
# configuration; the packages' system services are never used), and a
# system account the FTP servers log in as.
#
# It never removes a package. The FTP servers' Debian packages conflict
# with each other (each provides ftp-server), so installing one would
# remove an FTP server the machine already runs: the three are unpacked
# from Debian's packages into /opt/ftpsgate-test instead (apt-get download,
# dpkg -x), never installed, and their shared libraries, which conflict
# with nothing, are installed as packages, always with --no-remove: a
# conflict fails here, loudly, instead of removing anything.
#
# Idempotent: a second run changes nothing. Needs root for what is missing.
set -eu

VSFTPD_ROOT=/opt/ftpsgate-test/vsftpd
PUREFTPD_ROOT=/opt/ftpsgate-test/pure-ftpd
PROFTPD_ROOT=/opt/ftpsgate-test/proftpd
PROFTPD_PKGS="proftpd-core proftpd-mod-crypto proftpd-mod-proxy"
ACCOUNT=ftpsgate-test
STATE=/var/lib/ftpsgate-test

missing=""
for tool in curl:curl lftp:lftp python3:python3 openssl:openssl systemd-analyze:systemd haproxy:haproxy chromium:chromium testssl:testssl.sh prometheus:prometheus \
	wget:wget rclone:rclone javac:default-jdk-headless clamd:clamav-daemon sigtool:clamav c-icap:c-icap redis-server:redis-server \
	knotd:knot slapd:slapd ldapwhoami:ldap-utils; do
	cmd=${tool%%:*} pkg=${tool#*:}
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing="$missing $pkg"
done
# The unpacked servers' shared libraries (vsftpd: libwrap0 libpam0g libssl3
# libcap2, and pam_unix from libpam-modules; then pure-ftpd's and ProFTPD's);
# Apache Commons Net, for the Java FTPS client.
for pkg in libwrap0 libpam-modules libsodium23 libcap2 libssl3 libpam0g libacl1 libhiredis0.14 libmemcached11 \
	libmemcachedutil2 libpcre2-posix3 libidn2-0 libncursesw6 libsqlite3-0 libcommons-net-java libc-icap-mod-virus-scan; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
need_vsftpd=no
[ -x "$VSFTPD_ROOT/usr/sbin/vsftpd" ] || need_vsftpd=yes
need_pureftpd=no
[ -x "$PUREFTPD_ROOT/usr/sbin/pure-ftpd" ] || need_pureftpd=yes
need_proftpd=no
[ -x "$PROFTPD_ROOT/usr/sbin/proftpd" ] && [ -f "$PROFTPD_ROOT/usr/lib/proftpd/mod_tls.so" ] &&
	[ -f "$PROFTPD_ROOT/usr/lib/proftpd/mod_proxy.so" ] || need_proftpd=yes
need_account=no
getent passwd "$ACCOUNT" >/dev/null 2>&1 && [ -s "$STATE/password" ] && [ -f /etc/pam.d/$ACCOUNT ] || need_account=yes

if [ -z "$missing" ] && [ "$need_vsftpd" = no ] && [ "$need_pureftpd" = no ] && [ "$need_proftpd" = no ] && [ "$need_account" = no ]; then
	echo "test-deps: everything is in place"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "test-deps: missing:${missing:- } $( [ $need_vsftpd = yes ] && echo vsftpd ) $( [ $need_pureftpd = yes ] && echo pure-ftpd ) $( [ $need_proftpd = yes ] && echo proftpd ) $( [ $need_account = yes ] && echo "account $ACCOUNT" )" >&2
	echo "test-deps: run as root (sudo make test-deps) to install them" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ] || [ "$need_vsftpd" = yes ] || [ "$need_pureftpd" = yes ] || [ "$need_proftpd" = yes ]; then
	echo "test-deps: apt-get update"
	apt-get update -qq
fi
if [ -n "$missing" ]; then
	echo "test-deps: installing$missing"
	# Debian starts a package's service after install where an init
	# system runs: Prometheus on 9090, c-icap on 1344, slapd on 389, Knot on port 53 (where a local
	# resolver may already listen, which would fail the install),
	# clamav-freshclam downloading signatures, redis-server. The tests
	# never use those instances (each runs its own on loopback), so a
	# policy-rc.d (Debian's invoke-rc.d policy, which deb-systemd-invoke
	# honours too) refuses every start during this install, unless the
	# machine already has one of its own, which is left as it is.
	policy=/usr/sbin/policy-rc.d ours=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# ftpsgate test-deps: no service starts while it installs\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		ours=yes
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get install -y -qq --no-remove --no-install-recommends $missing >/dev/null
	if [ "$ours" = yes ]; then
		rm -f "$policy"
		trap - EXIT
	fi
fi
# unpack ROOT PACKAGE…: the packages' files under ROOT, without installing
# them (no maintainer scripts, no conflicts, nothing removed).
unpack() {
	root=$1
	shift
	echo "test-deps: unpacking $* into $root"
	tmp=$(mktemp -d)
	chmod 755 "$tmp" # apt-get download as _apt
	if ! (cd "$tmp" && apt-get download -qq "$@" 2>"$tmp/stderr"); then
		cat "$tmp/stderr" >&2
		echo "test-deps: apt-get download $* failed" >&2
		exit 1
	fi
	mkdir -p "$root"
	for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$root"; done
	rm -rf "$tmp"
}
[ "$need_vsftpd" = no ] || unpack "$VSFTPD_ROOT" vsftpd
[ "$need_pureftpd" = no ] || unpack "$PUREFTPD_ROOT" pure-ftpd
[ "$need_proftpd" = no ] || unpack "$PROFTPD_ROOT" $PROFTPD_PKGS
if [ "$need_account" = yes ]; then
	echo "test-deps: preparing account $ACCOUNT (no shell, no home, FTP only)"
	getent passwd "$ACCOUNT" >/dev/null 2>&1 ||
		useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$ACCOUNT"
	# A PAM service of its own: the unpacked vsftpd brings none, and
	# Debian's "vsftpd" service requires a login shell (pam_shells), which
	# this account must not have.
	cat >/etc/pam.d/$ACCOUNT <<-EOF
		auth     required pam_unix.so
		account  required pam_unix.so
		session  required pam_permit.so
	EOF
	mkdir -p "$STATE"
	chmod 700 "$STATE"
	if [ ! -s "$STATE/password" ]; then
		umask 077
		head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/password"
	fi
	echo "$ACCOUNT:$(cat "$STATE/password")" | chpasswd
fi
echo "test-deps: done"
