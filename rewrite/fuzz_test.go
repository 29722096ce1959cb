package rewrite

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// The parsers face the network: whatever arrives, they must not panic, and
// what they accept must rebuild into exactly one well-formed line or reply.

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice\r\n", "RETR a b\r\n", "\xff\xf4\xff\xf2ABOR\r\n", "USER a\rPASS b\r\n", "\r\n", "NOOP"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		line, err := ReadLine(bufio.NewReader(bytes.NewReader(in)), 512)
		if err != nil {
			return
		}
		cmd, err := ParseCommand(line)
		if err != nil {
			return
		}
		w := cmd.Wire()
		if bytes.Count(w, []byte("\r\n")) != 1 || !bytes.HasSuffix(w, []byte("\r\n")) ||
			bytes.ContainsAny(w[:len(w)-2], "\r\n\x00") {
			t.Fatalf("%q rebuilt as %q", in, w)
		}
		again, err := ParseCommand(w[:len(w)-2])
		if err != nil || again != cmd {
			t.Fatalf("%q does not round-trip: %+v vs %+v (%v)", in, again, cmd, err)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"200 OK\r\n", "211-a\r\n b\r\n211 End\r\n", "227 Entering Passive Mode (127,0,0,1,4,1).\r\n",
		"229 (|||1025|)\r\n", "211-x\r\n211\r\n", "999 x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, err := ReadReply(bufio.NewReader(bytes.NewReader(in)), ReplyLimits{MaxLine: 256, MaxBytes: 4096, MaxLines: 64})
		if err != nil {
			return
		}
		if rep.Code < 100 || rep.Code > 599 || len(rep.Lines) == 0 {
			t.Fatalf("accepted %+v", rep)
		}
		last := rep.Lines[len(rep.Lines)-1]
		if !strings.HasPrefix(last, rep.Lines[0][:3]+" ") && last != rep.Lines[0][:3] {
			t.Fatalf("last line %q does not end reply %d", last, rep.Code)
		}
		again, err := ReadReply(bufio.NewReader(bytes.NewReader(rep.Wire())), ReplyLimits{})
		if err != nil || again.Code != rep.Code || len(again.Lines) != len(rep.Lines) {
			t.Fatalf("relayed reply reads differently: %+v vs %+v (%v)", again, rep, err)
		}
		ParsePASV(rep)
		ParseEPSV(rep)
		AnnouncedSize(rep)
		STOUName(rep)
		ParseFEAT(rep).Merge([]string{"PBSZ"}, func(string) bool { return false }).Reply()
	})
}

// FuzzActive: PORT and EPRT arguments come from clients. An accepted one
// names a usable address and port, and formats back to an argument that
// parses to the same address.
func FuzzActive(f *testing.F) {
	for _, s := range []string{"127,0,0,1,156,64", "|1|127.0.0.1|40000|", "|2|::1|40000|", "!1!10.0.0.1!21!",
		"|2|::ffff:127.0.0.1|40000|", "|3|x|1|", "1,2,3,4,5,6,7", "|1|127.0.0.1|0|"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		if ap, err := ParsePORT(arg); err == nil {
			if !ap.Addr().Is4() || ap.Port() == 0 {
				t.Fatalf("PORT %q gave %v", arg, ap)
			}
			back, err := PORTArg(ap)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := ParsePORT(back); err != nil || again != ap {
				t.Fatalf("PORT %q → %v → %q → %v (%v)", arg, ap, back, again, err)
			}
		}
		if ap, err := ParseEPRT(arg); err == nil {
			if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
				t.Fatalf("EPRT %q gave %v", arg, ap)
			}
			if again, err := ParseEPRT(EPRTArg(ap)); err != nil || again != ap {
				t.Fatalf("EPRT %q → %v → %v (%v)", arg, ap, again, err)
			}
		}
	})
}
