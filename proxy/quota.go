package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Quotas (the rates block's quota_down, quota_up and quota_period, and its
// classes'): the bytes of files a user, or a shared class, may download
// and upload per period. The counts live in the server's sharedState, so
// that with a state block's Redis every instance counts the same bytes.
//
// A transfer command is refused with 552 before the backend sees it when
// its user's quota is used up. A transfer running when its quota runs out
// is cut at the bound, as max_file_size cuts an upload: exactly the bytes
// up to the quota are relayed, the client's data connection is reset and
// the command gets 552, never 226; an upload's partial file is removed
// (removePartial). Cutting, rather than letting the transfer finish and
// refusing the next, keeps the quota a bound: a single 1 TB download
// would otherwise pass a 10 GiB quota.
//
// A transfer does not ask the state for every chunk: it reserves bytes a
// block at a time (quotaLease), and gives back what it did not use at its
// end. A user's other transfers see the reserved bytes as used while it
// runs, so a user near the quota may be refused up to a block early: a
// block is at most a 64th of the quota, so that this stays small.

// quotaBlock and minQuotaBlock bound how many bytes a transfer reserves
// of its quota at once (quotaBlockFor): with Redis, one round trip per
// block relayed.
const (
	quotaBlock    = 4 << 20
	minQuotaBlock = 64 << 10
)

// quotaBlockFor is the block reserved at once under limit: a 64th of it,
// from minQuotaBlock to quotaBlock.
func quotaBlockFor(limit int64) int64 {
	return max(minQuotaBlock, min(quotaBlock, limit/64))
}

// errQuotaExceeded: a transfer reached its user's quota.
var errQuotaExceeded = errors.New("transfer exceeds the user's quota")

// quotaKey names one quota count: a direction of a user's (or shared
// class's) quota in one window.
type quotaKey struct {
	up         bool
	bucket     string // "user:NAME", "class:NAME" (config.Rates.QuotaForUser)
	period     time.Duration
	start, end time.Time
}

// newQuotaKey is the key of bucket's count for the window of q holding now.
func newQuotaKey(bucket string, q config.Quota, up bool, now time.Time) quotaKey {
	start, end := q.Window(now)
	return quotaKey{up: up, bucket: bucket, period: q.Period, start: start, end: end}
}

func (k quotaKey) dir() string {
	if k.up {
		return "up"
	}
	return "down"
}

// String is the key in the state: "down:86400:1764806400:user:bob".
func (k quotaKey) String() string {
	return k.dir() + ":" + strconv.FormatInt(int64(k.period/time.Second), 10) + ":" +
		strconv.FormatInt(k.start.Unix(), 10) + ":" + k.bucket
}

// quotaFor is the quota of user in one direction under cfg, and the key
// of its count at now; ok is false when none applies.
func quotaFor(cfg *config.Config, user string, up bool, now time.Time) (q config.Quota, k quotaKey, ok bool) {
	bucket, q := cfg.Rates.QuotaForUser(&cfg.Policy, user)
	if bucket == "" || q.Limit(up) <= 0 {
		return q, quotaKey{}, false
	}
	return q, newQuotaKey(bucket, q, up, now), true
}

// quotaName is "download" or "upload".
func quotaName(up bool) string {
	if up {
		return "upload"
	}
	return "download"
}

// quotaResets writes when a window ends, for replies and logs.
func quotaResets(end time.Time) string { return end.UTC().Format("2006-01-02 15:04:05 MST") }

// quotaRefused refuses transfer x with 552 before the backend sees it if
// its user's quota for x's direction is used up, and reports whether it
// did. Listings are never refused. p is the data connection set up for
// x, closed when refused.
func (s *session) quotaRefused(cmd rewrite.Command, x *transfer, p *pendingData) (bool, error) {
	if !x.file {
		return false, nil
	}
	up := x.direction == audit.Upload
	q, k, ok := quotaFor(s.srv.live.Load(), x.user, up, time.Now())
	if !ok {
		return false, nil
	}
	limit := q.Limit(up)
	if _, used := s.srv.state.quota(k, 0, limit); used < limit {
		return false, nil
	}
	p.close()
	s.srv.metrics.quotaRefusals.WithLabelValues(string(x.direction)).Inc()
	s.log.Info("transfer refused: quota used up", zap.String("verb", cmd.Verb), zap.String("path", cmd.Arg),
		zap.String("quota", q.String(up)), zap.Time("resets", k.end))
	s.audit.Transfer(audit.Transfer{
		Verb: cmd.Verb, Direction: x.direction, Path: cmd.Arg, Result: audit.QuotaExceeded, Announced: -1, Code: 552,
		Client: s.client.addr.Addr().String(), User: s.login.user, Binary: x.binary, File: x.file,
		Quota: q.String(up), QuotaResets: k.end,
	})
	s.srv.metrics.transfer(x.direction, audit.QuotaExceeded, 0, 0)
	return true, s.reply(cmd, 552, fmt.Sprintf("%s quota exceeded: %s used; it resets at %s.",
		capitalized(quotaName(up)), q.String(up), quotaResets(k.end)))
}

func capitalized(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// quotaLease is the part of a quota a running transfer holds: bytes
// reserved from the count (a block at a time) and not yet relayed. Used
// by the transfer goroutine only.
type quotaLease struct {
	st    sharedState
	key   quotaKey
	quota config.Quota
	limit int64
	avail int64 // reserved, not relayed
	// used is the count after the last reservation, and exceeded that
	// the quota stopped the transfer.
	used     int64
	exceeded bool
}

// take returns how many of n bytes the quota lets pass (n, or fewer when
// it runs out), reserving more as needed; now moves the lease to a new
// window when the old one ended.
func (l *quotaLease) take(n int, now time.Time) int {
	if !now.Before(l.key.end) {
		l.release()
		l.key = newQuotaKey(l.key.bucket, l.quota, l.key.up, now)
	}
	if need := int64(n) - l.avail; need > 0 {
		added, used := l.st.quota(l.key, max(need, quotaBlockFor(l.limit)), l.limit)
		l.avail += added
		l.used = used
	}
	if l.avail < int64(n) {
		n = int(l.avail)
		l.exceeded = true
	}
	l.avail -= int64(n)
	return n
}

// untake gives back n bytes take let pass that were not relayed.
func (l *quotaLease) untake(n int) { l.avail += int64(n) }

// release gives back what the lease reserved and did not relay.
func (l *quotaLease) release() {
	if l.avail > 0 {
		_, l.used = l.st.quota(l.key, -l.avail, 0)
		l.avail = 0
	}
}

// applyQuota makes f's quota lease the one cfg gives its user: a new
// lease when the quota's count changed (another class, another period), the
// new limit when only that changed (a reload raising or lowering it).
func (f *flow) applyQuota(cfg *config.Config) {
	if !f.file {
		return
	}
	q, k, ok := quotaFor(cfg, f.user, f.up, time.Now())
	if l := f.quota; l != nil && (!ok || l.key.bucket != k.bucket || l.key.period != k.period) {
		l.release()
		f.quota = nil
	}
	if !ok {
		return
	}
	if f.quota == nil {
		f.quota = &quotaLease{st: f.s.srv.state, key: k}
	}
	f.quota.quota, f.quota.limit = q, q.Limit(f.up)
}

// quotaText is what the client is told when a transfer was cut at its
// quota.
func (f *flow) quotaText(bytes int64) string {
	l := f.quota
	verb := "Download"
	if f.up {
		verb = "Upload"
	}
	return fmt.Sprintf("%s aborted after %d bytes: the %s quota of %s is used up; it resets at %s.",
		verb, bytes, quotaName(f.up), l.quota.String(f.up), quotaResets(l.key.end))
}

// ---- what STAT and the status page show ----

// effectiveRate is the smallest rate limit cfg gives a transfer of the
// session's user in one direction, and its level; 0 when none limits it.
func (s *session) effectiveRate(cfg *config.Config, user string, up bool) (config.Rate, rateLevel) {
	pick := func(p config.RatePair) config.Rate {
		if up {
			return p.Up
		}
		return p.Down
	}
	var rates [levelTransfer + 1]config.Rate
	for _, l := range cfg.Listeners {
		if l.Name == s.lcfg.Name {
			rates[levelListener] = pick(config.RatePair{Down: l.RateDown, Up: l.RateUp})
		}
	}
	_, ur := cfg.Rates.ForUser(&cfg.Policy, user)
	rates[levelUser] = pick(ur)
	rates[levelAddress] = pick(cfg.Rates.Address)
	rates[levelTransfer] = pick(cfg.Rates.Transfer)
	var best config.Rate
	var at rateLevel
	for i, r := range rates {
		if r > 0 && (best == 0 || r < best) {
			best, at = r, rateLevel(i)
		}
	}
	return best, at
}

// QuotaStatus is a user's use of one direction's quota, as this instance
// knows it (with shared state, as of its last count).
type QuotaStatus struct {
	Used   int64         `json:"used"`
	Limit  int64         `json:"limit"`
	Period time.Duration `json:"period_ns"`
	Resets time.Time     `json:"resets"`
}

// quotaStatus is the use of user's quota in one direction, nil without
// one.
func (s *session) quotaStatus(cfg *config.Config, user string, up bool, now time.Time) *QuotaStatus {
	q, k, ok := quotaFor(cfg, user, up, now)
	if !ok {
		return nil
	}
	return &QuotaStatus{Used: s.srv.state.quotaUsed(k), Limit: q.Limit(up), Period: q.Period, Resets: k.end}
}

// String is "3MiB of 10MiB per 24h used; it resets at …".
func (q *QuotaStatus) String() string {
	return fmt.Sprintf("%s of %s per %s used; it resets at %s", config.FormatSize(q.Used), config.FormatSize(q.Limit),
		config.FormatPeriod(q.Period), quotaResets(q.Resets))
}

// limitLines are STAT's lines on the rate limit and the quota of a
// transfer of the session's user in one direction.
func (s *session) limitLines(user string, up, file bool) []string {
	cfg := s.srv.live.Load()
	lines := []string{"Rate limit: none."}
	if r, at := s.effectiveRate(cfg, user, up); r > 0 {
		lines[0] = fmt.Sprintf("Rate limit: %s (%s).", r, at)
	}
	if qs := s.quotaStatus(cfg, user, up, time.Now()); qs != nil && file {
		lines = append(lines, fmt.Sprintf("%s quota: %s.", capitalized(quotaName(up)), qs))
	}
	return lines
}
