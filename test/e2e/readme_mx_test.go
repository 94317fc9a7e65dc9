package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/msghdr"
	"mailroom/internal/resolve"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
)

// readmeBlocks returns the code blocks of language lang in the README's
// section titled title.
func readmeBlocks(t *testing.T, title, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mailtest.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+regexp.QuoteMeta(lang)+"\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("README.md section %q has no %s block", title, lang)
	}
	return out
}

// shellCommands are the command lines of sh blocks, comments removed.
func shellCommands(block string) [][]string {
	var out [][]string
	for line := range strings.Lines(block) {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

const readmeMX = "Running as a domain's MX"

// TestReadmeMXRecords checks the README's MX section by its own commands
// and records: the zone block is served by a DNS server of the test, the
// toml block (listening on loopback) and its sh commands run against it,
// keygen's records are published there, and then every claim holds: the
// MX and PTR records lead to the server and back, SPF passes for its
// addresses and fails for others, DKIM signatures by the keys keygen
// made verify, and DMARC refuses unsigned mail from elsewhere.
func TestReadmeMXRecords(t *testing.T) {
	t.Parallel()
	srv := fakedns.Start(t)
	for line := range strings.Lines(readmeBlocks(t, readmeMX, "zone")[0]) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ";") {
			srv.Add(t, line)
		}
	}
	res := resolve.New(resolve.Options{Server: srv.Addr})
	ctx := t.Context()

	mxs, err := res.LookupMX(ctx, "example.org.")
	if err != nil || len(mxs) != 1 || mxs[0].Host != "mx.example.org." {
		t.Fatalf("MX of example.org: %v, %v", mxs, err)
	}
	ips, err := res.LookupIPAddr(ctx, "mx.example.org.")
	if err != nil || len(ips) != 2 {
		t.Fatalf("addresses of mx.example.org: %v, %v", ips, err)
	}
	for _, ip := range ips {
		// Forward-confirmed reverse DNS, as receivers check it.
		names, err := res.LookupAddr(ctx, ip.IP.String())
		if err != nil || !slices.Contains(names, "mx.example.org.") {
			arpa, _ := dns.ReverseAddr(ip.IP.String())
			t.Errorf("PTR of %s (%s): %v, %v; want mx.example.org.", ip.IP, arpa, names, err)
		}
	}

	// The configuration and commands of the section, on loopback.
	cfgText := readmeBlocks(t, readmeMX, "toml")[0]
	cfgText = regexp.MustCompile(`listen = \[.*\]`).ReplaceAllString(cfgText, `listen = ["127.0.0.1:0"]`)
	cfgText = "data_dir = \"%DATA%\"\n" + cfgText + fmt.Sprintf("\n[dns]\nserver = %q\n", srv.Addr)
	cfg, dir := mailtest.WriteConfig(t, cfgText)
	var keyRecords int
	for _, argv := range shellCommands(readmeBlocks(t, readmeMX, "sh")[0]) {
		if argv[0] != "mailroom" {
			t.Fatalf("the README's commands run something else: %q", argv)
		}
		out, code := mailtest.RunBinary(t, cfg, "", argv[1:]...)
		if argv[1] == "dkim" && argv[2] == "keygen" {
			if code != 0 {
				t.Fatalf("%q: exit %d\n%s", argv, code, out)
			}
			name, value := zoneRecord(t, out)
			srv.AddTXT(name, value)
			keyRecords++
			continue
		}
		if code != 0 || strings.Count(out, ": ok (") != keyRecords {
			t.Errorf("%q: exit %d, want 0 and %d keys ok:\n%s", argv, code, keyRecords, out)
		}
	}
	var keys []dkim.Key
	for _, sel := range []string{"mailroom", "mailroom-ed25519"} {
		k, err := dkim.LoadKey(filepath.Join(dir, "dkim", "example.org", sel+".key"))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, dkim.Key{Domain: "example.org", Selector: sel, Signer: k})
	}
	signer, err := dkim.NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	// The section's configuration serves.
	mailtest.StartServerConfig(t, cfg, dir)

	checker := mailauth.New(mailauth.Options{Resolver: res, AuthServID: "other.example", Policy: mailauth.DefaultPolicy(), Timeout: 5 * time.Second})
	msg := "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\nDate: Mon, 6 Jul 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
	sig, err := signer.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ip, from, helo, msg string
		spf, dkim, dmarc          string
		action                    mailauth.Action
	}{
		{"from the MX over IPv4", "192.0.2.25", "alice@example.org", "mx.example.org", msg, "pass", "", "pass", mailauth.Mark},
		{"from the MX over IPv6", "2001:db8::25", "alice@example.org", "mx.example.org", msg, "pass", "", "pass", mailauth.Mark},
		{"a bounce from the MX", "192.0.2.25", "", "mx.example.org", msg, "pass", "", "pass", mailauth.Mark},
		{"a forgery", "203.0.113.9", "alice@example.org", "evil.example", msg, "fail", "", "fail", mailauth.Reject},
		{"forwarded, signed", "203.0.113.9", "alice@example.org", "fwd.example", sig + msg, "fail", "pass", "pass", mailauth.Mark},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _, _ := msghdr.Read(bufio.NewReader(strings.NewReader(c.msg)), 0)
			r := checker.Check(context.Background(), mailauth.Envelope{IP: net.ParseIP(c.ip), Helo: c.helo, MailFrom: c.from}, h, strings.NewReader(c.msg))
			gotDKIM := ""
			if len(r.DKIM) > 0 {
				gotDKIM = r.DKIM[0].Result
				for _, d := range r.DKIM {
					if d.Result != gotDKIM {
						t.Errorf("signatures differ: %+v", r.DKIM)
					}
				}
			}
			if string(r.SPF.Result) != c.spf || gotDKIM != c.dkim || r.DMARC.Result != c.dmarc || r.Action != c.action {
				t.Errorf("spf=%s dkim=%s dmarc=%s action=%v; want %s %s %s %v", r.SPF.Result, gotDKIM, r.DMARC.Result, r.Action, c.spf, c.dkim, c.dmarc, c.action)
			}
		})
	}
}

// readmeRspamd is the README's rspamd proxy settings and the mailroom
// milters line, the port of its inet: address replaced by port.
func readmeRspamd(t *testing.T, port int) (proxy, milter string) {
	t.Helper()
	proxy = readmeBlocks(t, readmeMX, "rspamd")[0]
	var cfg struct {
		SMTP struct {
			Milters []string `toml:"milters"`
		} `toml:"smtp"`
	}
	if _, err := toml.Decode(readmeBlocks(t, readmeMX, "toml")[1], &cfg); err != nil || len(cfg.SMTP.Milters) != 1 {
		t.Fatalf("README's rspamd toml block: %v %v", cfg, err)
	}
	return proxy, strings.Replace(cfg.SMTP.Milters[0], ":11332", fmt.Sprintf(":%d", port), 1)
}
