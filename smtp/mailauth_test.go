package smtp_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/mailtest/fakemilter"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/internal/resolve"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
	"mailroom/milter"
	"mailroom/smtp"
)

// atEnd answers the end of the message with packets (modifications, then
// the final reply); every other command gets the usual "continue".
func atEnd(packets ...[]byte) func(byte, []byte) ([][]byte, string) {
	return func(code byte, _ []byte) ([][]byte, string) {
		if code == 'E' {
			return packets, ""
		}
		return nil, ""
	}
}

func mod(code byte, data string) []byte { return fakemilter.Packet(code, data) }

var cont = fakemilter.Packet('c')

func milterClient(t *testing.T, addr string) *milter.Client {
	t.Helper()
	c, err := milter.New(milter.Options{Milters: []string{addr}, Timeout: 5 * time.Second, Hostname: "mx.test", Daemon: "smtp"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deliverOne sends one message from s@<from's domain> to alice on the MX
// at addr and returns the reply to the message.
func deliverOne(t *testing.T, addr, from string, header ...string) string {
	t.Helper()
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	d.Expect("250 ")
	send(d, from, []string{"alice@example.org"}, append(header, "", "body")...)
	return d.Reply()[0]
}

// TestMXChecks: the MX checks what untrusted clients send (DMARC
// p=reject refused with 550 5.7.1 at the end of DATA, p=quarantine into
// Junk, others marked) before the milters see it, so that they see our
// Authentication-Results; fields forged with our authserv-id go whether or
// not checks run (RFC 8601 §5), and a trusted client's mail is taken as it
// is.
func TestMXChecks(t *testing.T) {
	dns := fakedns.Start(t,
		`reject.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.reject.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`quarantine.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quarantine.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`good.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.good.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`tmp.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`_dmarc.tmp.example. 60 IN TXT "v=DMARC1; p=reject"`,
	)
	dns.ServFail("dead.example")
	checker := mailauth.New(mailauth.Options{Resolver: resolve.New(resolve.Options{Server: dns.Addr}), AuthServID: "mx.test",
		Policy: mailauth.DefaultPolicy(), Timeout: 5 * time.Second})
	forged := "Authentication-Results: mx.test; dmarc=pass header.from=bank.example"
	other := "Authentication-Results: other.example; spf=pass"
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, c := range []struct {
		name     string
		checker  *mailauth.Checker
		trusted  []netip.Prefix
		from     string
		reply    string
		box      string // where the message lands ("" or ".Junk")
		contains []string
		absent   []string
	}{
		{"p=reject", checker, nil, "a@reject.example", "550 5.7.1 Message refused: DMARC policy of reject.example is reject", "", nil, nil},
		{"p=quarantine", checker, nil, "a@quarantine.example", "250 ", ".Junk", []string{"Authentication-Results: mx.test;", "dmarc=fail"}, nil},
		{"pass, forged field removed", checker, nil, "a@good.example", "250 ", "",
			[]string{"Authentication-Results: mx.test;\n\tspf=pass", "dmarc=pass", other}, []string{"bank.example"}},
		{"SPF SERVFAIL under p=reject: deferred, not refused", checker, nil, "a@tmp.example", "451 4.7.0 Try again later: temporary DNS failure", "", nil, nil},
		{"no From: refused (bad_from)", checker, nil, "", "550 5.7.1 Message refused: no From: address", "", nil, nil},
		{"checks off: forged field still removed", nil, nil, "a@reject.example", "250 ", "", []string{other}, []string{"bank.example", "Authentication-Results: mx.test"}},
		{"trusted client: unchecked, unchanged", checker, loopback, "a@reject.example", "250 ", "", []string{forged, other}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			m := fakemilter.Start(t, nil)
			addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, Auth: smtp.MailAuth{Checker: c.checker,
				AuthServID: "mx.test", Trusted: c.trusted, Milters: milterClient(t, m.Addr), SpoolDir: env.Dir}})
			header := []string{forged, other, "To: alice@example.org", "Subject: checked"}
			envFrom := "s@good.example"
			if c.from != "" {
				header = append([]string{"From: <" + c.from + ">"}, header...)
				envFrom = c.from
			}
			if r := deliverOne(t, addr, envFrom, header...); !strings.HasPrefix(r, c.reply) {
				t.Fatalf("reply %q, want %q", r, c.reply)
			}
			inbox, junk := mailtest.Messages(t, env.MailRoot, "example.org/alice"), mailtest.FolderMessages(t, env.MailRoot, "example.org/alice", ".Junk")
			got := map[string][]string{"": inbox, ".Junk": junk}
			if !strings.HasPrefix(c.reply, "250") {
				if len(inbox)+len(junk) != 0 {
					t.Fatalf("a refused message was delivered")
				}
				return
			}
			if len(got[c.box]) != 1 || len(inbox)+len(junk) != 1 {
				t.Fatalf("%d in INBOX, %d in Junk; want the message in %q", len(inbox), len(junk), c.box)
			}
			msg := got[c.box][0]
			for _, w := range c.contains {
				if !strings.Contains(msg, w) {
					t.Errorf("the message lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range c.absent {
				if strings.Contains(msg, w) {
					t.Errorf("the message has %q:\n%s", w, msg)
				}
			}
			// The milter saw the message as it was delivered.
			h, _ := m.Received()
			if c.checker != nil && c.trusted == nil && !strings.HasPrefix(strings.Join(h, "\n"), "Authentication-Results: mx.test;") {
				t.Errorf("the milter did not see our Authentication-Results first: %q", h)
			}
		})
	}
}

// TestSubmissionSignsAfterMilters: a submitted message is DKIM-signed
// after the milters changed it, so the signature covers their changes
// and verifies where it arrives.
func TestSubmissionSignsAfterMilters(t *testing.T) {
	env := newEnv(t)
	key, err := dkim.Generate(dkim.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner([]dkim.Key{{Domain: "example.org", Selector: "sel", Signer: key}})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.RecordFor(key.Public())
	dns := fakedns.Start(t)
	dns.AddTXT(dkim.RecordName("sel", "example.org"), rec)
	m := fakemilter.Start(t, atEnd(mod('m', "\x00\x00\x00\x01Subject\x00changed by the milter\x00"), mod('b', "new body\r\n"), cont))
	q := &fakeQueue{}
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Queue: q, AuthFailureDelay: -1,
		Auth: smtp.MailAuth{Signer: signer, Milters: milterClient(t, m.Addr), SpoolDir: env.Dir}})
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	send(d, "alice@example.org", []string{"carol@remote.example"}, "From: <alice@example.org>", "Subject: original", "", "old body")
	d.Expect("250 ")
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) != 1 {
		t.Fatalf("queued %d messages", len(q.msgs))
	}
	msg := q.msgs[0].data
	if !strings.Contains(msg, "Subject: changed by the milter\r\n") || !strings.HasSuffix(msg, "\r\n\r\nnew body\r\n") {
		t.Fatalf("the milter's changes are not in the queued message:\n%s", msg)
	}
	res := resolve.New(resolve.Options{Server: dns.Addr})
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) }})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verification %v %+v of\n%s", err, vs, msg)
	}
}

// TestHeldMessageAtTheLimit: a message of exactly max_message_bytes is
// taken however much the server adds to it before delivery
// (Authentication-Results, a milter's field, a DKIM signature): 552 is
// for what the client sent, never for our own fields. One octet more is
// refused.
func TestHeldMessageAtTheLimit(t *testing.T) {
	const max = 10000 // newEnv's max_message_bytes
	dns := fakedns.Start(t, `good.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`)
	checker := mailauth.New(mailauth.Options{Resolver: resolve.New(resolve.Options{Server: dns.Addr}), AuthServID: "mx.test",
		Policy: mailauth.DefaultPolicy(), Timeout: 5 * time.Second})
	key, err := dkim.Generate(dkim.RSA)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner([]dkim.Key{{Domain: "example.org", Selector: "sel", Signer: key}})
	if err != nil {
		t.Fatal(err)
	}
	addHeader := atEnd(mod('h', "X-Filtered\x00"+strings.Repeat("y", 500)+"\x00"), cont)
	for _, c := range []struct {
		name   string
		role   smtp.Role
		auth   func(m *fakemilter.Milter) smtp.MailAuth
		from   string
		header []string
	}{
		{"MX: checks and a milter", smtp.MX, func(m *fakemilter.Milter) smtp.MailAuth {
			return smtp.MailAuth{Checker: checker, AuthServID: "mx.test", Milters: milterClient(t, m.Addr)}
		}, "a@good.example", []string{"From: <a@good.example>"}},
		{"submission: DKIM signature", smtp.Submission, func(*fakemilter.Milter) smtp.MailAuth {
			return smtp.MailAuth{Signer: signer}
		}, "alice@example.org", []string{"From: <alice@example.org>", "Date: Mon, 6 Jul 2026 10:00:00 +0000", "Message-ID: <1@example.org>"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			m := fakemilter.Start(t, addHeader)
			auth := c.auth(m)
			auth.SpoolDir = env.Dir
			addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: c.role, MaxMessageBytes: max, Queue: &fakeQueue{}, AuthFailureDelay: -1, Auth: auth})
			for _, extra := range []int{0, 1} {
				d := mailtest.Dial(t, "tcp", addr)
				if c.role == smtp.Submission {
					login(d)
				} else {
					d.Send("EHLO client.test")
					d.Expect("250 ")
				}
				head := strings.Join(append(c.header, "Subject: big"), "\r\n") + "\r\n\r\n"
				// DATA carries head, the body and its final CRLF.
				body := strings.Repeat("x", max+extra-len(head)-2)
				send(d, c.from, []string{"alice@example.org"}, append(append(c.header, "Subject: big", ""), body)...)
				r := d.Reply()[0]
				if want := []string{"250 ", "552 5.3.4"}[extra]; !strings.HasPrefix(r, want) {
					t.Errorf("%d octets: %q, want %q", max+extra, r, want)
				}
			}
			if got := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(got) != 1 || !strings.Contains(got[0], "xxxxx") {
				t.Errorf("%d messages delivered, want the one at the limit", len(got))
			}
		})
	}
}

// TestSubmissionStripsForgedResults: a submitted message loses the
// Authentication-Results fields that claim this server (RFC 8601 §5),
// for local recipients and the queue alike, from loopback too (a webmail
// on this host): a user must not hand a colleague "dmarc=pass" for a
// From: of somebody else's. Another server's field stays.
func TestSubmissionStripsForgedResults(t *testing.T) {
	env := newEnv(t)
	q := &fakeQueue{}
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Queue: q, AuthFailureDelay: -1,
		Auth: smtp.MailAuth{AuthServID: "mx.test", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, SpoolDir: env.Dir}})
	forged := "Authentication-Results: mx.test; dmarc=pass header.from=bank.example"
	other := "Authentication-Results: other.example; spf=pass"
	for _, to := range []string{"bob@example.org", "carol@remote.example"} {
		d := mailtest.Dial(t, "tcp", addr)
		login(d)
		send(d, "alice@example.org", []string{to}, forged, other, "From: <ceo@bank.example>", "Subject: wire the money", "", "now")
		d.Expect("250 ")
	}
	got := mailtest.Messages(t, env.MailRoot, "example.org/bob")
	q.mu.Lock()
	for _, m := range q.msgs {
		got = append(got, m.data)
	}
	q.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d messages delivered or queued, want 2", len(got))
	}
	for _, m := range got {
		if strings.Contains(m, "mx.test; dmarc=pass") || !strings.Contains(m, other) {
			t.Errorf("the forged field stayed, or another server's went:\n%s", m)
		}
	}
}

// TestSubmissionFromMustBeOwned: before a submitted message is signed,
// its From: is checked against the login as MAIL FROM is: the user's
// own addresses (and aliases that reach the user) of a domain with a key
// are signed; a colleague's, or a From: unreadable but naming a signed
// domain, is refused at the end of DATA (550 5.7.1) and nothing is
// queued; a foreign domain's address goes out unsigned.
func TestSubmissionFromMustBeOwned(t *testing.T) {
	env := newEnv(t)
	key, err := dkim.Generate(dkim.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner([]dkim.Key{{Domain: "example.org", Selector: "sel", Signer: key}})
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Queue: q, Delimiter: "+", AuthFailureDelay: -1,
		Auth: smtp.MailAuth{Signer: signer, SpoolDir: env.Dir}})
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	for _, c := range []struct {
		from   string // the From: field's value; "" for none
		reply  string
		signed bool
	}{
		{"Alice <alice@example.org>", "250 ", true},
		{"<ALICE+news@Example.org>", "250 ", true},
		{"<sales@example.org>", "250 ", true}, // an alias that reaches alice
		{"<bob@example.org>", "550 5.7.1", false},
		{"<support@example.org>", "550 5.7.1", false},       // an alias that does not
		{"<postmaster@mx.example.org>", "550 5.7.1", false}, // signed with the parent's key
		{"<alice@example.org>, <bob@example.org>", "550 5.7.1", false},
		{"bob@example.org <unterminated", "550 5.7.1", false}, // unreadable, names example.org
		{"<alice@elsewhere.example>", "250 ", false},          // not ours to sign: unsigned
		{"", "250 ", false},
	} {
		t.Run(c.from, func(t *testing.T) {
			q.mu.Lock()
			before := len(q.msgs)
			q.mu.Unlock()
			var header []string
			if c.from != "" {
				header = append(header, "From: "+c.from)
			}
			send(d, "alice@example.org", []string{"carol@remote.example"}, append(header, "Subject: from test", "", "body")...)
			if r := d.Reply(); !strings.HasPrefix(r[0], c.reply) {
				t.Fatalf("reply %q, want %s", r, c.reply)
			}
			q.mu.Lock()
			defer q.mu.Unlock()
			switch {
			case c.reply != "250 " && len(q.msgs) != before:
				t.Fatalf("a refused message was queued:\n%s", q.msgs[len(q.msgs)-1].data)
			case c.reply == "250 " && len(q.msgs) != before+1:
				t.Fatalf("queued %d messages, want one", len(q.msgs)-before)
			case c.reply == "250 ":
				if msg := q.msgs[len(q.msgs)-1].data; strings.Contains(msg, "DKIM-Signature:") != c.signed {
					t.Errorf("signed = %v, want %v:\n%s", !c.signed, c.signed, msg)
				}
			}
		})
	}
}
