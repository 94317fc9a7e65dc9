package config

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Warnings reports settings that are valid but probably not what the
// administrator meant: `mailroom check` prints them and `serve` logs them.
func (c *Config) Warnings() []string {
	var w []string
	if len(c.SMTP.Listen)+len(c.Submission.Listen)+len(c.Submission.ListenTLS)+len(c.LMTP.Listen) == 0 {
		w = append(w, fmt.Sprintf("%s: no [smtp], [submission] or [lmtp] listen addresses: this server will receive no mail", c.Path))
	}
	if c.TLS.Cert == "" && !c.Submission.AllowInsecureAuth {
		for _, a := range c.Submission.Listen {
			if !loopbackListen(a) {
				w = append(w, fmt.Sprintf("%s: submission.listen %q without [tls]: clients that are not on loopback cannot authenticate (set [tls] cert and key)", c.Path, a))
			}
		}
	}
	if c.TLS.Cert == "" && !c.IMAP.AllowInsecureAuth {
		for _, a := range c.IMAP.Listen {
			if !loopbackListen(a) {
				w = append(w, fmt.Sprintf("%s: imap.listen %q without [tls]: clients that are not on loopback cannot log in (LOGINDISABLED; set [tls] cert and key)", c.Path, a))
			}
		}
	}
	if c.TLS.Cert == "" && !c.ManageSieve.AllowInsecureAuth {
		for _, a := range c.ManageSieve.Listen {
			if !loopbackListen(a) {
				w = append(w, fmt.Sprintf("%s: managesieve.listen %q without [tls]: clients that are not on loopback cannot authenticate (set [tls] cert and key)", c.Path, a))
			}
		}
	}
	if c.Limits.MaxConnectionsPerIP >= c.Limits.MaxConnections {
		w = append(w, fmt.Sprintf("%s: limits.max_connections_per_ip (%d) is not below max_connections (%d): one client address can take every SMTP connection (keep it well below, as the defaults 20 and 200 are)", c.Path, c.Limits.MaxConnectionsPerIP, c.Limits.MaxConnections))
	}
	if c.LMTP.SocketGroup != "" {
		for _, l := range c.LMTP.Listen {
			sock, ok := strings.CutPrefix(l, "unix:")
			if !ok {
				continue
			}
			if msg := groupCannotReach(filepath.Dir(sock), c.LMTP.SocketGroup); msg != "" {
				w = append(w, fmt.Sprintf("%s: lmtp.listen %q: %s, so group %s cannot reach the socket (put it in a directory such as /run/mailroom with mode 0750 and that group)", c.Path, l, msg, c.LMTP.SocketGroup))
			}
		}
	}
	if c.Metrics.Listen != "" && !loopbackListen(c.Metrics.Listen) {
		w = append(w, fmt.Sprintf("%s: metrics.listen %q is not on loopback: anyone who reaches it reads the metrics, which need no password (keep it on 127.0.0.1 or firewall it to the Prometheus server)", c.Path, c.Metrics.Listen))
	}
	return append(w, c.authWarnings()...)
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// groupCannotReach says why members of group cannot traverse dir and its
// parents, or "" if they can (or it cannot tell).
func groupCannotReach(dir, group string) string {
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, err := user.LookupGroup(group)
		if err != nil {
			return ""
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "" // made at start; nothing to say yet
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return ""
		}
		mode := fi.Mode().Perm()
		if mode&0o001 == 0 && !(int(st.Gid) == gid && mode&0o010 != 0) {
			return fmt.Sprintf("directory %s is mode %04o", d, mode)
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}
