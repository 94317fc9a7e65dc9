package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Relay is the [relay] table: how mail leaves (forwards, bounces,
// submission to remote domains).
type Relay struct {
	// Smarthost "host:port" receives all outgoing mail; "" means MX lookup
	// (RFC 5321 §5). Example: "smtp.provider.example:587".
	Smarthost string `toml:"smarthost"`
	// SmarthostTLS is "starttls" (default: STARTTLS when offered, and
	// required when a password is configured) or "implicit" (TLS from the
	// first byte, as on port 465).
	SmarthostTLS string `toml:"smarthost_tls"`
	// Username for AUTH PLAIN at the smarthost; "" sends no AUTH. The
	// password is only ever sent over TLS (or to a loopback smarthost).
	Username string `toml:"username"`
	// Password for Username. Prefer PasswordFile, which keeps the secret
	// out of a file that is often world-readable.
	Password string `toml:"password"`
	// PasswordFile holds the password on its first line.
	PasswordFile string `toml:"password_file"`
	// DNS is the old name of [dns] server, still accepted.
	DNS string `toml:"dns"`
	// MXPort is the port used for MX hosts. Default 25; tests change it.
	MXPort int `toml:"mx_port"`
	// SRSSecretFile turns on the Sender Rewriting Scheme for mail forwarded
	// to remote addresses (aliases, .forward): the envelope sender becomes
	// SRS0=...@SRSDomain so the destination's SPF check passes, and bounces
	// to such addresses are reversed. The file's first line is the current
	// secret; further lines are older secrets still accepted.
	SRSSecretFile string `toml:"srs_secret_file"`
	// SRSSecret is the secret itself, for when a file is impractical.
	SRSSecret string `toml:"srs_secret"`
	// SRSDomain is the domain of rewritten senders; it must be one of
	// domains (so bounces come back here). Default: the first domain.
	SRSDomain string `toml:"srs_domain"`
}

// Queue is the [queue] table: retries and lifetime of outgoing mail.
// Durations are Go durations ("90s", "5m", "4h") or whole days ("5d").
type Queue struct {
	// Retry lists the waits between delivery attempts; the last one
	// repeats. Default ["5m", "10m", "20m", "40m", "1h", "2h", "4h"]
	// (RFC 5321 §4.5.4.1: at least 30 minutes on average).
	Retry []string `toml:"retry"`
	// MaxLifetime is how long a message is retried before it bounces.
	// Default "5d" (RFC 5321 §4.5.4.1: 4 to 5 days).
	MaxLifetime string `toml:"max_lifetime"`
	// DelayWarning sends the sender one "still trying" notice when a
	// message is this old and not yet delivered. Default "4h"; "0" never.
	DelayWarning string `toml:"delay_warning"`
	// Concurrency is how many outgoing deliveries run at once. Default 16.
	Concurrency int `toml:"concurrency"`
}

// DefaultRetry returns queue.retry's default, a new slice on each call so
// that no caller can change another's (or the default itself).
func DefaultRetry() []time.Duration {
	return []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
}

// Defaults of the [queue] table.
const (
	DefaultMaxLifetime  = 5 * 24 * time.Hour
	DefaultDelayWarning = 4 * time.Hour
)

// DefaultConcurrency is queue.concurrency's default.
const DefaultConcurrency = 16

// QueueSettings is [queue] with defaults applied and durations parsed.
type QueueSettings struct {
	Retry        []time.Duration
	MaxLifetime  time.Duration
	DelayWarning time.Duration // 0: never
	Concurrency  int
}

// Settings parses the table; errors name the key and the fix. Validate
// reports the same errors, so after a successful Load it does not fail.
func (q Queue) Settings() (QueueSettings, error) {
	s, errs := q.settings()
	if len(errs) > 0 {
		return s, errs[0]
	}
	return s, nil
}

func (q Queue) settings() (QueueSettings, []error) {
	s := QueueSettings{Retry: DefaultRetry(), MaxLifetime: DefaultMaxLifetime,
		DelayWarning: DefaultDelayWarning, Concurrency: q.Concurrency}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(q.Retry) > 0 {
		s.Retry = nil
		for i, r := range q.Retry {
			d, err := parseDays(r)
			if err != nil || d <= 0 {
				bad(fmt.Sprintf("queue.retry[%d]", i), "%q: write a positive duration such as \"10m\" or \"2h\"", r)
				continue
			}
			s.Retry = append(s.Retry, d)
		}
	}
	if q.MaxLifetime != "" {
		d, err := parseDays(q.MaxLifetime)
		if err != nil || d <= 0 {
			bad("queue.max_lifetime", "%q: write a positive duration such as \"5d\" or \"96h\"", q.MaxLifetime)
		}
		s.MaxLifetime = d
	}
	if q.DelayWarning != "" {
		d, err := parseDays(q.DelayWarning)
		if err != nil || d < 0 {
			bad("queue.delay_warning", "%q: write a duration such as \"4h\", or \"0\" for no warning", q.DelayWarning)
		}
		s.DelayWarning = d
	}
	switch {
	case q.Concurrency == 0:
		s.Concurrency = DefaultConcurrency
	case q.Concurrency < 0 || q.Concurrency > 1000:
		bad("queue.concurrency", "%d: write a number from 1 to 1000 (default %d)", q.Concurrency, DefaultConcurrency)
	}
	return s, errs
}

// parseDays is time.ParseDuration that also takes whole days ("5d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 3650 {
			return 0, fmt.Errorf("bad number of days %q", n)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// RelaySettings is [relay] with the password read and defaults applied.
type RelaySettings struct {
	Smarthost   string
	ImplicitTLS bool
	Username    string
	Password    string
	DNS         string
	MXPort      int
	// SRSSecrets is empty when SRS is off; the first is current.
	SRSSecrets []string
	SRSDomain  string
}

// Settings reads the password file, if any.
func (r Relay) Settings() (RelaySettings, error) {
	s := RelaySettings{Smarthost: r.Smarthost, ImplicitTLS: r.SmarthostTLS == "implicit",
		Username: r.Username, Password: r.Password, DNS: r.DNS, MXPort: r.MXPort}
	if s.MXPort == 0 {
		s.MXPort = 25
	}
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return s, fmt.Errorf("relay.password_file: %w", err)
		}
		s.Password, _, _ = strings.Cut(string(b), "\n")
		s.Password = strings.TrimRight(s.Password, "\r")
	}
	if r.SRSSecret != "" {
		s.SRSSecrets = []string{r.SRSSecret}
	}
	if r.SRSSecretFile != "" {
		b, err := os.ReadFile(r.SRSSecretFile)
		if err != nil {
			return s, fmt.Errorf("relay.srs_secret_file: %w", err)
		}
		for line := range strings.Lines(string(b)) {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				s.SRSSecrets = append(s.SRSSecrets, line)
			}
		}
		if len(s.SRSSecrets) == 0 {
			return s, fmt.Errorf("relay.srs_secret_file: %s holds no secret", r.SRSSecretFile)
		}
	}
	s.SRSDomain = r.SRSDomain
	return s, nil
}

// validateOutbound checks [relay] and [queue] beyond what Validate does;
// each error names the key and the fix.
func (c *Config) validateOutbound() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", c.Path, key, fmt.Sprintf(format, args...)))
	}
	r := c.Relay
	switch r.SmarthostTLS {
	case "", "starttls", "implicit":
	default:
		bad("relay.smarthost_tls", "%q: use \"starttls\" or \"implicit\"", r.SmarthostTLS)
	}
	if r.Password != "" && r.PasswordFile != "" {
		bad("relay.password", "set password or password_file, not both")
	}
	if r.Username != "" && r.Smarthost == "" {
		bad("relay.username", "AUTH is only used with a smarthost: set relay.smarthost or remove username")
	}
	if r.Username != "" && r.Password == "" && r.PasswordFile == "" {
		bad("relay.username", "no password: set relay.password_file (or relay.password)")
	}
	if r.Username == "" && (r.Password != "" || r.PasswordFile != "") {
		bad("relay.password", "a password without relay.username is never used: set username")
	}
	if r.PasswordFile != "" {
		if !filepath.IsAbs(r.PasswordFile) && c.Path != "" {
			// Relative to the configuration file, like the other paths.
			c.Relay.PasswordFile = filepath.Join(filepath.Dir(c.Path), r.PasswordFile)
		}
		if _, err := os.ReadFile(c.Relay.PasswordFile); err != nil {
			bad("relay.password_file", "cannot read %s: %v", c.Relay.PasswordFile, err)
		}
	}
	if r.SRSSecret != "" && r.SRSSecretFile != "" {
		bad("relay.srs_secret", "set srs_secret or srs_secret_file, not both")
	}
	if r.SRSSecretFile != "" {
		if !filepath.IsAbs(r.SRSSecretFile) && c.Path != "" {
			c.Relay.SRSSecretFile = filepath.Join(filepath.Dir(c.Path), r.SRSSecretFile)
		}
		if _, err := os.ReadFile(c.Relay.SRSSecretFile); err != nil {
			bad("relay.srs_secret_file", "cannot read %s: %v", c.Relay.SRSSecretFile, err)
		}
	}
	if r.SRSDomain != "" && r.SRSSecret == "" && r.SRSSecretFile == "" {
		bad("relay.srs_domain", "SRS is off without a secret: set relay.srs_secret_file")
	}
	if r.SRSDomain != "" && !slices.Contains(c.Domains, strings.ToLower(r.SRSDomain)) {
		bad("relay.srs_domain", "%q is not in domains: bounces to rewritten senders must come back here", r.SRSDomain)
	}
	if r.DNS != "" {
		if _, port, err := net.SplitHostPort(r.DNS); err != nil || port == "" {
			bad("relay.dns", "%q: write \"host:port\", e.g. \"127.0.0.1:53\"", r.DNS)
		}
	}
	if r.MXPort < 0 || r.MXPort > 65535 {
		bad("relay.mx_port", "%d: write a port from 1 to 65535 (default 25)", r.MXPort)
	}
	return append(errs, c.Queue.Validate(c.Path)...)
}

// Validate checks the [queue] table; path names the file in errors.
func (q Queue) Validate(path string) []error {
	_, errs := q.settings()
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", path, err)
	}
	return errs
}
