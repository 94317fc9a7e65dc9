package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"mailroom/config"
	"mailroom/internal/listen"
)

// prebound holds the listeners `serve` opened as root before it gave up
// root for [server] user; serve takes them from here by address.
type prebound struct {
	byAddr map[string]net.Listener
}

// listen returns the listener bound for addr before the privileges were
// dropped, or opens it now.
func (p *prebound) listen(addr string, uo listen.UnixOptions) (net.Listener, error) {
	if p != nil {
		if l, ok := p.byAddr[addr]; ok {
			delete(p.byAddr, addr)
			return l, nil
		}
	}
	return listen.Listen(addr, uo)
}

// Close closes what serve did not take (after a failed start).
func (p *prebound) Close() {
	if p == nil {
		return
	}
	for _, l := range p.byAddr {
		l.Close()
	}
}

// listenSpec is one configured listening address with its socket options.
type listenSpec struct {
	addr string
	uo   listen.UnixOptions
}

// configuredListeners lists every address serve listens on but the
// control socket (which lives in data_dir and is made by the user itself).
// Validate has checked the socket modes; an error here is still returned
// rather than a socket made with mode 0.
func configuredListeners(cfg *config.Config) ([]listenSpec, error) {
	var out []listenSpec
	lmtpMode, err := cfg.SocketMode()
	if err != nil {
		return nil, fmt.Errorf("lmtp.socket_mode: %w", err)
	}
	for _, a := range cfg.LMTP.Listen {
		out = append(out, listenSpec{a, listen.UnixOptions{Mode: lmtpMode, Group: cfg.LMTP.SocketGroup}})
	}
	smMode, err := cfg.SocketmapMode()
	if err != nil {
		return nil, fmt.Errorf("socketmap.socket_mode: %w", err)
	}
	for _, a := range cfg.Socketmap.Listen {
		out = append(out, listenSpec{a, listen.UnixOptions{Mode: smMode, Group: cfg.Socketmap.SocketGroup}})
	}
	for _, addrs := range [][]string{cfg.SMTP.Listen, cfg.SMTP.ListenTLS, cfg.Submission.Listen, cfg.Submission.ListenTLS, cfg.IMAP.Listen, cfg.IMAP.ListenTLS} {
		for _, a := range addrs {
			out = append(out, listenSpec{addr: a})
		}
	}
	if cfg.Metrics.Listen != "" {
		out = append(out, listenSpec{addr: cfg.Metrics.Listen})
	}
	return out, nil
}

// runAs is the account [server] user names.
type runAs struct {
	name     string
	uid, gid int
	groups   []int
}

func lookupRunAs(name string) (*runAs, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("server.user: %w", err)
	}
	r := &runAs{name: name}
	if r.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("server.user %s: uid %q: %w", name, u.Uid, err)
	}
	if r.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("server.user %s: gid %q: %w", name, u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("server.user %s: groups: %w", name, err)
	}
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil && !slices.Contains(r.groups, g) {
			r.groups = append(r.groups, g)
		}
	}
	if !slices.Contains(r.groups, r.gid) {
		r.groups = append(r.groups, r.gid)
	}
	if r.uid == 0 {
		return nil, fmt.Errorf("server.user %s is root: name an unprivileged user such as mailroom", name)
	}
	return r, nil
}

// dropPrivileges is what `serve` does first when [server] user is set:
// as that user already, nothing; as root, it makes data_dir (the user's)
// if it is missing, binds every configured listener (ports below 1024
// need root), hands the unix sockets to the user, and takes the user's
// uid, gid and groups for good, on every thread. Any other user cannot
// switch and is refused. It returns the listeners bound, for serve.
func dropPrivileges(cfg *config.Config, log *slog.Logger) (*prebound, error) {
	if cfg.Server.User == "" {
		return nil, nil
	}
	r, err := lookupRunAs(cfg.Server.User)
	if err != nil {
		return nil, withExit(exitConfig, err)
	}
	switch os.Geteuid() {
	case r.uid:
		return nil, nil
	case 0:
	default:
		return nil, withExit(exitConfig, fmt.Errorf("server.user is %s, but serve runs as uid %d, which cannot switch to it: start it as root or as %s", r.name, os.Geteuid(), r.name))
	}
	if err := ownDataDir(cfg.DataDir, r); err != nil {
		return nil, withExit(exitConfig, err)
	}
	specs, err := configuredListeners(cfg)
	if err != nil {
		return nil, withExit(exitConfig, err)
	}
	p := &prebound{byAddr: map[string]net.Listener{}}
	for _, spec := range specs {
		if _, dup := p.byAddr[spec.addr]; dup {
			continue
		}
		l, err := listen.Listen(spec.addr, spec.uo)
		if err != nil {
			p.Close()
			return nil, withExit(exitTempFail, err)
		}
		p.byAddr[spec.addr] = l
		if sock, ok := strings.CutPrefix(spec.addr, "unix:"); ok {
			// Its group is socket_group's; the owner becomes the user's,
			// like a socket the user had made.
			if err := os.Lchown(sock, r.uid, -1); err != nil {
				p.Close()
				return nil, withExit(exitTempFail, fmt.Errorf("hand unix:%s to %s: %w", sock, r.name, err))
			}
		}
	}
	if err := r.become(); err != nil {
		p.Close()
		return nil, withExit(exitTempFail, err)
	}
	log.Info("dropped privileges", "user", r.name, "uid", r.uid, "gid", r.gid, "listeners", len(p.byAddr))
	return p, nil
}

// ownDataDir makes data_dir for r if it is missing (0700, as serve would)
// and refuses one that belongs to someone else: serve could not write it
// once it is r.
func ownDataDir(dir string, r *runAs) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create data_dir's parent: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("create data_dir: %w", err)
		}
		return os.Chown(dir, r.uid, r.gid)
	}
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != r.uid {
		return fmt.Errorf("data_dir %s belongs to uid %d, not to server.user %s: chown -R %s: %s", dir, st.Uid, r.name, r.name, dir)
	}
	return nil
}

// become takes r's identity: groups, then gid, then uid (after which
// neither could change). Go applies each to every thread of the process.
func (r *runAs) become() error {
	if err := syscall.Setgroups(r.groups); err != nil {
		return fmt.Errorf("setgroups for %s: %w", r.name, err)
	}
	if err := syscall.Setresgid(r.gid, r.gid, r.gid); err != nil {
		return fmt.Errorf("setgid %d (%s): %w", r.gid, r.name, err)
	}
	if err := syscall.Setresuid(r.uid, r.uid, r.uid); err != nil {
		return fmt.Errorf("setuid %d (%s): %w", r.uid, r.name, err)
	}
	// For good: root must not be regained.
	if err := syscall.Setuid(0); err == nil {
		return errors.New("privileges were not dropped: setuid(0) still works")
	}
	return nil
}
