package proxy

import "github.com/ftpsgate/ftpsgate/rewrite"

// SetDispatchHook installs f as the hook every session of s calls before
// handling a command, until the returned function removes it. Tests only.
func (s *Server) SetDispatchHook(f func(rewrite.Command)) (remove func()) {
	s.dispatchHook.Store(&f)
	return func() { s.dispatchHook.Store(nil) }
}
