package proxy

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// sessionView is what the status page shows of a session. The session
// goroutine replaces it (copy on write) when something shown changes, so
// the admin listener reads it without touching protocol state.
type sessionView struct {
	User, TLS, Backend, Server string
}

// Status is a snapshot of the live sessions, of each backend's servers
// and of each backend's queue, for the status page (/status) and its JSON
// (/status.json).
type Status struct {
	Time     time.Time       `json:"time"`
	Sessions []SessionStatus `json:"sessions"`
	Backends []BackendStatus `json:"backends"`
	Queues   []QueueStatus   `json:"queues"`
	// Agents are the outbound-only agents' connections (agent_listener).
	Agents []AgentStatus `json:"agents,omitempty"`
}

// SessionStatus is one live session.
type SessionStatus struct {
	ID       string          `json:"id"`
	Listener string          `json:"listener"`
	Client   string          `json:"client"`
	User     string          `json:"user,omitempty"`
	TLS      string          `json:"tls,omitempty"`
	Backend  string          `json:"backend,omitempty"`
	Server   string          `json:"server,omitempty"`
	Started  time.Time       `json:"started"`
	Idle     time.Duration   `json:"idle_ns"`
	Transfer *TransferStatus `json:"transfer,omitempty"`
	// RateDown and RateUp are the smallest rate limits (bytes per
	// second) the session's transfers run under now (0: none), and
	// QuotaDown and QuotaUp its user's quota use; for logged-in
	// sessions.
	RateDown  int64        `json:"rate_limit_down,omitempty"`
	RateUp    int64        `json:"rate_limit_up,omitempty"`
	QuotaDown *QuotaStatus `json:"quota_down,omitempty"`
	QuotaUp   *QuotaStatus `json:"quota_up,omitempty"`
}

// TransferStatus is a transfer in progress. Size is the file's size when
// the server's 150 reply gave it ("(N bytes)", as vsftpd and ProFTPD
// write), else -1.
type TransferStatus struct {
	Verb      string        `json:"verb"`
	Path      string        `json:"path"`
	Direction string        `json:"direction"`
	Bytes     int64         `json:"bytes"`
	Size      int64         `json:"size"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Rate      float64       `json:"bytes_per_second"`
}

// Percent is the share of Size moved, for the progress bar.
func (t *TransferStatus) Percent() int {
	if t.Size <= 0 {
		return 0
	}
	return int(min(100, t.Bytes*100/t.Size))
}

// BackendStatus is one server of a backend. Sessions counts the
// sessions connected to it; Held those plus the ones dialling, what
// MaxSessions (0: no bound) bounds; Dialing the connections being set up.
type BackendStatus struct {
	Backend     string `json:"backend"`
	Server      string `json:"server"`
	Up          bool   `json:"up"`
	Sessions    int64  `json:"sessions"`
	Held        int    `json:"held"`
	Dialing     int    `json:"dialing"`
	MaxSessions int    `json:"max_sessions"`
}

// QueueStatus is one backend's queue: the logins waiting for a server
// within its limits, and how long the first in line has waited.
type QueueStatus struct {
	Backend      string        `json:"backend"`
	Waiting      int           `json:"waiting"`
	LongestWait  time.Duration `json:"longest_wait_ns"`
	QueueTimeout time.Duration `json:"queue_timeout_ns"`
}

// Status takes the snapshot.
func (s *Server) Status() Status {
	now := time.Now()
	st := Status{Time: now}
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		ss := SessionStatus{ID: sess.id, Listener: sess.lcfg.Name, Client: sess.client.addr.String(), Started: sess.start,
			Idle: now.Sub(time.Unix(0, sess.lastActive.Load())).Round(time.Second)}
		if v := sess.view.Load(); v != nil {
			ss.User, ss.TLS, ss.Backend, ss.Server = v.User, v.TLS, v.Backend, v.Server
		}
		if ss.User != "" {
			cfg := s.live.Load()
			down, _ := sess.effectiveRate(cfg, ss.User, false)
			up, _ := sess.effectiveRate(cfg, ss.User, true)
			ss.RateDown, ss.RateUp = int64(down), int64(up)
			ss.QuotaDown, ss.QuotaUp = sess.quotaStatus(cfg, ss.User, false, now), sess.quotaStatus(cfg, ss.User, true, now)
		}
		if x := sess.currentTransfer(); x != nil {
			ts := &TransferStatus{Verb: x.verb, Path: x.path, Direction: string(x.direction), Bytes: x.bytes.Load(),
				Size: x.announcedBytes(), Elapsed: now.Sub(x.start).Round(time.Millisecond)}
			if secs := now.Sub(x.start).Seconds(); secs > 0 {
				ts.Rate = float64(ts.Bytes) / secs
			}
			ss.Transfer = ts
			ss.Idle = 0 // a transfer is activity
		}
		st.Sessions = append(st.Sessions, ss)
	}
	slices.SortFunc(st.Sessions, func(a, b SessionStatus) int { return a.Started.Compare(b.Started) })
	st.Backends, st.Queues = s.backendLoad(now)
	st.Agents = s.agents.status()
	return st
}

// backendLoad is the state of every backend of the configuration in
// force: each server's, and each queue's, sorted by name.
func (s *Server) backendLoad(now time.Time) ([]BackendStatus, []QueueStatus) {
	s.poolMu.Lock()
	pools := make([]*pool, 0, len(s.pools))
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	s.poolMu.Unlock()
	var servers []BackendStatus
	var queues []QueueStatus
	for _, p := range pools {
		q := s.queueFor(p.b.Name)
		loads, waiting, first := q.snapshot()
		qs := QueueStatus{Backend: p.b.Name, Waiting: waiting, QueueTimeout: p.b.Limits.QueueTimeout}
		if waiting > 0 {
			qs.LongestWait = now.Sub(first).Round(time.Second)
		}
		queues = append(queues, qs)
		for _, ps := range p.servers {
			l := loads[ps.addr]
			servers = append(servers, BackendStatus{Backend: p.b.Name, Server: ps.addr, Up: ps.up.Load(),
				Sessions: ps.sessions.Load(), Held: l.sessions, Dialing: l.dials, MaxSessions: p.b.Limits.MaxSessions})
		}
	}
	slices.SortFunc(servers, func(a, b BackendStatus) int {
		return cmp.Or(cmp.Compare(a.Backend, b.Backend), cmp.Compare(a.Server, b.Server))
	})
	slices.SortFunc(queues, func(a, b QueueStatus) int { return cmp.Compare(a.Backend, b.Backend) })
	return servers, queues
}

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": humanBytes,
	"rate":  func(r float64) string { return humanBytes(int64(r)) + "/s" },
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(statusHTML))

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// serveStatus serves the page: self-contained HTML that reloads itself
// every two seconds.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := statusPage.Execute(w, s.Status()); err != nil {
		s.log.Warn("status page", zap.Error(err))
	}
}

func (s *Server) serveStatusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.Status())
}
