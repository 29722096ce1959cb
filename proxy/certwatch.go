package proxy

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// certFilesStamp describes the certificate files of lc: path, size and
// modification time of each.
func certFilesStamp(lc *config.Listener) string {
	var st string
	for _, p := range []string{lc.CertFile, lc.KeyFile} {
		if fi, err := os.Stat(p); err == nil {
			st += fmt.Sprintf("%s|%d|%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return st
}

// stampCert records the certificate files as they are now.
func (fl *frontListener) stampCert() {
	st := certFilesStamp(fl.config())
	fl.certStamp.Store(&st)
}

// watchCertificates reloads a listener's certificate when its files change
// (a renewal by certbot or cert-manager), without a SIGHUP. A pair that
// does not load is logged and the current one kept. New handshakes get the
// new certificate; open sessions are unaffected.
func (s *Server) watchCertificates() {
	defer s.wg.Done()
	t := time.NewTicker(s.certEvery)
	defer t.Stop()
	for {
		s.mu.Lock()
		fls := append([]*frontListener(nil), s.listeners...)
		s.mu.Unlock()
		for _, fl := range fls {
			lc := fl.config()
			st := certFilesStamp(lc)
			if st == *fl.certStamp.Load() {
				continue
			}
			fl.certStamp.Store(&st)
			cert, err := config.LoadKeyPair(lc.CertFile, lc.KeyFile)
			if err != nil {
				s.log.Warn("certificate files changed but do not load; keeping the current certificate",
					zap.String("listener", lc.Name), zap.Error(err))
				continue
			}
			fl.cert.Store(&cert)
			s.log.Info("certificate reloaded", zap.String("listener", lc.Name), zap.String("cert_file", lc.CertFile))
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}
