#!/usr/bin/env bash
# make demo: a real vsftpd (plain FTP; the copy test-deps unpacked, never
# the machine's own) on loopback, ftpsgate in front of it with a fresh
# self-signed certificate, and the commands to try it. Ctrl-C stops both and
# removes everything the demo made.
#
# demo.sh --check (make demo-check, run by CI) sets up the same, runs the
# self-check, stops and removes everything, and exits non-zero if any step
# failed. Its ports are free ones chosen at run time unless set.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "demo: $*" >&2; exit 1; }
pids=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

check=no
case "${1:-}" in
--check) check=yes ;;
"") ;;
*) die "usage: $0 [--check]" ;;
esac
defaults=(2121 2021 2990)
if [ "$check" = yes ]; then
	ports=$(free_ports 3) || die "no free ports"
	read -ra defaults <<<"$ports"
fi
BACKEND_PORT=${BACKEND_PORT:-${defaults[0]}}
EXPLICIT_PORT=${EXPLICIT_PORT:-${defaults[1]}}
IMPLICIT_PORT=${IMPLICIT_PORT:-${defaults[2]}}
[ "$(id -u)" = 0 ] || die "vsftpd logs users in by switching to their account, which needs root: run sudo make demo"
[ -x bin/ftpsgate ] || die "bin/ftpsgate missing: run make build"
for p in "$BACKEND_PORT" "$EXPLICIT_PORT" "$IMPLICIT_PORT"; do
	if { exec 3<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null; then
		exec 3>&-
		die "port $p is in use; set BACKEND_PORT, EXPLICIT_PORT or IMPLICIT_PORT"
	fi
done
PASSWORD=$(account_password)

work=$(mktemp -d /tmp/ftpsgate-demo.XXXXXX)
chmod 755 "$work"
# cleanup STATUS: Ctrl-C is the demo's normal end (0); a failed step keeps
# its status and shows the servers' logs before they are removed.
cleanup() {
	trap - INT TERM EXIT
	stop_pids
	if [ "$1" != 0 ]; then
		for log in "$work"/vsftpd.log "$work"/ftpsgate.log; do
			[ -s "$log" ] && { echo "demo: ${log##*/}:"; tail -n 40 "$log"; } >&2
		done
	fi
	rm -rf "$work"
	echo
	echo "demo: stopped, $work removed"
	exit "$1"
}
trap 'cleanup 0' INT TERM
trap 'cleanup $?' EXIT

start_vsftpd "$work" "$BACKEND_PORT"
echo "Hello from the FTP server behind ftpsgate." >"$work/root/hello.txt"
make_cert "$work"

cat >"$work/ftpsgate.hcl" <<EOF
listener "ftps" {
  address       = "127.0.0.1:$EXPLICIT_PORT"
  tls           = "explicit"
  cert_file     = "$work/tls.crt"
  key_file      = "$work/tls.key"
  passive_ports = "50000-50049"
  backend       = "legacy"
}
listener "ftps-implicit" {
  address       = "127.0.0.1:$IMPLICIT_PORT"
  tls           = "implicit"
  cert_file     = "$work/tls.crt"
  key_file      = "$work/tls.key"
  passive_ports = "50050-50099"
  backend       = "legacy"
}
backend "legacy" {
  address = "127.0.0.1:$BACKEND_PORT"
  tls     = "none"
}
audit {
  file = "$work/audit.log"
}
EOF

setsid bin/ftpsgate run -config "$work/ftpsgate.hcl" -log-format console 2>"$work/ftpsgate.log" &
pids+=($!)
wait_greeting "$EXPLICIT_PORT" || die "ftpsgate did not start"

# Python's stock FTP_TLS never resumes the control connection's TLS session
# on data connections, which ftpsgate requires: the README's subclass does.
cat >"$work/ftplib_demo.py" <<PY
import ftplib, ssl

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

f = ReusingFTP_TLS(context=ssl.create_default_context(cafile="$work/tls.crt"))
f.connect("127.0.0.1", $EXPLICIT_PORT)
f.login("$ACCOUNT", "$PASSWORD")
f.prot_p()
f.retrlines("LIST")
f.quit()
PY

# A self-check, so the commands below are known to work.
curl -sS --ssl-reqd --cacert "$work/tls.crt" "ftp://$ACCOUNT:$PASSWORD@127.0.0.1:$EXPLICIT_PORT/hello.txt" >/dev/null ||
	die "curl self-check failed"
python3 "$work/ftplib_demo.py" >/dev/null || die "ftplib self-check failed"
if [ "$check" = yes ]; then
	echo "demo: self-check passed: curl and ftplib logged in through ftpsgate (127.0.0.1:$EXPLICIT_PORT) to vsftpd ($VSFTPD_ROOT)"
	exit 0
fi

U="$ACCOUNT:$PASSWORD"
cat <<EOF

ftpsgate is running in front of vsftpd (plain FTP on 127.0.0.1:$BACKEND_PORT).
  explicit FTPS  127.0.0.1:$EXPLICIT_PORT     implicit FTPS  127.0.0.1:$IMPLICIT_PORT
  user $ACCOUNT, password $PASSWORD
  certificate    $work/tls.crt (self-signed; clients below trust it explicitly)

List, upload and download with curl:
  curl --ssl-reqd --cacert $work/tls.crt ftp://$U@127.0.0.1:$EXPLICIT_PORT/
  curl --ssl-reqd --cacert $work/tls.crt -T /etc/hostname ftp://$U@127.0.0.1:$EXPLICIT_PORT/uploaded.txt
  curl --ssl-reqd --cacert $work/tls.crt ftp://$U@127.0.0.1:$EXPLICIT_PORT/hello.txt
  curl --cacert $work/tls.crt ftps://$U@127.0.0.1:$IMPLICIT_PORT/          # implicit FTPS

With lftp:
  lftp -e 'set ftp:ssl-force true; set ssl:ca-file $work/tls.crt; ls; get hello.txt -o /tmp/hello.txt; bye' -u $U 127.0.0.1:$EXPLICIT_PORT

With Python's ftplib (the README's resuming FTP_TLS subclass):
  python3 $work/ftplib_demo.py

Plaintext logins are refused:
  curl ftp://$U@127.0.0.1:$EXPLICIT_PORT/       # 530 TLS required

Logs: $work/ftpsgate.log (diagnostic), $work/audit.log (audit, JSON lines)
Press Ctrl-C to stop.
EOF
wait "${pids[1]}"
