package main

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// sdNotify tells systemd the service's state (sd_notify(3)): "READY=1"
// once the listeners accept, "STOPPING=1" when shutting down. Outside
// systemd (no NOTIFY_SOCKET) it does nothing. The protocol is one datagram
// on a Unix socket; no library is needed for it.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' { // an abstract socket
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1 (sd_notify(3), Type=notify-reload).
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
