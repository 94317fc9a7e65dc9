package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sieve is the [sieve] table: filtering at final delivery with users'
// Sieve scripts (RFC 5228), which they manage over ManageSieve or the
// administrator with `mailroom sieve`. Users without an active script get
// plain delivery; the tables' defaults need no change.
type Sieve struct {
	// Before and After are the administrator's script files, run before
	// and after each user's script (Pigeonhole's sieve_before and
	// sieve_after) for every mail home, with or without a script of its
	// own: e.g. ["/etc/mailroom/sieve/spam.sieve"] to file mail marked
	// as spam into Junk. The next script runs only while the message is
	// still to be kept in INBOX. Default: none.
	Before []string `toml:"before"`
	After  []string `toml:"after"`
	// GlobalDir holds the scripts that `include :global "NAME"` reads
	// (GlobalDir/NAME.sieve, RFC 6609). Default "" (none).
	GlobalDir string `toml:"global_dir"`
	// MaxRedirects bounds the redirects of one message (default 4).
	MaxRedirects int `toml:"max_redirects"`
	// MaxActions bounds the actions of one script run (default 32).
	MaxActions int `toml:"max_actions"`
	// MaxScripts bounds the scripts one user keeps (default 20);
	// MaxScriptSize the octets of one (default 262144). ManageSieve
	// announces and enforces both (HAVESPACE, PUTSCRIPT).
	MaxScripts    int `toml:"max_scripts"`
	MaxScriptSize int `toml:"max_script_size"`
}

// ManageSieve is the [managesieve] table: the ManageSieve server (RFC
// 5804) on which mail clients (Thunderbird, Roundcube, K-9/FairEmail,
// sieve-connect) upload and activate their scripts, authenticating as
// for IMAP. STARTTLS uses the [tls] certificate.
type ManageSieve struct {
	// Listen is "host:port" addresses, usually ["0.0.0.0:4190"] (RFC
	// 5804's port). Default: none.
	Listen []string `toml:"listen"`
	// MaxConnections bounds the ManageSieve connections (default 100);
	// [limits] max_connections_per_ip bounds those of one address.
	MaxConnections int `toml:"max_connections"`
	// AllowInsecureAuth allows AUTHENTICATE without TLS from addresses
	// other than loopback. Default false.
	AllowInsecureAuth bool `toml:"allow_insecure_auth"`
}

func defaultSieve() Sieve {
	return Sieve{MaxRedirects: 4, MaxActions: 32, MaxScripts: 20, MaxScriptSize: 256 << 10}
}

// absSieve makes the script paths absolute, relative to base.
func (c *Config) absSieve(base string) {
	for _, list := range [][]string{c.Sieve.Before, c.Sieve.After} {
		for i, p := range list {
			if p != "" && !filepath.IsAbs(p) {
				list[i] = filepath.Join(base, p)
			}
		}
	}
	if p := c.Sieve.GlobalDir; p != "" && !filepath.IsAbs(p) {
		c.Sieve.GlobalDir = filepath.Join(base, p)
	}
}

// validateSieve checks [sieve] and [managesieve]. The scripts themselves
// are compiled by `mailroom check` and serve, whose errors name the
// line and column.
func (c *Config) validateSieve(bad func(key, format string, args ...any), checkAddr func(key, a string)) {
	for _, l := range []struct {
		key   string
		paths []string
	}{{"sieve.before", c.Sieve.Before}, {"sieve.after", c.Sieve.After}} {
		for i, p := range l.paths {
			key := fmt.Sprintf("%s[%d]", l.key, i)
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				bad(key, "%q is not a readable file: name a Sieve script, e.g. \"/etc/mailroom/sieve/spam.sieve\"", p)
			}
		}
	}
	if d := c.Sieve.GlobalDir; d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			bad("sieve.global_dir", "%q is not a directory", d)
		}
	}
	positive := func(key string, v, def int) {
		if v <= 0 {
			bad(key, "must be positive (default %d)", def)
		}
	}
	positive("sieve.max_redirects", c.Sieve.MaxRedirects, 4)
	positive("sieve.max_actions", c.Sieve.MaxActions, 32)
	positive("sieve.max_scripts", c.Sieve.MaxScripts, 20)
	positive("sieve.max_script_size", c.Sieve.MaxScriptSize, 256<<10)
	if c.ManageSieve.MaxConnections <= 0 {
		bad("managesieve.max_connections", "must be positive (default 100)")
	}
	for i, a := range c.ManageSieve.Listen {
		key := fmt.Sprintf("managesieve.listen[%d]", i)
		if strings.HasPrefix(a, "unix:") {
			bad(key, "%q: ManageSieve listens on TCP: write \"host:port\", e.g. \"0.0.0.0:4190\"", a)
			continue
		}
		checkAddr(key, a)
	}
}
