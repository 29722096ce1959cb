package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runResponder serves the smallest FTP a logged-in idle session needs:
// a greeting, any USER/PASS, NOOP, PWD, FEAT, SYST, TYPE, QUIT. It stands in
// for the backend in the memory measurement, where thousands of real
// vsftpd or ProFTPD processes would measure the backend, not the proxy.
func runResponder(args []string) error {
	fs := flag.NewFlagSet("responder", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go respond(conn)
	}
}

func respond(conn net.Conn) {
	defer conn.Close()
	io.WriteString(conn, "220 ftpsload responder\r\n")
	r := bufio.NewReaderSize(conn, 256)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		reply := map[string]string{
			"USER": "331 password please", "PASS": "230 logged in", "NOOP": "200 ok",
			"PWD": `257 "/" is the current directory`, "SYST": "215 UNIX Type: L8",
			"TYPE": "200 type set", "FEAT": "211-Features:\r\n UTF8\r\n211 End", "QUIT": "221 bye",
		}[strings.ToUpper(verb)]
		if reply == "" {
			reply = "502 not implemented here"
		}
		if _, err := io.WriteString(conn, reply+"\r\n"); err != nil || reply == "221 bye" {
			return
		}
	}
}

// runTLSSink is the server half of the Go TLS ceiling: per connection, a
// handshake, then a line "down N" (it sends N bytes) or "up N" (it reads N
// bytes and answers "ok").
func runTLSSink(args []string) error {
	fs := flag.NewFlagSet("tls-sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := fs.String("cert", "", "certificate PEM")
	keyFile := fs.String("key", "", "key PEM")
	fs.Parse(args)
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", *listen, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	block := make([]byte, 256<<10)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			r := bufio.NewReader(conn)
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var dir string
			var n int64
			if _, err := fmt.Sscan(line, &dir, &n); err != nil {
				return
			}
			switch dir {
			case "down":
				for n > 0 {
					m, err := conn.Write(block[:min(int64(len(block)), n)])
					if err != nil {
						return
					}
					n -= int64(m)
				}
			case "up":
				if got, _ := io.CopyN(io.Discard, r, n); got == n {
					io.WriteString(conn, "ok\n")
				}
			}
		}()
	}
}

// runCeiling is the client half: -streams TLS connections to a tls-sink,
// each moving -size bytes one way, aggregate MB/s.
func runCeiling(args []string) error {
	fs := flag.NewFlagSet("ceiling", flag.ExitOnError)
	addr := fs.String("addr", "", "tls-sink address")
	ca := fs.String("ca", "", "PEM file to trust")
	dir := fs.String("dir", "down", "down or up")
	streams := fs.Int("streams", 1, "parallel connections")
	sizeFlag := fs.String("size", "64MiB", "bytes per connection")
	test := fs.String("test", "", "test name written in the result")
	label := fs.String("label", "Go TLS ceiling", "path name written in the result")
	fs.Parse(args)
	size, err := parseSize(*sizeFlag)
	if err != nil {
		return err
	}
	conf, err := clientTLS(*ca, "localhost")
	if err != nil {
		return err
	}
	conns := make([]*tls.Conn, *streams)
	for i := range conns {
		d := tls.Dialer{Config: conf}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := d.DialContext(ctx, "tcp", *addr)
		cancel()
		if err != nil {
			return err
		}
		conns[i] = c.(*tls.Conn)
		defer c.Close()
	}
	var moved, failures atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			n, err := ceilingStream(c, *dir, size)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ftpsload ceiling:", err)
				failures.Add(1)
				return
			}
			moved.Add(n)
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	emit(result{Test: *test, Path: *label, Value: float64(moved.Load()) / secs / 1e6, Unit: "MB/s",
		Failures: int(failures.Load()), Extra: map[string]float64{"bytes": float64(moved.Load()), "seconds": secs, "streams": float64(*streams)}})
	if failures.Load() > 0 {
		return fmt.Errorf("%d streams failed", failures.Load())
	}
	return nil
}

func ceilingStream(c *tls.Conn, dir string, size int64) (int64, error) {
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	if _, err := fmt.Fprintf(c, "%s %d\n", dir, size); err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	if dir == "down" {
		var n int64
		for n < size {
			m, err := c.Read(buf[:min(int64(len(buf)), size-n)])
			n += int64(m)
			if err != nil {
				return n, fmt.Errorf("%d bytes, want %d: %w", n, size, err)
			}
		}
		return n, nil
	}
	var n int64
	for n < size {
		m, err := c.Write(buf[:min(int64(len(buf)), size-n)])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	ok := make([]byte, 3)
	if _, err := io.ReadFull(c, ok); err != nil || string(ok) != "ok\n" {
		return n, errors.Join(errors.New("upload not acknowledged"), err)
	}
	return n, nil
}
