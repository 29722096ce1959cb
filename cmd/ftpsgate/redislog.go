package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// redisLog takes go-redis's own messages (a failed dial, each time its
// pool tries again) at the debug level: the proxy logs each episode of an
// unreachable Redis once, with its error (proxy/state_redis.go), and
// go-redis would otherwise print a line a second to stderr while Redis is
// away. go-redis holds its logger in a package variable, so the wiring
// sets it, once (redis.SetLogger).
type redisLog struct{ log *zap.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug("redis client", zap.String("message", fmt.Sprintf(format, v...)))
}
