package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// session, transfer and lingering close must end with its server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
