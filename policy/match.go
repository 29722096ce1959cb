package policy

// MatchUser reports whether user matches one of patterns (globs, as
// path.Match takes them), compared as r.UserNames says; the rate classes
// of the configuration choose their users with it, as routes do.
func (r *Rules) MatchUser(patterns []string, user string) bool { return r.matchUser(patterns, user) }
