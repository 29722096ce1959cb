package config

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/proxy/scan"
)

var (
	scanEngines = enum[ScanEngine]{{name: "clamd", value: Clamd}, {name: "icap", value: ICAP}}
	scanActions = enum[ScanAction]{{name: "reject", value: ScanReject, note: "the default"}, {name: "pass", value: ScanPass}}
	scanModes   = enum[ScanMode]{{name: "inline", value: ScanInline, note: "the default"}, {name: "spool", value: ScanSpool}}
	// scanVerbs are the verbs a scan block may name: the uploads.
	scanVerbs = []string{"STOR", "APPE", "STOU"}
)

// scans compiles the scan blocks into cfg.Scans.
func (c *compiler) scans(fs *fileSchema, cfg *Config) {
	cfg.Scans = make(map[string]*Scan)
	for i := range fs.Scans {
		sb := &fs.Scans[i]
		if _, dup := cfg.Scans[sb.Name]; dup {
			c.errorf(&sb.DefRange, "Duplicate scan", "A scan block named %q is already defined.", sb.Name)
			continue
		}
		cfg.Scans[sb.Name] = c.scan(sb)
	}
	// A spool's stale files are removed at start: two blocks sharing a
	// directory would remove each other's.
	spools := map[string]string{}
	for i := range fs.Scans {
		sb := &fs.Scans[i]
		s := cfg.Scans[sb.Name]
		if s == nil || s.Mode != ScanSpool || s.SpoolDir == "" {
			continue
		}
		if other, dup := spools[s.SpoolDir]; dup && other != sb.Name {
			c.errorf(at(sb.SpoolDirAt, sb.DefRange), "Duplicate spool_dir",
				"scan %q spools into %s, as scan %q does: each spool needs a directory of its own, whose stale files are removed at start.", sb.Name, s.SpoolDir, other)
			continue
		}
		spools[s.SpoolDir] = sb.Name
	}
}

func (c *compiler) scan(sb *scanBlock) *Scan {
	s := defaultScan()
	s.Name = sb.Name
	choose(c, at(sb.EngineAt, sb.DefRange), "Invalid scan engine", "engine", &sb.Engine, &s.Engine, scanEngines, "")
	c.scanAddress(sb, s)
	c.duration(at(sb.TimeoutAt, sb.DefRange), "timeout", sb.Timeout, &s.Timeout)
	if sb.MaxSize != nil {
		n, err := parseSize(*sb.MaxSize)
		if err != nil {
			c.errorf(at(sb.MaxSizeAt, sb.DefRange), "Invalid max_size", "max_size must be a positive size in bytes, or with K, M or G (\"25M\") as clamd's StreamMaxLength, not %q.", *sb.MaxSize)
		}
		s.MaxSize = n
	}
	choose(c, at(sb.AboveMaxAt, sb.DefRange), "Invalid above_max", "above_max", sb.AboveMax, &s.AboveMax, scanActions, "")
	choose(c, at(sb.OnErrorAt, sb.DefRange), "Invalid on_error", "on_error", sb.OnError, &s.OnError, scanActions, "")
	if sb.Verbs != nil {
		r := at(sb.VerbsAt, sb.DefRange)
		if len(*sb.Verbs) == 0 {
			c.errorf(r, "Invalid verbs", "verbs is empty: leave the scan block unnamed to scan nothing.")
		}
		s.Verbs = nil
		for i, v := range *sb.Verbs {
			v = strings.ToUpper(v)
			switch {
			case !slices.Contains(scanVerbs, v):
				c.errorf(c.elemRange(r, i), "Invalid verbs", "%q is not an upload verb: verbs may name STOR, APPE and STOU.", (*sb.Verbs)[i])
			case slices.Contains(s.Verbs, v):
				c.errorf(c.elemRange(r, i), "Invalid verbs", "%s is listed twice.", v)
			default:
				s.Verbs = append(s.Verbs, v)
			}
		}
	}
	c.spool(sb, s)
	return s
}

// scanAddress reads address (and ca_file) by the block's engine: clamd's
// "unix:/path" or "tcp:host:port", or an ICAP service's URL.
func (c *compiler) scanAddress(sb *scanBlock, s *Scan) {
	r := at(sb.AddressAt, sb.DefRange)
	if s.Engine == ICAP {
		u, err := scan.ParseICAPURL(sb.Address)
		if err != nil {
			c.errorf(r, "Invalid scanner address", "%s (engine \"icap\" takes icap://host[:port]/service or icaps://…)", err)
			return
		}
		s.Network, s.Address, s.ICAP = "tcp", u.Host, u
	} else {
		network, address, err := scan.ParseAddress(sb.Address)
		if err != nil {
			c.errorf(r, "Invalid scanner address", "%s", err)
		}
		s.Network, s.Address = network, address
	}
	if sb.CAFile == nil {
		return
	}
	r = at(sb.CAFileAt, sb.DefRange)
	if s.ICAP == nil || s.ICAP.Scheme != "icaps" {
		c.errorf(r, "Invalid ca_file", "ca_file verifies an icaps:// scanner; this scan block's address is not one.")
		return
	}
	s.RootCAs = c.pemPool(r, "ca_file", *sb.CAFile)
}

// spool compiles mode, spool_dir and spool_max into s.
func (c *compiler) spool(sb *scanBlock, s *Scan) {
	choose(c, at(sb.ModeAt, sb.DefRange), "Invalid scan mode", "mode", sb.Mode, &s.Mode, scanModes, "")
	if s.Mode != ScanSpool {
		for _, a := range []struct {
			set  bool
			r    hcl.Range
			name string
		}{{sb.SpoolDir != nil, sb.SpoolDirAt, "spool_dir"}, {sb.SpoolMax != nil, sb.SpoolMaxAt, "spool_max"}} {
			if a.set {
				c.errorf(at(a.r, sb.DefRange), "Invalid "+a.name, "%s applies to mode = \"spool\" only; this scan block is %s.", a.name, s.Mode)
			}
		}
		return
	}
	s.SpoolDir = filepath.Join(DefaultSpoolRoot, sb.Name)
	if sb.SpoolDir != nil {
		d := *sb.SpoolDir
		if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
			c.errorf(at(sb.SpoolDirAt, sb.DefRange), "Invalid spool_dir",
				"spool_dir must be an absolute directory path other than /, not %q: the proxy creates it and removes stale files from it.", d)
		}
		s.SpoolDir = filepath.Clean(d)
	}
	if sb.SpoolMax != nil {
		n, err := ParseSize(*sb.SpoolMax, false)
		if err != nil || n <= 0 {
			c.errorf(at(sb.SpoolMaxAt, sb.DefRange), "Invalid spool_max",
				"spool_max must be a positive size such as \"10GiB\", not %q.", *sb.SpoolMax)
			return
		}
		s.SpoolMax = n
	}
	if s.AboveMax == ScanReject && s.SpoolMax < s.MaxSize {
		c.errorf(at(sb.SpoolMaxAt, sb.DefRange), "Invalid spool_max",
			"spool_max (%d bytes) is below max_size (%d bytes): an upload the scan accepts would not fit in the spool.", s.SpoolMax, s.MaxSize)
	}
}

// scanNamed is the scan block a listener or route names (v, at r), or nil
// when v is nil; an unknown name is an error.
func (c *compiler) scanNamed(cfg *Config, r *hcl.Range, who string, v *string) *Scan {
	if v == nil {
		return nil
	}
	s, ok := cfg.Scans[*v]
	if !ok {
		c.errorf(r, "Unknown scan", "%s names scan %q, which no scan block defines.", who, *v)
	}
	return s
}

// parseSize reads a scan's size as every size of the configuration
// ("25MiB", ParseSize), or as clamd's configuration writes it, so that
// StreamMaxLength can be copied over: bytes, or a number followed by K or
// M (and here G), in units of 1024.
func parseSize(v string) (int64, error) {
	if n, err := ParseSize(v, false); err == nil && n > 0 {
		return n, nil
	}
	v = strings.TrimSpace(v)
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			mult, v = 1<<10, v[:n-1]
		case 'm', 'M':
			mult, v = 1<<20, v[:n-1]
		case 'g', 'G':
			mult, v = 1<<30, v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, strconv.ErrSyntax
	}
	return n * mult, nil
}
