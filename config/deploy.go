package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Socketmap is the [socketmap] table: Postfix's socketmap_table(5)
// lookups answered by mailroom, so that Postfix in front of it knows the
// local domains (map "domain", for virtual_mailbox_domains) and the
// deliverable addresses (map "mailbox", for virtual_mailbox_maps) and
// rejects unknown recipients at RCPT time instead of bouncing them later.
type Socketmap struct {
	// Listen entries are "unix:/path" or "host:port". Debian's Postfix
	// runs its smtpd and trivial-rewrite chrooted in /var/spool/postfix,
	// so put the socket under it, e.g.
	// "unix:/var/spool/postfix/mailroom/socketmap.sock", and name it
	// "socketmap:unix:mailroom/socketmap.sock:mailbox" in main.cf.
	// Default: none.
	Listen []string `toml:"listen"`
	// SocketMode is the octal mode of unix sockets. Default "0660".
	SocketMode string `toml:"socket_mode"`
	// SocketGroup owns unix sockets. Default: the server's group (a
	// setgid directory of group postfix gives them that group anyway).
	SocketGroup string `toml:"socket_group"`
}

// Server is the [server] table: how `serve` runs as a process.
type Server struct {
	// User is the account `serve` runs as when started as root without
	// systemd (whose unit sets User= itself): it binds its ports and
	// sockets as root, then takes this user's uid, gid and groups for
	// good before it opens data_dir, which must belong to that user.
	// Started as this user already, nothing changes; started as another
	// user, serve refuses. Default "" (run as started). Example: "mailroom".
	User string `toml:"user"`
}

// Metrics is the [metrics] table: an HTTP endpoint for Prometheus
// (GET /metrics: messages, deliveries, rejections, logins, connections,
// the queue, Go's runtime) and for health checks (GET /healthz: 200
// "ok", or 503 and what is wrong). It has no authentication: keep it on
// loopback or behind a firewall.
type Metrics struct {
	// Listen is the TCP "host:port" to serve on; a loopback address
	// unless a firewall guards it (check warns otherwise). Default ""
	// (off). Example: "127.0.0.1:9154".
	Listen string `toml:"listen"`
}

// SocketmapMode is socketmap.socket_mode as a file mode.
func (c *Config) SocketmapMode() (os.FileMode, error) { return parseMode(c.Socketmap.SocketMode) }

func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o660, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("not an octal mode from 0000 to 0777")
	}
	return os.FileMode(m), nil
}

// absUnix makes the "unix:" entries of listen absolute, relative to base.
func absUnix(listen []string, base string) {
	for i, l := range listen {
		if sock, ok := strings.CutPrefix(l, "unix:"); ok && sock != "" && !filepath.IsAbs(sock) {
			listen[i] = "unix:" + filepath.Join(base, sock)
		}
	}
}

// validateDeploy checks the tables that put mailroom into a system:
// [server], [socketmap] and [metrics].
func (c *Config) validateDeploy(bad func(key, format string, args ...any), checkAddr func(key, a string)) {
	if c.Server.User != "" {
		if _, err := user.Lookup(c.Server.User); err != nil {
			bad("server.user", "no user %q on this system: create it (contrib/sysusers.d/mailroom.conf: systemd-sysusers) or name another", c.Server.User)
		}
	}
	for i, l := range c.Socketmap.Listen {
		key := fmt.Sprintf("socketmap.listen[%d]", i)
		if sock, ok := strings.CutPrefix(l, "unix:"); ok {
			if sock == "" {
				bad(key, "%q has no path: write \"unix:/var/spool/postfix/mailroom/socketmap.sock\"", l)
			}
			continue
		}
		checkAddr(key, l)
	}
	if c.Metrics.Listen != "" {
		if strings.HasPrefix(c.Metrics.Listen, "unix:") {
			bad("metrics.listen", "%q: Prometheus scrapes over TCP: write \"127.0.0.1:9154\"", c.Metrics.Listen)
		} else {
			checkAddr("metrics.listen", c.Metrics.Listen)
		}
	}
	if _, err := c.SocketmapMode(); err != nil {
		bad("socketmap.socket_mode", "%q: %v: write an octal mode such as \"0660\"", c.Socketmap.SocketMode, err)
	}
}
