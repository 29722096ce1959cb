package config

import (
	"slices"
	"time"
)

// Scan is a scan block: a malware scanner that uploads go through before
// their final reply (README, "Scan uploads"). Listeners and routes name
// one; a route's replaces its listener's, and no route can turn scanning
// off for a listener that has it.
type Scan struct {
	Name string
	// Engine is the scanner's protocol; clamd's INSTREAM is the only one.
	Engine ScanEngine
	// Network ("tcp" or "unix") and Address are where the scanner
	// listens, from address = "tcp:host:port" or "unix:/path".
	Network, Address string
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
}

// Scans reports whether uploads by verb go through the scanner.
func (s *Scan) Scans(verb string) bool { return s != nil && slices.Contains(s.Verbs, verb) }

// ScanEngine is a scanner's protocol.
type ScanEngine int

const (
	// Clamd is clamd's INSTREAM command, over TCP or a Unix socket.
	Clamd ScanEngine = iota + 1
)

func (e ScanEngine) String() string {
	if e == Clamd {
		return "clamd"
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
