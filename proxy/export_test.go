package proxy

import "github.com/ftpsgate/ftpsgate/rewrite"

// SetDispatchHook installs f as the hook every session calls before
// handling a command, until the returned function removes it. Tests only.
func SetDispatchHook(f func(rewrite.Command)) (remove func()) {
	dispatchHook.Store(&f)
	return func() { dispatchHook.Store(nil) }
}
