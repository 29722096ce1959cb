#!/usr/bin/env bash
# make demo: a real vsftpd (plain FTP) on loopback, ftpsgate in front of it
# with a fresh self-signed certificate, and the commands to try it.
# Ctrl-C stops both and removes everything the demo made.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND_PORT=${BACKEND_PORT:-2121}
EXPLICIT_PORT=${EXPLICIT_PORT:-2021}
IMPLICIT_PORT=${IMPLICIT_PORT:-2990}

die() { echo "demo: $*" >&2; exit 1; }
pids=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
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
cleanup() {
	trap - INT TERM EXIT
	stop_pids
	rm -rf "$work"
	echo
	echo "demo: stopped, $work removed"
	exit 0
}
trap cleanup INT TERM EXIT

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
wait_greeting "$EXPLICIT_PORT" || { cat "$work/ftpsgate.log"; die "ftpsgate did not start"; }

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
	die "self-check failed; see $work/ftpsgate.log"
python3 "$work/ftplib_demo.py" >/dev/null || die "ftplib self-check failed; see $work/ftpsgate.log"

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
