// Package config reads mailroom's TOML configuration file: defaults, strict
// decoding (an unknown key is an error, never silently ignored) and
// validation whose every message names the file, the key or line, and what
// to change. Only cmd/mailroom imports it; other packages take their own
// Options so that they can be tested without a file.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"mailroom/internal/address"
)

// DefaultPath is used when neither -config nor $MAILROOM_CONFIG is given.
const DefaultPath = "/etc/mailroom/mailroom.toml"

// Config is the whole file. Each field documents its key, default and an
// example; DESIGN.md lists the same keys.
type Config struct {
	// Hostname names this server in greetings, Received: headers and
	// Maildir file names. Default: the machine's host name.
	Hostname string `toml:"hostname"`
	// DataDir holds mailroom.db, the control socket and, under mail/, the
	// mail homes. Default: /var/lib/mailroom. Relative paths are taken
	// from the configuration file's directory.
	DataDir string `toml:"data_dir"`
	// Domains receive mail locally. Example: ["example.org"].
	Domains []string `toml:"domains"`

	TLS TLS `toml:"tls"`
	// SMTP is the MX ([smtp]): mail from other servers to the domains,
	// usually on port 25. It offers no AUTH and relays nothing; mail to
	// an unknown user is refused at RCPT (550 5.1.1).
	SMTP Listener `toml:"smtp"`
	// Submission is where users send mail from their clients
	// ([submission]): AUTH is required, on port 587 with STARTTLS
	// (listen) and 465 with implicit TLS (listen_tls); mail to other
	// domains goes out through the queue.
	Submission Listener `toml:"submission"`
	// LMTP takes mail from an MTA in front of mailroom, such as Postfix
	// ([lmtp]), with one reply per recipient (RFC 2033).
	LMTP LMTP `toml:"lmtp"`
	IMAP IMAP `toml:"imap"`
	// Limits bound what one client or message may take ([limits]), so
	// that no client starves the others.
	Limits Limits `toml:"limits"`
	// Delivery says how mail is stored and where aliases and .forward
	// files send it ([delivery]).
	Delivery Delivery `toml:"delivery"`
	Relay    Relay    `toml:"relay"`
	Queue    Queue    `toml:"queue"`
	DNS      DNS      `toml:"dns"`
	Checks   Checks   `toml:"checks"`
	// DKIM lists the keys that sign outgoing mail ([[dkim]] tables).
	DKIM []DKIMKey `toml:"dkim"`
	// Socketmap answers Postfix's lookups ([socketmap]).
	Socketmap Socketmap `toml:"socketmap"`
	// Server says how serve runs as a process ([server]).
	Server Server `toml:"server"`
	// Accounts says how account passwords are kept ([accounts]).
	Accounts Accounts `toml:"accounts"`
	// Log says how serve writes its log ([log]).
	Log Log `toml:"log"`
	// Metrics serves Prometheus metrics (GET /metrics) and a health
	// check (GET /healthz: 200 "ok", or 503 and what is wrong) over HTTP,
	// without authentication: keep it on loopback ([metrics]).
	Metrics Metrics `toml:"metrics"`

	// Sieve filters mail at final delivery with users' and the
	// administrator's Sieve scripts ([sieve]).
	Sieve Sieve `toml:"sieve"`
	// ManageSieve is the server on which users manage their scripts
	// ([managesieve]).
	ManageSieve ManageSieve `toml:"managesieve"`

	// Path is the file this was loaded from ("" for Default()).
	Path string `toml:"-"`
}

// TLS names the certificate used for STARTTLS and implicit TLS.
type TLS struct {
	Cert string `toml:"cert"` // PEM certificate chain
	Key  string `toml:"key"`  // PEM private key
}

// Listener is a protocol's listening addresses.
type Listener struct {
	// Listen are "host:port" addresses ("[::1]:143" for IPv6).
	Listen []string `toml:"listen"`
	// ListenTLS are implicit-TLS addresses (465, 993).
	ListenTLS []string `toml:"listen_tls"`
	// AllowInsecureAuth permits plaintext passwords without TLS on
	// non-loopback connections. Default false.
	AllowInsecureAuth bool `toml:"allow_insecure_auth"`
	// Milters are mail filters (rspamd, opendkim, clamav-milter) that see
	// each transaction in turn, SMTP only: "unix:/run/rspamd/milter.sock"
	// or "inet:127.0.0.1:11332", Postfix's smtpd_milters syntax.
	Milters []string `toml:"milters"`
	// MilterDefaultAction is what a milter that is down, times out or
	// speaks garbage amounts to, Postfix's milter_default_action:
	// "tempfail" (default: 451, the client tries again), "accept" (as if
	// it were not configured), "reject" (550) or "quarantine" (Junk).
	MilterDefaultAction string `toml:"milter_default_action"`
	// MilterTimeout bounds connecting to a milter and each stage of the
	// conversation (the whole header, the whole body). Default "30s".
	MilterTimeout Duration `toml:"milter_timeout"`
}

// Log is the [log] table: serve's log, written to standard error (the
// journal under systemd).
type Log struct {
	// Format is "text" (key=value records, the default) or "json" (one
	// JSON object a line, for log collectors). Either way a record has
	// the same keys: event, queue_id, conn, remote, from, rcpt, ...
	Format string `toml:"format"`
}

// IMAP is the [imap] table: its listeners and a connection limit of its
// own, since IMAP clients keep connections open for hours (IDLE, one
// connection per folder watched), which the SMTP limit does not fit.
type IMAP struct {
	Listener
	// MaxConnections bounds all IMAP connections together; more get
	// "* BYE [UNAVAILABLE]". limits.max_connections_per_ip applies per
	// client address; a loopback client (a webmail, one client for many
	// users) may hold up to half of this. Default 1000.
	MaxConnections int `toml:"max_connections"`
}

// LMTP is the [lmtp] table.
type LMTP struct {
	// Listen entries are "unix:/path" or "host:port".
	Listen []string `toml:"listen"`
	// SocketMode is the octal mode of unix sockets. Default "0660".
	SocketMode string `toml:"socket_mode"`
	// SocketGroup owns unix sockets, so that e.g. Postfix's lmtp client
	// (group postfix) can connect. Default: the server's group.
	SocketGroup string `toml:"socket_group"`
}

// Limits are the [limits] table.
type Limits struct {
	// MaxMessageBytes refuses larger messages (552 5.3.4). Default 25 MiB.
	MaxMessageBytes int64 `toml:"max_message_bytes"`
	// MaxRecipients per message (452 4.5.3 beyond). Default 100.
	MaxRecipients int `toml:"max_recipients"`
	// MaxConnections per SMTP listener role; more get 421. The last
	// tenth is kept for clients that hold no connection yet. Default 200.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP from one client address (an IPv6 client: its
	// /64) per role, SMTP and IMAP. Default 20.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// IdleTimeout bounds every read from a client, commands and message
	// data alike (RFC 5321 §4.5.3.2 suggests 5 minutes), and, with
	// MinDataRate, each SMTP and LMTP command and message as a whole.
	// Default "5m".
	IdleTimeout Duration `toml:"idle_timeout"`
	// MinDataRate, in bytes per second, bounds each SMTP and LMTP request
	// as a whole (Postfix's smtpd_min_data_rate): a command line or a
	// message must arrive within idle_timeout plus one second per
	// min_data_rate bytes, so that a client that trickles a byte every
	// few seconds is dropped instead of holding its connection for ever.
	// 0 bounds each read only. Default 500.
	MinDataRate int `toml:"min_data_rate"`
	// MaxLineLength bounds an SMTP or LMTP command line, in octets with
	// its CRLF (RFC 5321 §4.5.3.1.4 allows 512; the default 2000 leaves
	// room for long parameters): a longer MAIL, RCPT or HELO is answered
	// 500 5.5.2 and the session goes on. Message lines may be longer
	// (up to 256 KiB) and are stored as they are, as Postfix does.
	MaxLineLength int `toml:"max_line_length"`
}

// Duration is a time.Duration written as a string: "5m", "90s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"5m\" or \"90s\"", b)
	}
	d.Duration = v
	return nil
}

// Delivery is the [delivery] table.
type Delivery struct {
	// Format is "maildir" (default) or "mbox". With "mbox", INBOX is
	// <home>/mbox and other folders are files under <home>/mail/, as
	// Dovecot's mail_location = mbox:~/mail:INBOX=~/mbox lays them out.
	// An account whose home holds the other format is refused (its mail
	// waits) rather than given a second store.
	Format string `toml:"format"`
	// MboxInbox, with format = "mbox", keeps INBOX in a spool file
	// instead: an absolute path with {local} (and optionally {domain}),
	// such as "/var/mail/{local}", for mail(1) and old setups.
	MboxInbox string `toml:"mbox_inbox"`
	// MboxLockOrder is the order mbox writers take their locks in:
	// "dotlock fcntl" (default, as Postfix, procmail and Dovecot) or
	// "fcntl dotlock", for sites whose other tools lock that way. All
	// writers of a file must agree: mixed orders deadlock until one side
	// times out.
	MboxLockOrder string `toml:"mbox_lock_order"`
	// Aliases is the aliases(5) file. Optional.
	Aliases string `toml:"aliases"`
	// ForwardFiles honours .forward in each mail home. Default true.
	ForwardFiles *bool `toml:"forward_files"`
	// RecipientDelimiter separates extensions: alice+lists@ goes to
	// alice. Default "+"; "" disables.
	RecipientDelimiter *string `toml:"recipient_delimiter"`
	// AllowCommands lets a .forward or an :include: file pipe mail to a
	// command. Off by default: a mail home may be writable by its user,
	// and an include file may belong to someone else. Pipes in the
	// aliases file itself are the administrator's and always allowed.
	// Commands run as nobody when mailroom runs as root, and otherwise as
	// mailroom's own user, which can read every mailbox: turn this on
	// only for users you trust that far.
	AllowCommands bool `toml:"allow_commands"`
	// AllowFiles is AllowCommands for /file targets. A .forward's file
	// targets must lie inside its own mail home (symlinks are not
	// followed out of it), except /dev/null.
	AllowFiles bool `toml:"allow_files"`
	// CommandTimeout bounds a |command delivery; it is killed after it
	// and the delivery retried. Default 10m.
	CommandTimeout Duration `toml:"command_timeout"`
}

// Default returns the configuration used for keys the file leaves out.
func Default() *Config {
	host, _ := os.Hostname()
	t, delim := true, "+"
	return &Config{
		Hostname: host,
		DataDir:  "/var/lib/mailroom",
		LMTP:     LMTP{SocketMode: "0660"},
		IMAP:     IMAP{MaxConnections: 1000},
		Limits: Limits{MaxMessageBytes: 25 << 20, MaxRecipients: 100,
			MaxConnections: 200, MaxConnectionsPerIP: 20, IdleTimeout: Duration{5 * time.Minute}, MinDataRate: 500,
			MaxLineLength: 2000},
		Delivery: Delivery{Format: "maildir", ForwardFiles: &t, RecipientDelimiter: &delim,
			CommandTimeout: Duration{10 * time.Minute}},
		Sieve:       defaultSieve(),
		ManageSieve: ManageSieve{MaxConnections: 100},
		Accounts:    Accounts{BcryptCost: DefaultBcryptCost},
	}
}

// Load reads, decodes and validates the file at path. Errors name the file
// and, where there is one, the line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w (pass -config FILE or set $MAILROOM_CONFIG)", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// Parse decodes data (read from path, which is used in messages and to
// resolve relative paths) over the defaults, without validating.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.Path = path
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := strings.TrimPrefix(pe.Message, "toml: ")
			if strings.Contains(msg, "is not a duration") && pe.LastKey != "" {
				msg = pe.LastKey + ": " + msg
			}
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)
		}
		// Type mismatches come as "toml: line N (last key "k"): ...".
		if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", path, m[1], typeError(m[2], m[3]))
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	var reported []string
	for _, key := range md.Undecoded() {
		// An unknown table makes all its keys unknown; name the table only.
		if slices.ContainsFunc(reported, func(p string) bool { return strings.HasPrefix(key.String(), p+".") }) {
			continue
		}
		reported = append(reported, key.String())
		hint := ""
		if near := closest(key.String()); near != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", near)
		}
		errs = append(errs, fmt.Errorf("%s:%d: unknown key %q%s: remove or correct it (mailroom help config lists every key)",
			path, keyLine(data, key), key.String(), hint))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&cfg.DataDir, &cfg.TLS.Cert, &cfg.TLS.Key, &cfg.Delivery.Aliases} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	absUnix(cfg.LMTP.Listen, base)
	absUnix(cfg.Socketmap.Listen, base)
	cfg.absSieve(base)
	return cfg, nil
}

var decodeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// keyLine finds the line where key is set, for messages about keys the
// decoder has no position for. It returns 0 if it cannot tell.
func keyLine(data []byte, key toml.Key) int {
	table, last := strings.Join(key[:len(key)-1], "."), key[len(key)-1]
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(line, "[] ")
			if i := strings.IndexByte(name, ']'); i >= 0 {
				name = name[:i]
			}
			cur = strings.TrimSpace(name)
			if cur == key.String() {
				return n
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if ok && cur == table && strings.Trim(strings.TrimSpace(k), `"'`) == last {
			return n
		}
	}
	return 0
}

// Validate checks values the decoder cannot: every problem is reported,
// each naming the key and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", c.Path, key, fmt.Sprintf(format, args...)))
	}
	if c.Hostname == "" {
		bad("hostname", "empty: set it to this server's fully qualified name, e.g. \"mx.example.org\"")
	}
	if c.DataDir == "" {
		bad("data_dir", "empty: set it to a directory for mailroom's data, e.g. \"/var/lib/mailroom\"")
	}
	if len(c.Domains) == 0 {
		bad("domains", "empty: list the domains mailroom receives mail for, e.g. [\"example.org\"]")
	}
	seen := map[string]bool{}
	for i, d := range c.Domains {
		nd, err := address.NormalizeDomain(d)
		if err != nil {
			bad(fmt.Sprintf("domains[%d]", i), "%q is not a valid domain: %v", d, err)
			continue
		}
		if seen[nd] {
			bad(fmt.Sprintf("domains[%d]", i), "%q is listed twice: remove one", d)
		}
		seen[nd] = true
		c.Domains[i] = nd
	}
	checkAddr := func(key, a string) {
		if err := checkHostPort(a); err != nil {
			bad(key, "%q: %v: write \"host:port\", e.g. \"127.0.0.1:25\" or \"[::1]:25\"", a, err)
		}
	}
	checkAddrs := func(key string, addrs []string) {
		for i, a := range addrs {
			checkAddr(fmt.Sprintf("%s[%d]", key, i), a)
		}
	}
	checkAddrs("smtp.listen", c.SMTP.Listen)
	checkAddrs("smtp.listen_tls", c.SMTP.ListenTLS)
	checkAddrs("submission.listen", c.Submission.Listen)
	checkAddrs("submission.listen_tls", c.Submission.ListenTLS)
	checkAddrs("imap.listen", c.IMAP.Listen)
	checkAddrs("imap.listen_tls", c.IMAP.ListenTLS)
	for i, l := range c.LMTP.Listen {
		if sock, ok := strings.CutPrefix(l, "unix:"); ok {
			if sock == "" {
				bad(fmt.Sprintf("lmtp.listen[%d]", i), "%q has no path: write \"unix:/run/mailroom/lmtp.sock\"", l)
			}
			continue
		}
		checkAddr(fmt.Sprintf("lmtp.listen[%d]", i), l)
	}
	if _, err := c.SocketMode(); err != nil {
		bad("lmtp.socket_mode", "%q: %v: write an octal mode such as \"0660\"", c.LMTP.SocketMode, err)
	}
	if c.Limits.MaxMessageBytes <= 0 {
		bad("limits.max_message_bytes", "must be positive (default 26214400)")
	}
	if c.Limits.MaxRecipients <= 0 {
		bad("limits.max_recipients", "must be positive (default 100)")
	}
	if c.Limits.MaxConnections <= 0 {
		bad("limits.max_connections", "must be positive (default 200)")
	}
	if c.Limits.MaxConnectionsPerIP <= 0 {
		bad("limits.max_connections_per_ip", "must be positive (default 20)")
	}
	if c.Limits.MinDataRate < 0 {
		bad("limits.min_data_rate", "must not be negative (default 500; 0 bounds each read only)")
	}
	if c.IMAP.MaxConnections <= 0 {
		bad("imap.max_connections", "must be positive (default 1000)")
	}
	if c.Limits.MaxLineLength < 1000 {
		bad("limits.max_line_length", "%d is below the 1000 octets RFC 5321 lets every line have (default 2000)", c.Limits.MaxLineLength)
	}
	if c.Delivery.CommandTimeout.Duration < time.Second {
		bad("delivery.command_timeout", "must be at least \"1s\" (default \"10m\")")
	}
	if c.Limits.IdleTimeout.Duration < time.Second {
		bad("limits.idle_timeout", "must be at least \"1s\" (default \"5m\")")
	}
	if (len(c.SMTP.ListenTLS) > 0 || len(c.Submission.ListenTLS) > 0 || len(c.IMAP.ListenTLS) > 0) && c.TLS.Cert == "" {
		bad("tls", "listen_tls addresses need a certificate: set [tls] cert and key")
	}
	if f := c.Log.Format; f != "" && f != "text" && f != "json" {
		bad("log.format", "%q: write \"text\" (the default) or \"json\"", f)
	}
	if len(c.SMTP.ListenTLS) > 0 {
		bad("smtp.listen_tls", "implicit TLS is for submission: move these addresses to [submission] listen_tls")
	}
	switch c.Delivery.Format {
	case "maildir":
		if c.Delivery.MboxInbox != "" {
			bad("delivery.mbox_inbox", "is for format = \"mbox\"")
		}
	case "mbox":
		if p := c.Delivery.MboxInbox; p != "" && (!filepath.IsAbs(p) || !strings.Contains(p, "{local}")) {
			bad("delivery.mbox_inbox", "%q: write an absolute path with {local} in it, such as \"/var/mail/{local}\"", p)
		}
	default:
		bad("delivery.format", "%q: use \"maildir\" or \"mbox\"", c.Delivery.Format)
	}
	switch strings.Join(strings.Fields(c.Delivery.MboxLockOrder), " ") {
	case "", "dotlock fcntl", "fcntl dotlock":
	default:
		bad("delivery.mbox_lock_order", "%q: write \"dotlock fcntl\" (the default) or \"fcntl dotlock\"", c.Delivery.MboxLockOrder)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "set both cert and key, or neither")
	}
	for _, f := range []struct{ key, path string }{
		{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"delivery.aliases", c.Delivery.Aliases},
	} {
		key, p := f.key, f.path
		if p == "" {
			continue
		}
		if f, err := os.Open(p); err != nil {
			bad(key, "cannot read %s: %v", p, err)
		} else {
			f.Close()
		}
	}
	if c.Relay.Smarthost != "" {
		checkAddr("relay.smarthost", c.Relay.Smarthost)
	}
	errs = append(errs, c.validateOutbound()...)
	errs = append(errs, c.validateAuth()...)
	c.validateDeploy(bad, checkAddr)
	c.validateSieve(bad, checkAddr)
	c.validateAccounts(bad)
	return errors.Join(errs...)
}

func checkHostPort(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// SocketMode is lmtp.socket_mode as a file mode.
func (c *Config) SocketMode() (os.FileMode, error) { return parseMode(c.LMTP.SocketMode) }

// ForwardFiles is delivery.forward_files with its default applied.
func (c *Config) ForwardFiles() bool {
	return c.Delivery.ForwardFiles == nil || *c.Delivery.ForwardFiles
}

// RecipientDelimiter is delivery.recipient_delimiter with its default.
func (c *Config) RecipientDelimiter() string {
	if c.Delivery.RecipientDelimiter == nil {
		return "+"
	}
	return *c.Delivery.RecipientDelimiter
}

// MailRoot is where mail homes live.
func (c *Config) MailRoot() string { return filepath.Join(c.DataDir, "mail") }

// DBPath is the bbolt database.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "mailroom.db") }

// ControlSocket is the socket through which CLI commands reach `serve`.
func (c *Config) ControlSocket() string { return filepath.Join(c.DataDir, "control.sock") }
