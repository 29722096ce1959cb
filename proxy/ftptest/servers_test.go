package ftptest

import (
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestServersArePrivateCopies checks that each backend runs the copy
// test-deps unpacked under /opt/ftpsgate-test, never an FTP server installed
// on the machine: the tests behave the same on every machine, and the
// scripts need not install (and so remove) any FTP server package.
func TestServersArePrivateCopies(t *testing.T) {
	for _, tc := range []struct {
		name, root string
		start      func(t *testing.T) *Server
	}{
		{"vsftpd", VsftpdRoot, func(t *testing.T) *Server { return Vsftpd(t, VsftpdOptions{}) }},
		{"vsftpd-ipv6", VsftpdRoot, func(t *testing.T) *Server { return Vsftpd(t, VsftpdOptions{IPv6: true}) }},
		{"pure-ftpd", PureFTPdRoot, func(t *testing.T) *Server { return PureFTPd(t) }},
		{"proftpd", ProFTPDRoot, func(t *testing.T) *Server { return ProFTPD(t, ProFTPDOptions{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			exes := listenerExes(t, srv.Addr)
			if len(exes) == 0 {
				t.Fatalf("no process holds the listening socket %s", srv.Addr)
			}
			for _, exe := range exes {
				if !strings.HasPrefix(exe, tc.root+"/") {
					t.Errorf("%s listens from %s, not from the private copy under %s", srv.Addr, exe, tc.root)
				}
			}
		})
	}
}

// listenerExes returns the executables of the processes holding the TCP
// socket that listens on addr, found from /proc/net/tcp{,6} and /proc/*/fd.
func listenerExes(t *testing.T, addr string) []string {
	t.Helper()
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	inode := ""
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st … inode
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			if local, ok := procNetAddr(f[1]); ok && local == want {
				inode = f[9]
			}
		}
	}
	if inode == "" {
		t.Fatalf("nothing listens on %s", addr)
	}
	var exes []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, proc := range procs {
		fds, _ := filepath.Glob(proc + "/fd/*")
		for _, fd := range fds {
			if link, _ := os.Readlink(fd); link == "socket:["+inode+"]" {
				if exe, err := os.Readlink(proc + "/exe"); err == nil {
					exes = append(exes, exe)
				}
				break
			}
		}
	}
	return exes
}

// procNetAddr parses an address of /proc/net/tcp{,6}: the IP's 32-bit
// words in host (little-endian) byte order, then the port, in hex.
func procNetAddr(s string) (netip.AddrPort, bool) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	ip, err := hex.DecodeString(ipHex)
	if !ok || err != nil || (len(ip) != 4 && len(ip) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(ip); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = ip[i+3], ip[i+2], ip[i+1], ip[i]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a, uint16(port)), true
}
