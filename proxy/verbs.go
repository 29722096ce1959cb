package proxy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// verb is everything the proxy knows about one FTP command: how it is
// handled, when it may come, and what it does, which is all the policy
// judges it by. The table below is the only place that classifies verbs:
// the dispatch, the policy's command rules, the metrics' verb label, the
// audit and xferlog all read it.
type verb struct {
	// name is the canonical name; aliases are other names of the same
	// command (RFC 775's X verbs, which vsftpd still accepts): a rule on
	// one name holds for all of them.
	name    string
	aliases []string
	// site, when set, says the verb is another name of that SITE
	// subcommand (pure-ftpd's bare CHMOD is SITE CHMOD).
	site string
	// class is what the command does; classify, when set, decides it
	// from the argument instead (MDTM with a time writes, SITE by its
	// subcommand, STAT with a path lists).
	class    policy.Class
	classify func(arg string) (sub string, class policy.Class)
	// handle answers the command. Nil relays it to the backend as
	// parsed, and relays the backend's replies; after, if set, then sees
	// the final reply the client got, to follow the backend's working
	// directory.
	handle func(*session, rewrite.Command) error
	after  func(*workDir, *rewrite.Reply)
	// preLogin: allowed before USER, when there is no backend yet; other
	// commands get 530 until then.
	preLogin bool
	// duringTransfer: answered by the proxy while a transfer runs (its
	// backend control connection is busy); every other command waits for
	// the transfer to end (RFC 959 §4.1.3 allows ABOR, STAT and NOOP).
	duringTransfer bool
	// essential: no session works without it; command rules never apply
	// and deny_commands may not name it.
	essential bool
	// data is the direction of the data a transfer command moves; ""
	// for commands that open no data connection.
	data audit.Direction
	// xferlog: its transfers are file transfers, which xferlog records
	// (listings are not).
	xferlog bool
}

// verbTable is the whole protocol surface. A verb not in it is refused
// with 502 (unknown_commands = "reject", the default) or relayed and
// classed Write ("relay").
var verbTable = []*verb{
	// Security: the proxy terminates TLS and answers these itself.
	{name: "AUTH", class: policy.Security, handle: (*session).cmdAUTH, preLogin: true, essential: true},
	{name: "PBSZ", class: policy.Security, handle: (*session).cmdPBSZ, preLogin: true, essential: true},
	{name: "PROT", class: policy.Security, handle: (*session).cmdPROT, preLogin: true, essential: true},
	{name: "CCC", class: policy.Security, handle: refuse(534, "CCC refused: the control connection stays encrypted."), preLogin: true},
	{name: "ADAT", class: policy.Security, handle: refuse(502, "ADAT not supported (TLS needs no security data)."), preLogin: true},

	// Session: the session itself; no file is touched.
	{name: "USER", class: policy.Session, handle: cmdUSER, preLogin: true, essential: true},
	{name: "PASS", class: policy.Session, handle: cmdPASS, preLogin: true, essential: true},
	{name: "HOST", class: policy.Session, handle: (*session).cmdHOST, preLogin: true, essential: true},
	{name: "QUIT", class: policy.Session, handle: (*session).cmdQUIT, preLogin: true, essential: true},
	{name: "NOOP", class: policy.Session, handle: (*session).cmdNOOP, preLogin: true, duringTransfer: true, essential: true},
	{name: "FEAT", class: policy.Session, handle: (*session).cmdFEAT, preLogin: true, essential: true},
	{name: "REIN", class: policy.Session, handle: refuse(502, "REIN not supported; reconnect instead.")},
	{name: "ACCT", class: policy.Session},
	{name: "TYPE", class: policy.Session, handle: (*session).cmdTYPE},
	{name: "MODE", class: policy.Session},
	{name: "STRU", class: policy.Session},
	{name: "OPTS", class: policy.Session},
	{name: "SYST", class: policy.Session},
	{name: "HELP", class: policy.Session},
	{name: "CLNT", class: policy.Session},
	{name: "LANG", class: policy.Session},
	{name: "STAT", classify: classifySTAT, duringTransfer: true},

	// Data: set up or control a data connection; the transfer command
	// decides what it does. The proxy owns the client's data connections.
	{name: "PASV", class: policy.Data, handle: (*session).cmdPassive},
	{name: "EPSV", class: policy.Data, handle: (*session).cmdPassive},
	{name: "PORT", class: policy.Data, handle: (*session).cmdActive},
	{name: "EPRT", class: policy.Data, handle: (*session).cmdActive},
	{name: "REST", class: policy.Data, handle: (*session).cmdREST},
	{name: "ABOR", class: policy.Data, handle: (*session).cmdABOR, preLogin: true, essential: true},
	// Transfer commands: data flows through the proxy.
	{name: "RETR", class: policy.Read, handle: (*session).cmdTransfer, data: audit.Download, xferlog: true},
	{name: "LIST", class: policy.List, handle: (*session).cmdTransfer, data: audit.Download},
	{name: "NLST", class: policy.List, handle: (*session).cmdTransfer, data: audit.Download},
	{name: "MLSD", class: policy.List, handle: (*session).cmdTransfer, data: audit.Download},
	{name: "STOR", class: policy.Write, handle: (*session).cmdTransfer, data: audit.Upload, xferlog: true},
	{name: "STOU", class: policy.Write, handle: (*session).cmdTransfer, data: audit.Upload, xferlog: true},
	{name: "APPE", class: policy.Write, handle: (*session).cmdTransfer, data: audit.Upload, xferlog: true},

	// Read: files are read, directories walked.
	{name: "PWD", aliases: []string{"XPWD"}, class: policy.Read, after: (*workDir).notePWD},
	{name: "CWD", aliases: []string{"XCWD"}, class: policy.Read, after: (*workDir).noteCWD},
	{name: "CDUP", aliases: []string{"XCUP"}, class: policy.Read, after: (*workDir).noteCWD},
	{name: "SIZE", class: policy.Read},
	{name: "MDTM", classify: classifyMDTM},
	{name: "MLST", class: policy.Read},
	{name: "AVBL", class: policy.Read},
	{name: "HASH", class: policy.Read},
	{name: "XCRC", class: policy.Read},
	{name: "XMD5", class: policy.Read},
	{name: "XSHA1", class: policy.Read},
	{name: "XSHA256", class: policy.Read},
	{name: "XSHA512", class: policy.Read},

	// Write: something on the server changes.
	{name: "DELE", class: policy.Write},
	{name: "MKD", aliases: []string{"XMKD"}, class: policy.Write},
	{name: "RMD", aliases: []string{"XRMD"}, class: policy.Write},
	{name: "RMDA", class: policy.Write},
	{name: "RNFR", class: policy.Write},
	{name: "RNTO", class: policy.Write},
	{name: "ALLO", class: policy.Write},
	{name: "MFMT", class: policy.Write},
	{name: "MFCT", class: policy.Write},
	{name: "MFF", class: policy.Write},
	{name: "SITE", classify: classifySITE},
	{name: "CHMOD", site: "CHMOD", class: policy.Write},
}

// siteCommands classifies SITE subcommands. Servers differ (vsftpd: CHMOD,
// UMASK, IDLE, HELP; pure-ftpd: also UTIME, TIME; ProFTPD: CHGRP, UTIME,
// SYMLINK, CPFR/CPTO, MKDIR, RMDIR, QUOTA…): one server's extension is
// another's bypass, so a subcommand not listed here is a write.
var siteCommands = map[string]policy.Class{
	"HELP": policy.Session, "IDLE": policy.Session, "TIME": policy.Session, "QUOTA": policy.Read,
	"CHMOD": policy.Write, "CHGRP": policy.Write, "CHOWN": policy.Write, "UMASK": policy.Write,
	"UTIME": policy.Write, "SYMLINK": policy.Write, "COPY": policy.Write, "CPFR": policy.Write,
	"CPTO": policy.Write, "MKDIR": policy.Write, "RMDIR": policy.Write, "EXEC": policy.Write,
}

// verbs indexes verbTable by every name, and siteAliases lists the bare
// verbs that are other names of a SITE subcommand.
var (
	verbs       = map[string]*verb{}
	siteAliases = map[string][]string{}
)

func init() {
	for _, v := range verbTable {
		for _, name := range append([]string{v.name}, v.aliases...) {
			if verbs[name] != nil {
				panic("verb table: " + name + " twice")
			}
			verbs[name] = v
		}
		if v.site != "" {
			siteAliases[v.site] = append(siteAliases[v.site], v.name)
		}
	}
}

// lookupVerb returns the table's entry for a verb (upper case, as
// rewrite.ParseCommand gives it), or nil when the verb is unknown.
func lookupVerb(name string) *verb { return verbs[name] }

// op classifies one command of this verb for the policy.
func (v *verb) op(arg string) policy.Op {
	o := policy.Op{Verb: v.name, Aliases: v.aliases, Class: v.class, Essential: v.essential}
	if v.classify != nil {
		o.Sub, o.Class = v.classify(arg)
	}
	if v.site != "" {
		o.Verb, o.Sub = "SITE", v.site
	}
	if o.Verb == "SITE" {
		o.Aliases = siteAliases[o.Sub]
	}
	return o
}

// unknownOp is how the policy sees a verb the table does not know, when
// unknown_commands = "relay": a write, since its effect is unknown.
func unknownOp(name string) policy.Op { return policy.Op{Verb: name, Class: policy.Write} }

// classifyMDTM: with one argument MDTM reads a file's time; with a time
// and a path it sets it (vsftpd, whose mdtm_write is on by default, takes
// "MDTM 20000101000000 file"). A first word of 14 or more digits (with the
// fraction or zone some servers take) followed by more is a write. A file
// really named "20000101000000 x" is judged a write too: the safe reading.
func classifyMDTM(arg string) (string, policy.Class) {
	first, rest, ok := strings.Cut(strings.TrimLeft(arg, " "), " ")
	if ok && rest != "" && len(first) >= 14 && strings.Trim(first, "0123456789.+-Zz") == "" {
		return "", policy.Write
	}
	return "", policy.Read
}

// classifySITE classifies SITE by its subcommand: the first word, in upper
// case. An empty or unknown one is a write.
func classifySITE(arg string) (string, policy.Class) {
	sub, _, _ := strings.Cut(strings.TrimLeft(arg, " "), " ")
	sub = strings.ToUpper(sub)
	if c, ok := siteCommands[sub]; ok {
		return sub, c
	}
	return sub, policy.Write
}

// classifySTAT: STAT alone reports the session's status; with a path it
// lists it over the control connection (RFC 959 §4.1.3).
func classifySTAT(arg string) (string, policy.Class) {
	if strings.TrimSpace(arg) == "" {
		return "", policy.Session
	}
	return "", policy.List
}

// metricLabel is the verb label of ftpsgate_commands_total: the canonical
// name of a known verb, OTHER for the rest (the label set stays bounded).
func metricLabel(v *verb) string {
	if v == nil {
		return "OTHER"
	}
	return v.name
}

// CheckConfig checks cfg's command rules against the verb table, which
// the configuration package cannot see: a rule naming an essential verb is
// an error (no session would work); one naming a verb the table does not
// know is a warning, since such a verb is refused anyway unless
// unknown_commands = "relay". Run and validate report both; Start and
// Reload refuse a configuration with errors.
func CheckConfig(cfg *config.Config) (warnings []string, err error) {
	r := &cfg.Policy
	var errs []error
	for _, l := range []struct {
		attr string
		list []string
	}{{"allow_commands", r.AllowCommands}, {"deny_commands", r.DenyCommands}, {"read_only_commands", r.ReadOnlyCommands}} {
		for _, e := range l.list {
			name, _, isSite := strings.Cut(e, " ")
			v := lookupVerb(name)
			switch {
			case isSite || name == "SITE":
			case v == nil && r.RelayUnknown:
			case v == nil:
				warnings = append(warnings, fmt.Sprintf("policy.%s: %s is not a verb ftpsgate knows; unknown verbs are refused (502) unless unknown_commands = \"relay\"", l.attr, e))
			case l.attr == "deny_commands" && v.essential:
				errs = append(errs, fmt.Errorf("policy.deny_commands: %s cannot be denied: no session works without it", e))
			}
		}
	}
	return warnings, errors.Join(errs...)
}
