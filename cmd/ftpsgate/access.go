package main

import (
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// checkAccess reports the files of cfg that user name could not use as
// run needs them: the listeners' certificate, key and client CA files
// read, the audit files' directories written, the acme blocks' files read
// and their storage written, the auth blocks' user, TOTP and directory CA
// files read, a spool directory usable (or creatable) as the proxy's own
// 0700 directory. Secret files read into the configuration (passwords,
// notify secrets aside) are not named here. It judges by the files' owners, groups and
// mode bits (and the directories on the way), as the kernel would for a
// process of that user and its groups: "validate -as-user" run as root
// then tells what the service's own start would hit, such as systemd's
// DynamicUser meeting a root-owned key of mode 0600. ACLs and capabilities
// are not read.
func checkAccess(cfg *config.Config, name string) ([]string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	var gids []int
	ids, _ := u.GroupIds()
	for _, g := range ids {
		if n, err := strconv.Atoi(g); err == nil {
			gids = append(gids, n)
		}
	}
	var problems []string
	seen := map[string]bool{}
	need := func(path string, bit uint32, what string) {
		if path == "" || seen[path] {
			return
		}
		seen[path] = true
		if err := mayAccess(path, uid, gids, bit); err != nil {
			problems = append(problems, fmt.Sprintf("user %s cannot %s %s: %v", name, what, path, err))
		}
	}
	for _, l := range cfg.Listeners {
		need(l.CertFile, 4, "read")
		need(l.KeyFile, 4, "read")
	}
	for _, a := range cfg.ACME {
		need(a.CARootsFile, 4, "read")
		if a.EAB != nil {
			need(a.EAB.HMACFile, 4, "read")
		}
		if a.DNS01 != nil {
			for _, f := range a.DNS01.Files {
				need(f, 4, "read")
			}
		}
		if a.StorageRedis {
			continue // in the state block's Redis
		}
		// run creates the storage directory, and writes certificates,
		// keys and locks in it.
		dir := a.Storage
		for {
			if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
				break
			}
			dir = filepath.Dir(dir)
		}
		if dir == a.Storage {
			need(dir, 4|2|1, "write the acme storage in")
		} else {
			need(dir, 2|1, "create the acme storage in")
		}
	}
	if al := cfg.AgentListener; al != nil {
		need(al.CertFile, 4, "read")
		need(al.KeyFile, 4, "read")
	}
	for _, n := range cfg.Notifies { // read at start and at each reload
		need(n.SecretFile, 4, "read")
	}
	for _, l := range cfg.Listeners {
		need(l.ClientCAFile, 4, "read")
	}
	for _, an := range slices.Sorted(maps.Keys(cfg.Auths)) { // read at start, on change and at each reload
		a := cfg.Auths[an]
		need(a.UserFile, 4, "read")
		need(a.TOTPFile, 4, "read")
		if a.LDAP != nil {
			need(a.LDAP.CAFile, 4, "read")
		}
	}
	for _, sn := range slices.Sorted(maps.Keys(cfg.Scans)) {
		if sc := cfg.Scans[sn]; sc.Mode == config.ScanSpool && !seen[sc.SpoolDir] {
			seen[sc.SpoolDir] = true
			if p := spoolAccess(sc.SpoolDir, uid, gids); p != "" {
				problems = append(problems, fmt.Sprintf("user %s cannot use %s as scan %q's spool_dir: %s", name, sc.SpoolDir, sn, p))
			}
		}
	}
	for _, f := range []string{cfg.Audit.File, cfg.Audit.Xferlog} {
		if f == "" || f == "-" {
			continue
		}
		if _, err := os.Stat(f); err == nil {
			need(f, 2, "write")
		} else {
			need(filepath.Dir(f), 2|1, "create files in")
		}
	}
	return problems, nil
}

// spoolAccess says why uid could not use dir as a spool directory, or "":
// run creates it (and its missing parents) 0700, and refuses one that
// another user owns or that lets anyone else in (proxy/spool.go).
func spoolAccess(dir string, uid int, gids []int) string {
	fi, err := os.Lstat(dir)
	if err != nil {
		parent := dir
		for {
			parent = filepath.Dir(parent)
			if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
				break
			}
		}
		if err := mayAccess(parent, uid, gids, 2|1); err != nil {
			return fmt.Sprintf("cannot create it in %s: %v", parent, err)
		}
		return ""
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return "not a directory (a symbolic link is refused)"
	case st != nil && int(st.Uid) != uid:
		return fmt.Sprintf("owned by uid %d; the proxy refuses a spool it does not own", st.Uid)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Sprintf("mode %04o lets other users in; the proxy refuses it (make it 0700)", fi.Mode().Perm())
	}
	if err := mayAccess(dir, uid, gids, 4|2|1); err != nil {
		return err.Error()
	}
	return ""
}

// mayAccess decides whether uid (in gids) has the access bits (4 read, 2
// write, 1 execute) on path, and search (execute) on each directory above
// it. Root may do anything but execute a file with no execute bit.
func mayAccess(path string, uid int, gids []int, bits uint32) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if err := modeAllows(dir, uid, gids, 1); err != nil {
			return fmt.Errorf("directory %s: %w", dir, err)
		}
		if dir == "/" {
			break
		}
	}
	return modeAllows(abs, uid, gids, bits)
}

func modeAllows(path string, uid int, gids []int, bits uint32) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return err
	}
	if uid == 0 {
		return nil
	}
	perm := st.Mode & 0o777
	var have uint32
	switch {
	case int(st.Uid) == uid:
		have = perm >> 6
	case slices.Contains(gids, int(st.Gid)):
		have = (perm >> 3) & 7
	default:
		have = perm & 7
	}
	if have&bits != bits {
		return fmt.Errorf("mode %04o, owner %d, group %d", perm, st.Uid, st.Gid)
	}
	return nil
}
