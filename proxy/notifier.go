package proxy

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/notify"
)

// notifier is the server's audit.Tap: the audit stream hands it the
// events of a notification kind once the client has their reply
// (audit/tap.go), and it gives them to the notify blocks of the
// configuration in force (proxy/notify). A reload starts the new blocks
// and swaps them in: events after it go to them, while the old ones
// deliver what they had queued, for at most their drain_timeout.
type notifier struct {
	log     *zap.Logger
	metrics *notify.Metrics
	set     atomic.Pointer[notify.Set] // nil until start, and after close

	// mu guards closed; retiring counts the sets a reload replaced that
	// are still draining (close waits for them).
	mu       sync.Mutex
	closed   bool
	retiring sync.WaitGroup
	// retire bounds the retiring sets' drain: their drain_timeout, or
	// close's context (cancelRetire), whichever ends first.
	retire       context.Context
	cancelRetire context.CancelFunc
}

func newNotifier(log *zap.Logger, reg prometheus.Registerer) *notifier {
	n := &notifier{log: log, metrics: notify.NewMetrics(reg)}
	n.retire, n.cancelRetire = context.WithCancel(context.Background())
	return n
}

// Wants reports whether a notify block in force posts events of kind.
func (n *notifier) Wants(kind string) bool { return n.set.Load().Wants(kind) }

// Event queues an event with the notify blocks in force; it never blocks.
func (n *notifier) Event(kind string, body []byte) { n.set.Load().Event(kind, body) }

// use makes cfg's notify blocks the ones in force (Start, Reload).
func (n *notifier) use(cfg *config.Config) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	var set *notify.Set
	if len(cfg.Notifies) > 0 {
		set = notify.Start(cfg.Notifies, notify.Options{Log: n.log, Metrics: n.metrics})
	}
	if old := n.set.Swap(set); old != nil {
		n.retiring.Add(1)
		go func() {
			defer n.retiring.Done()
			old.Close(n.retire) // bounded by each block's drain_timeout
		}()
	}
}

// close drains the blocks in force, for at most their drain_timeout and
// never after ctx ends, and waits for those a reload replaced; events
// that come after it are not sent. It is safe to call more than once.
func (n *notifier) close(ctx context.Context) {
	n.mu.Lock()
	n.closed = true
	set := n.set.Swap(nil)
	n.mu.Unlock()
	stop := context.AfterFunc(ctx, n.cancelRetire)
	defer stop()
	set.Close(ctx)
	n.retiring.Wait()
}
