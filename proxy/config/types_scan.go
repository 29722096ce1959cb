package config

import (
	"crypto/x509"
	"net/url"
	"slices"
	"time"
)

// The snapshot of scan blocks: the scanner, its mode and its verdicts.
// Part of types.go's Config.

// Scan is a scan block: a malware scanner that uploads go through before
// their final reply (README, "Scan uploads"). Listeners and routes name
// one; a route's replaces its listener's, and no route can turn scanning
// off for a listener that has it.
type Scan struct {
	Name string
	// Engine is the scanner's protocol: clamd's INSTREAM, or an ICAP
	// server's RESPMOD service.
	Engine ScanEngine
	// Network ("tcp" or "unix") and Address are where clamd listens,
	// from address = "tcp:host:port" or "unix:/path". For ICAP, Network
	// is "tcp" and Address the URL's host:port.
	Network, Address string
	// ICAP is the ICAP service's URL, from address =
	// "icap://host[:port]/service" (port 1344 by default) or "icaps://…"
	// (TLS, port 11344 by default); nil for clamd.
	ICAP *url.URL
	// RootCAs verifies an icaps:// server's certificate: the PEM file of
	// ca_file, or nil for the system's roots. The certificate is always
	// verified, for the URL's host: a scanner an attacker can stand in
	// for would call every upload clean.
	RootCAs *x509.CertPool
	// Timeout bounds the connection to the scanner, each write to it
	// without progress, and the wait for the verdict after the upload's
	// last byte (the 226 is held meanwhile). Default 60 s.
	Timeout time.Duration
	// MaxSize is the most bytes of one upload sent to the scanner. It
	// must not exceed clamd's StreamMaxLength (whose default is 25 MiB,
	// as this one's), or clamd refuses every larger upload as an error.
	MaxSize int64
	// AboveMax is what happens to an upload larger than MaxSize, whose
	// first MaxSize bytes were scanned and found clean: ScanReject (the
	// default: 552, and the file deleted; nothing unscanned gets in) or
	// ScanPass (accepted, with a warning and "scan":"partial" in the
	// audit). An infection found in the first MaxSize bytes is
	// rejected either way.
	AboveMax ScanAction
	// OnError is what happens when the scanner gives no verdict
	// (unreachable, timed out, a reply that is not one): ScanReject (the
	// default: 451, and the file deleted, since the scanner's outage
	// must not become a way in) or ScanPass (accepted unscanned). Both
	// are logged, as warnings, and audited.
	OnError ScanAction
	// Verbs are the upload verbs scanned: STOR, APPE, STOU (all three
	// by default). APPE and a STOR after REST are scanned for the bytes
	// they send, not the whole file they leave.
	Verbs []string
	// Mode is how an upload meets the scanner: ScanInline (the default:
	// it streams to the backend and to the scanner at once, and an
	// infected file is deleted on the backend after the fact) or
	// ScanSpool (it is received whole into SpoolDir and scanned there;
	// only a clean file is then sent to the backend, which never holds
	// malware, even briefly, at the cost of disk and of the whole
	// file's latency).
	Mode ScanMode
	// SpoolDir is the directory spooled uploads are written to (mode
	// "spool" only), created mode 0700 by the proxy; its files are mode
	// 0600, created exclusively, and removed on every path. A file of
	// the spool's name pattern found there at start is a crashed run's
	// and is removed: no two scan blocks, and no two proxies, may share
	// one. Default: DefaultSpoolRoot/NAME (the systemd unit's state
	// directory; not /tmp, which other local users can write to, and
	// which is often memory).
	SpoolDir string
	// SpoolMax bounds the bytes of SpoolDir's files, all sessions
	// together (mode "spool" only): an upload that finds it full is
	// refused with 452 before it is received, one that fills it while
	// it is received is cut with 452. It stops a few clients from
	// filling the proxy's disk. Default 1 GiB.
	SpoolMax int64
}

// ScanMode is how an upload meets the scanner.
type ScanMode int

const (
	// ScanInline streams an upload to the backend and to the scanner
	// at once; the final reply waits for the verdict.
	ScanInline ScanMode = iota
	// ScanSpool receives an upload whole into the spool and scans it
	// there; only a clean file is sent on to the backend.
	ScanSpool
)

func (m ScanMode) String() string {
	switch m {
	case ScanInline:
		return "inline"
	case ScanSpool:
		return "spool"
	}
	return "invalid"
}

// Scans reports whether uploads by verb go through the scanner.
func (s *Scan) Scans(verb string) bool { return s != nil && slices.Contains(s.Verbs, verb) }

// ScanEngine is a scanner's protocol.
type ScanEngine int

const (
	// Clamd is clamd's INSTREAM command, over TCP or a Unix socket.
	Clamd ScanEngine = iota + 1
	// ICAP is RFC 3507's RESPMOD, over TCP or TLS.
	ICAP
)

func (e ScanEngine) String() string {
	switch e {
	case Clamd:
		return "clamd"
	case ICAP:
		return "icap"
	}
	return "invalid"
}

// ScanAction is what a scan block does with an upload it cannot call
// clean.
type ScanAction int

const (
	// ScanReject refuses the upload and deletes the file on the backend.
	ScanReject ScanAction = iota
	// ScanPass lets it through, logged.
	ScanPass
)

func (a ScanAction) String() string {
	switch a {
	case ScanReject:
		return "reject"
	case ScanPass:
		return "pass"
	}
	return "invalid"
}
