package proxy

import (
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// TestHashSlots: a password check waits while every hash slot is taken,
// and runs once one is given back: a flood of PASS commands costs at most
// that many hashes (CPU, and argon2id's memory) at once.
func TestHashSlots(t *testing.T) {
	h, err := userfile.Hash("pw", userfile.Argon2id)
	if err != nil {
		t.Fatal(err)
	}
	f, errs := userfile.Parse([]byte("alice:" + h + "\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	s := &Server{hashSlots: newHashSlots()}
	if cap(s.hashSlots) < 2 {
		t.Fatalf("%d hash slots", cap(s.hashSlots))
	}
	for i := 0; i < cap(s.hashSlots); i++ {
		s.hashSlots <- struct{}{} // every slot held by a check in progress
	}
	done := make(chan bool)
	go func() {
		_, ok := s.verifyPassword(f, "alice", "pw", false)
		done <- ok
	}()
	select {
	case <-done:
		t.Fatal("a check ran while every slot was taken")
	case <-time.After(2 * time.Second): // an unbounded check takes about 100 ms
	}
	<-s.hashSlots // one check ends
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("the right password was refused")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the check never ran after a slot was freed")
	}
	if len(s.hashSlots) != cap(s.hashSlots)-1 {
		t.Fatalf("the check did not give its slot back: %d of %d held", len(s.hashSlots), cap(s.hashSlots))
	}
}
