# Shared by demo.sh and bench.sh: a vsftpd on loopback serving a directory to
# the test account, a self-signed certificate, and a readiness check.
# The caller defines die() and an array pids, and sources this file.

ACCOUNT=ftpsgate-test

# account_password prints the test account's password (made by test-deps).
account_password() {
	cat /var/lib/ftpsgate-test/password 2>/dev/null || die "no test account: run make test-deps"
}

# wait_greeting PORT: waits until a server on 127.0.0.1:PORT sends 220.
wait_greeting() {
	for _ in $(seq 1 100); do
		if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
			if read -r -t 2 line <&3 && [[ $line == 220* ]]; then exec 3>&-; return 0; fi
			exec 3>&-
		fi
		sleep 0.1
	done
	return 1
}

# start_vsftpd DIR PORT: plain FTP on 127.0.0.1:PORT serving DIR/root,
# logging to DIR/vsftpd.log; waits for its greeting.
start_vsftpd() {
	local dir=$1 port=$2
	mkdir -p "$dir/root" "$dir/empty"
	chown "$ACCOUNT" "$dir/root"
	cat >"$dir/vsftpd.conf" <<-CONF
		listen=YES
		listen_ipv6=NO
		listen_address=127.0.0.1
		listen_port=$port
		background=NO
		anonymous_enable=NO
		local_enable=YES
		write_enable=YES
		local_umask=022
		pam_service_name=$ACCOUNT
		local_root=$dir/root
		chroot_local_user=YES
		allow_writeable_chroot=YES
		secure_chroot_dir=$dir/empty
		seccomp_sandbox=NO
		vsftpd_log_file=$dir/vsftpd.log
	CONF
	setsid vsftpd "$dir/vsftpd.conf" &
	pids+=($!)
	wait_greeting "$port" || die "vsftpd did not start; see $dir/vsftpd.log"
}

# make_cert DIR: a self-signed ECDSA certificate for localhost and
# 127.0.0.1 in DIR/tls.crt and DIR/tls.key.
make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
		-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$1/tls.key" -out "$1/tls.crt" 2>/dev/null || die "openssl failed"
}
