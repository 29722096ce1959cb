package rewrite

import "strings"

// Features is the body of a FEAT reply (RFC 2389 §3.2): one feature per
// line, as "NAME" or "NAME params", in the server's order.
type Features []string

// ParseFEAT extracts the feature lines of a 211 reply. A reply of any other
// code (500, 502: the server has no FEAT) yields no features.
func ParseFEAT(r *Reply) Features {
	if r.Code != 211 || len(r.Lines) < 3 {
		return nil
	}
	var f Features
	for _, l := range r.Lines[1 : len(r.Lines)-1] {
		l = strings.TrimSpace(l)
		if l != "" {
			f = append(f, l)
		}
	}
	return f
}

// FeatureName is the upper-cased first word of a feature line: "REST" for
// "REST STREAM", "AUTH" for "AUTH TLS".
func FeatureName(line string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	return strings.ToUpper(name)
}

// Merge returns the backend's features without those whose name drop
// reports, followed by the lines of add whose names the result lacks. The
// backend's wording of a feature it keeps is left as it was (RFC 2389
// parameters such as "MLST size*;modify*;" matter to clients).
func (f Features) Merge(add []string, drop func(name string) bool) Features {
	out := make(Features, 0, len(f)+len(add))
	have := make(map[string]bool, len(f)+len(add))
	for _, l := range f {
		n := FeatureName(l)
		if drop != nil && drop(n) {
			continue
		}
		out = append(out, l)
		have[n] = true
	}
	for _, l := range add {
		n := FeatureName(l)
		if have[n] {
			continue
		}
		out = append(out, l)
		have[n] = true
	}
	return out
}

// Reply is the 211 reply listing the features.
func (f Features) Reply() *Reply {
	lines := make([]string, 0, len(f)+2)
	lines = append(lines, "Features:")
	lines = append(lines, f...)
	lines = append(lines, "End")
	return NewReply(211, lines...)
}
