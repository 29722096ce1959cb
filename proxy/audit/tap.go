package audit

import (
	"bytes"
	"slices"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A tap is how notify blocks see the audit stream: a second zap core
// beside the stream's own, fed the same entries (the same time, the same
// fields, the same session), encoded by the same encoder. So a
// notification's body is the audit line of its event, byte for byte
// (without the line ending), never a copy built by hand.
//
// The tap picks the events a notification may be about (Kind) and holds
// each until the client has the reply that ends it: a transfer's, a
// refusal's or a login's final reply, or the session's end. The audit
// writes a transfer before its final reply (transferend.go: whoever reads
// the audit after seeing the reply finds it there); a notification goes
// after it, so that a receiver that acts on it (fetches the file, tells a
// user) never races the client's own 226.

// Notification kinds: the audit events a notify block may subscribe to.
const (
	// KindUploadComplete: a transfer event of an upload whose result is
	// complete (the client got 226).
	KindUploadComplete = "upload_complete"
	// KindDownloadComplete: a transfer event of a RETR whose result is
	// complete (listings are not notified).
	KindDownloadComplete = "download_complete"
	// KindUploadRejected: an upload the proxy refused: by its scan
	// (result rejected, or failed with scan "error"), at max_file_size
	// (result too_large), or by policy (a policy_denied event of STOR,
	// APPE or STOU).
	KindUploadRejected = "upload_rejected"
	// KindLoginFailed: a login event whose result is failure.
	KindLoginFailed = "login_failed"
	// KindBan: a ban event.
	KindBan = "ban"
)

// Kinds are every notification kind, in the order the documentation
// lists them.
var Kinds = []string{KindUploadComplete, KindDownloadComplete, KindUploadRejected, KindLoginFailed, KindBan}

// A Tap receives the audit events notifications are made of. Both
// methods are called on the sessions' goroutines and must not block.
type Tap interface {
	// Wants reports whether any notification is sent for kind now: an
	// event no one wants is not encoded twice.
	Wants(kind string) bool
	// Event takes the event of kind, once the client has its reply; body
	// is its audit line without the line ending, and is the tap's to keep.
	Event(kind string, body []byte)
}

// WithTap returns a copy of l whose sessions also hand their events of a
// notification kind to t (nil l: a Logger that writes nothing else).
func (l *Logger) WithTap(t Tap) *Logger {
	var c Logger
	if l != nil {
		c = *l
	}
	c.tap = t
	return &c
}

// uploadVerbs are the verbs whose refusal by policy is an upload refused.
var uploadVerbs = []string{"STOR", "APPE", "STOU"}

// Kind is the notification kind of the audit event named event with
// fields fs, or "" for an event no notification is about. It reads the
// fields the Session methods write: "direction", "result", "verb", "scan".
func Kind(event string, fs []zapcore.Field) string {
	str := func(key string) string {
		for _, f := range fs {
			if f.Key == key && f.Type == zapcore.StringType {
				return f.String
			}
		}
		return ""
	}
	switch event {
	case EventTransfer:
		result := Result(str("result"))
		switch Direction(str("direction")) {
		case Upload:
			switch {
			case result == Complete:
				return KindUploadComplete
			case result == Rejected, result == TooLarge, result == QuotaExceeded, result == Failed && str("scan") == "error":
				return KindUploadRejected
			}
		case Download:
			if result == Complete && str("verb") == "RETR" {
				return KindDownloadComplete
			}
		}
	case EventPolicyDenied:
		if slices.Contains(uploadVerbs, str("verb")) {
			return KindUploadRejected
		}
	case EventLogin:
		if str("result") == "failure" {
			return KindLoginFailed
		}
	case EventBan:
		return KindBan
	}
	return ""
}

// maxHeld bounds the events one session holds for its next reply; past
// it the oldest goes at once (a session emits one or two per command).
const maxHeld = 16

// held is one session's events waiting for their reply.
type held struct {
	tap Tap
	mu  sync.Mutex
	evs []heldEvent
}

type heldEvent struct {
	kind string
	verb string // the command whose final reply releases it; "" for any
	body []byte
}

func (h *held) add(e heldEvent) {
	h.mu.Lock()
	var out *heldEvent
	if len(h.evs) == maxHeld {
		out = &h.evs[0]
		h.evs = h.evs[1:]
	}
	h.evs = append(h.evs, e)
	h.mu.Unlock()
	if out != nil {
		h.tap.Event(out.kind, out.body)
	}
}

// release hands the tap every event waiting for the final reply to verb,
// or, with all, every event.
func (h *held) release(verb string, all bool) {
	h.mu.Lock()
	var out []heldEvent
	keep := h.evs[:0]
	for _, e := range h.evs {
		if all || e.verb == "" || e.verb == verb {
			out = append(out, e)
		} else {
			keep = append(keep, e)
		}
	}
	h.evs = keep
	h.mu.Unlock()
	for _, e := range out {
		h.tap.Event(e.kind, e.body)
	}
}

// tapCore is the zap core of a session's held events. It keeps the
// session's fields (With) as they are and encodes them only for an event
// a notification wants: every session has a tap (notify blocks may come
// with a reload), and an encoder held per session would cost each idle
// session a buffer of its own for nothing.
type tapCore struct {
	fields []zapcore.Field
	h      *held
}

var _ zapcore.Core = (*tapCore)(nil)

func (c *tapCore) Enabled(lvl zapcore.Level) bool { return lvl >= zapcore.InfoLevel }

func (c *tapCore) With(fs []zapcore.Field) zapcore.Core {
	return &tapCore{fields: append(slices.Clip(c.fields), fs...), h: c.h}
}

func (c *tapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *tapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	kind := Kind(e.Message, fs)
	if kind == "" || !c.h.tap.Wants(kind) {
		return nil
	}
	enc := zapcore.NewJSONEncoder(EncoderConfig())
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	buf, err := enc.EncodeEntry(e, fs)
	if err != nil {
		return err
	}
	body := bytes.TrimSuffix(bytes.Clone(buf.Bytes()), []byte(zapcore.DefaultLineEnding))
	buf.Free()
	var verb string
	if e.Message == EventTransfer || e.Message == EventPolicyDenied {
		for _, f := range fs {
			if f.Key == "verb" {
				verb = f.String
			}
		}
	}
	c.h.add(heldEvent{kind: kind, verb: verb, body: body})
	return nil
}

func (c *tapCore) Sync() error { return nil }

// tapped returns z (nil: none) with the tap core of h beside its own.
func tapped(z *zap.Logger, h *held) *zap.Logger {
	core := &tapCore{h: h}
	if z == nil {
		return zap.New(core)
	}
	return z.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) }))
}
