package proxy

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// Transfer integrity: a data stream that ends as if complete is checked
// before the transfer is reported complete (issue 24).

// errIntegrity is a data stream that ended as if complete but failed a
// check of its end or its length: the transfer is incomplete, and the
// client is told so with 426.
type errIntegrity struct {
	check string // its name in the audit's "check" field
	text  string // the 426 reply's text
}

func (e *errIntegrity) Error() string { return e.check + ": " + e.text }

// verifyDownload checks a download whose source ended as if complete
// after n bytes. An FTPS backend's data must end with its close_notify:
// every server tested sends one, and a bare FIN is how a cut on the path
// looks (issue 24). A binary RETR must carry the bytes its 150 announced
// (vsftpd and ProFTPD announce them, pure-ftpd to a tenth of a KiB; see
// rewrite.Size.Expected for a restarted one); more is a file that grew
// while it was read, logged but not data loss.
func (x *transfer) verifyDownload(n int64) error {
	if x.backend.tls != nil && !x.backend.closeNotified() {
		return &errIntegrity{check: "backend_close_notify",
			text: "Transfer aborted: the FTP server's data connection ended without TLS close_notify; the data may be truncated."}
	}
	if x.verb != "RETR" || !x.binary || !x.sized {
		return nil // TYPE A may change the length; LIST and NLST announce none
	}
	least, most := x.announced.Expected(x.offset)
	switch {
	case n < least:
		return &errIntegrity{check: "announced_size",
			text: fmt.Sprintf("Transfer aborted: %d of the %d bytes the FTP server announced arrived.", n, least)}
	case n > most:
		x.log.Info("download longer than the FTP server announced; the file may have grown while it was read",
			zap.String("path", x.path), zap.Int64("bytes", n), zap.Int64("announced", x.announced.Bytes))
	}
	return nil
}

// verifyUpload checks an upload whose client leg ended as if complete:
// under PROT P it must have ended with the client's close_notify, unless
// the listener's upload_close_notify is "warn" (vsftpd's
// strict_ssl_read_eof is the model).
func (x *transfer) verifyUpload(cd *clientData, closeNotify bool) error {
	if cd.tls == nil || closeNotify || x.uploadEnd == config.WarnCloseNotify {
		return nil
	}
	return &errIntegrity{check: "upload_close_notify",
		text: "Transfer aborted: your data connection ended without TLS close_notify, so the upload may be truncated."}
}
