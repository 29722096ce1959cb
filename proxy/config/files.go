package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/hashicorp/hcl/v2"
)

// The files a configuration names: read with bounds, and secrets checked
// for who else can read them.

// maxFileSize bounds a configuration, certificate or key file: a path
// naming a device or a huge file is an error, not a hang.
const maxFileSize = 4 << 20

// readSmallFile reads a regular file of at most maxFileSize bytes.
func readSmallFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; a regular file ignores the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// LoadKeyPair is tls.LoadX509KeyPair through readSmallFile (regular files
// of at most 4 MiB).
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readSmallFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readSmallFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// secretFile warns when the file at path, which holds what, can be read
// by users other than its owner: any mode bit for others, or group bits
// on a file not owned by root. A root-owned file readable by its group
// (0640, 0440) is how a system shares a key with one service: Debian's
// ssl-cert group, a Kubernetes Secret volume with the pod's fsGroup. The
// rule is PostgreSQL's for ssl_key_file.
func (c *compiler) secretFile(at *hcl.Range, attr, path, what string) {
	st, err := os.Stat(path) // the file itself: Kubernetes mounts a symbolic link to it
	if err != nil {
		return
	}
	perm := st.Mode().Perm()
	owner := uint32(0)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = sys.Uid
	}
	var who string
	switch {
	case perm&0o007 != 0:
		who = "every user of the machine"
	case perm&0o070 != 0 && owner != 0:
		who = fmt.Sprintf("its group, and it is owned by uid %d, not root", owner)
	default:
		return
	}
	if c.exposed[path] {
		return
	}
	if c.exposed == nil {
		c.exposed = map[string]bool{}
	}
	c.exposed[path] = true
	c.warnf(at, "Readable "+attr,
		"%s %q (mode %04o) can be read by %s: that exposes %s. Run chmod 600 on it (or own it by root with mode 0640 and "+
			"put the service in its group); in a Kubernetes Secret volume set defaultMode: 0440 and the pod's fsGroup.",
		attr, path, perm, who, what)
}

// pemPool reads the PEM file of CA certificates at path, named attr in
// the configuration (ca_file, client_ca_file, ca_roots); nil after a
// problem, which is reported at r.
func (c *compiler) pemPool(r *hcl.Range, attr, path string) *x509.CertPool {
	b, err := readSmallFile(path)
	if err != nil {
		c.errorf(r, "Cannot read "+attr, "%s", err)
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		c.errorf(r, "Invalid "+attr, "%q holds no PEM certificate.", path)
		return nil
	}
	return pool
}
