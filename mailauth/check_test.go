package mailauth_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"

	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/msghdr"
	"mailroom/internal/resolve"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
)

// world is a fake DNS with the domains the tests send from, and a key
// that signs for good.example and fwd.example.
type world struct {
	dns    *fakedns.Server
	signer *dkim.Signer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	k, err := dkim.Generate(dkim.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.RecordFor(k.Public())
	srv := fakedns.Start(t,
		`good.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.good.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`reject.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.reject.example. 60 IN TXT "v=DMARC1; p=reject; sp=quarantine"`,
		`quarantine.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quarantine.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`none.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.none.example. 60 IN TXT "v=DMARC1; p=none"`,
		`nodmarc.example. 60 IN TXT "v=spf1 -all"`,
		`strict.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.strict.example. 60 IN TXT "v=DMARC1; p=reject; aspf=s"`,
		`mail.strict.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`sub.reject.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.broken.example. 60 IN TXT "v=DMARC1; p=bogus"`,
		`broken.example. 60 IN TXT "v=spf1 -all"`,
		`loop.example. 60 IN TXT "v=spf1 include:loop.example -all"`,
	)
	for _, d := range []string{"good.example", "fwd.example"} {
		srv.AddTXT(dkim.RecordName("sel", d), rec)
	}
	srv.Add(t, `_dmarc.fwd.example. 60 IN TXT "v=DMARC1; p=reject"`, `fwd.example. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
	// A chain of 20 includes, each a lookup of its own.
	for i := range 20 {
		srv.Add(t, fmt.Sprintf(`chain%d.example. 60 IN TXT "v=spf1 include:chain%d.example -all"`, i, i+1))
	}
	// Temporary failures: an SPF include, a DKIM key and DMARC records
	// whose servers fail (SERVFAIL).
	srv.Add(t, `tmp.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`_dmarc.tmp.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`tmpq.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`_dmarc.tmpq.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`tmpnone.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`_dmarc.tmpnone.example. 60 IN TXT "v=DMARC1; p=none"`,
		`nodmarctmp.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`keytmp.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.keytmp.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`dnsfail.example. 60 IN TXT "v=spf1 -all"`,
		`dnsfailpass.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
	)
	srv.Add(t, `pct0.example. 60 IN TXT "v=spf1 -all"`, `_dmarc.pct0.example. 60 IN TXT "v=DMARC1; p=reject; pct=0"`,
		`pct0q.example. 60 IN TXT "v=spf1 -all"`, `_dmarc.pct0q.example. 60 IN TXT "v=DMARC1; p=quarantine; pct=0"`)
	srv.ServFail("dead.example")
	srv.ServFail("_domainkey.keytmp.example")
	srv.ServFail("_dmarc.dnsfail.example")
	srv.ServFail("_dmarc.dnsfailpass.example")
	srv.Hang("slow.example")
	srv.Add(t, `_dmarc.slow.example. 60 IN TXT "v=DMARC1; p=reject"`)
	s, err := dkim.NewSigner([]dkim.Key{{Domain: "good.example", Selector: "sel", Signer: k}, {Domain: "fwd.example", Selector: "sel", Signer: k},
		{Domain: "keytmp.example", Selector: "sel", Signer: k}})
	if err != nil {
		t.Fatal(err)
	}
	return &world{dns: srv, signer: s}
}

func (w *world) checker(p mailauth.Policy, timeout time.Duration) *mailauth.Checker {
	return mailauth.New(mailauth.Options{Resolver: resolve.New(resolve.Options{Server: w.dns.Addr}),
		AuthServID: "mx.test", Policy: p, Timeout: timeout})
}

func message(from string) string {
	return "From: <" + from + ">\r\nTo: alice@example.org\r\nSubject: test\r\nDate: Mon, 6 Jul 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
}

func (w *world) signed(t *testing.T, msg string) string {
	t.Helper()
	sig, err := w.signer.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig + msg
}

func check(t *testing.T, c *mailauth.Checker, ip, mailFrom, msg string) *mailauth.Result {
	t.Helper()
	h, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(msg)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return c.Check(t.Context(), mailauth.Envelope{IP: net.ParseIP(ip), Helo: "client.test", MailFrom: mailFrom}, h, strings.NewReader(msg))
}

func TestChecksAndPolicy(t *testing.T) {
	w := newWorld(t)
	strictSPF := mailauth.DefaultPolicy()
	strictSPF.SPFFail = mailauth.Reject
	markAll := mailauth.Policy{DMARCReject: mailauth.Mark, DMARCQuarantine: mailauth.Mark, SPFFail: mailauth.Mark, BadFrom: mailauth.Mark}
	strictSPFNoFrom := markAll
	strictSPFNoFrom.SPFFail = mailauth.Reject
	markTemp := mailauth.DefaultPolicy()
	markTemp.TempError = mailauth.Mark
	good := message("a@good.example")
	// withFrom is good with its From: line replaced.
	withFrom := func(from string) string { return strings.Replace(good, "From: <a@good.example>\r\n", from, 1) }
	signedGood := w.signed(t, good)
	cases := []struct {
		name           string
		policy         mailauth.Policy
		ip, from, msg  string
		spf            spf.Result
		dkim           string // result of the one signature, "" for none
		dmarc, applied string
		action         mailauth.Action
	}{
		{"aligned SPF and DKIM", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example", w.signed(t, good), spf.Pass, "pass", "pass", "none", mailauth.Mark},
		{"aligned SPF only", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example", good, spf.Pass, "", "pass", "none", mailauth.Mark},
		{"forwarded: SPF fails, DKIM carries it", mailauth.DefaultPolicy(), "127.0.0.1", "a@fwd.example", w.signed(t, message("a@fwd.example")), spf.Fail, "pass", "pass", "none", mailauth.Mark},
		{"signature broken in transit", mailauth.DefaultPolicy(), "127.0.0.1", "a@fwd.example", strings.Replace(w.signed(t, message("a@fwd.example")), "Hello", "Hullo", 1), spf.Fail, "fail", "fail", "reject", mailauth.Reject},
		{"p=reject", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example", message("a@reject.example"), spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"p=reject, marked by policy", markAll, "127.0.0.1", "a@reject.example", message("a@reject.example"), spf.Fail, "", "fail", "reject", mailauth.Mark},
		{"subdomain takes sp=", mailauth.DefaultPolicy(), "127.0.0.1", "a@sub.reject.example", message("a@sub.reject.example"), spf.Fail, "", "fail", "quarantine", mailauth.Quarantine},
		{"p=quarantine", mailauth.DefaultPolicy(), "127.0.0.1", "a@quarantine.example", message("a@quarantine.example"), spf.Fail, "", "fail", "quarantine", mailauth.Quarantine},
		{"p=none", mailauth.DefaultPolicy(), "127.0.0.1", "a@none.example", message("a@none.example"), spf.Fail, "", "fail", "none", mailauth.Mark},
		{"SPF fail without DMARC: marked", mailauth.DefaultPolicy(), "127.0.0.1", "a@nodmarc.example", message("a@nodmarc.example"), spf.Fail, "", "none", "", mailauth.Mark},
		{"SPF fail without DMARC: rejected by policy", strictSPF, "127.0.0.1", "a@nodmarc.example", message("a@nodmarc.example"), spf.Fail, "", "none", "", mailauth.Reject},
		{"From: good, envelope elsewhere: not aligned", mailauth.DefaultPolicy(), "127.0.0.1", "a@nodmarc.example", good, spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"strict SPF alignment", mailauth.DefaultPolicy(), "127.0.0.1", "a@mail.strict.example", message("a@strict.example"), spf.Pass, "", "fail", "reject", mailauth.Reject},
		{"broken DMARC record", mailauth.DefaultPolicy(), "127.0.0.1", "a@broken.example", message("a@broken.example"), spf.Fail, "", "permerror", "", mailauth.Mark},
		{"second From: cannot hide the first", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example",
			strings.Replace(good, "From: <a@good.example>", "From: <a@good.example>, <b@reject.example>", 1), spf.Pass, "", "fail", "reject", mailauth.Reject},
		{"null sender: HELO checked", mailauth.DefaultPolicy(), "127.0.0.1", "", message("a@nodmarc.example"), spf.None, "", "none", "", mailauth.Mark},

		// A From: net/mail cannot read is checked against every domain
		// in it, not waved through as a permerror.
		{"From: with a trailing semicolon", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example", withFrom("From: a@reject.example;\r\n"), spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"From: with a stray >", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example", withFrom("From: \"x\" <a@reject.example>>\r\n"), spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"From: with an unclosed comment", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example", withFrom("From: a@reject.example (unclosed\r\n"), spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"malformed From: hiding a second domain", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example", withFrom("From: <a@good.example>, <b@reject.example>;\r\n"), spf.Pass, "", "fail", "reject", mailauth.Reject},
		{"From: domain with a full-width dot", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example", withFrom("From: <a@reject\u3002example>\r\n"), spf.Fail, "", "fail", "reject", mailauth.Reject},
		// No author domain at all: bad_from decides, and spf_fail
		// still applies where it is the only verdict.
		{"no From:", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example", withFrom(""), spf.Pass, "", "permerror", "", mailauth.Reject},
		{"From: without a domain", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example", withFrom("From: undisclosed\r\n"), spf.Pass, "", "permerror", "", mailauth.Reject},
		{"no From:, marked by policy", markAll, "127.0.0.1", "a@good.example", withFrom(""), spf.Pass, "", "permerror", "", mailauth.Mark},
		{"no From:, SPF fail refused by spf_fail", strictSPFNoFrom, "127.0.0.1", "a@nodmarc.example", withFrom(""), spf.Fail, "", "permerror", "", mailauth.Reject},
		{"broken DMARC record, SPF fail refused by spf_fail", strictSPF, "127.0.0.1", "a@broken.example", message("a@broken.example"), spf.Fail, "", "permerror", "", mailauth.Reject},

		// RFC 7489 §6.6.4: pct=0 applies the next milder policy to
		// every failing message.
		{"p=reject; pct=0: quarantined", mailauth.DefaultPolicy(), "127.0.0.1", "a@pct0.example", message("a@pct0.example"), spf.Fail, "", "fail", "quarantine", mailauth.Quarantine},
		{"p=quarantine; pct=0: marked", mailauth.DefaultPolicy(), "127.0.0.1", "a@pct0q.example", message("a@pct0q.example"), spf.Fail, "", "fail", "none", mailauth.Mark},
		// A temporary failure never refuses for good (RFC 7489
		// §6.6.2): where it could have made the difference, the message
		// is deferred (451), per temperror.
		{"SPF temperror under p=reject: deferred", mailauth.DefaultPolicy(), "127.0.0.1", "a@tmp.example", message("a@tmp.example"), spf.TempError, "", "temperror", "reject", mailauth.Defer},
		{"SPF temperror under p=quarantine: deferred", mailauth.DefaultPolicy(), "127.0.0.1", "a@tmpq.example", message("a@tmpq.example"), spf.TempError, "", "temperror", "quarantine", mailauth.Defer},
		{"SPF temperror under p=none: marked", mailauth.DefaultPolicy(), "127.0.0.1", "a@tmpnone.example", message("a@tmpnone.example"), spf.TempError, "", "temperror", "none", mailauth.Mark},
		{"SPF temperror under p=reject, temperror = mark", markTemp, "127.0.0.1", "a@tmp.example", message("a@tmp.example"), spf.TempError, "", "temperror", "reject", mailauth.Mark},
		{"SPF temperror of a domain that cannot align: refused", mailauth.DefaultPolicy(), "127.0.0.1", "a@tmp.example", message("a@reject.example"), spf.TempError, "", "fail", "reject", mailauth.Reject},
		{"DKIM key lookup temperror under p=reject: deferred", mailauth.DefaultPolicy(), "127.0.0.1", "a@keytmp.example", w.signed(t, message("a@keytmp.example")), spf.Fail, "temperror", "temperror", "reject", mailauth.Defer},
		{"DMARC record lookup SERVFAIL: deferred", mailauth.DefaultPolicy(), "127.0.0.1", "a@dnsfail.example", message("a@dnsfail.example"), spf.Fail, "", "temperror", "", mailauth.Defer},
		{"DMARC record lookup SERVFAIL, SPF passes for the From: domain: marked", mailauth.DefaultPolicy(), "127.0.0.1", "a@dnsfailpass.example", message("a@dnsfailpass.example"), spf.Pass, "", "temperror", "", mailauth.Mark},
		{"SPF temperror without DMARC, spf_fail = reject: deferred", strictSPF, "127.0.0.1", "a@nodmarctmp.example", message("a@nodmarctmp.example"), spf.TempError, "", "none", "", mailauth.Defer},
		{"SPF temperror without DMARC: marked", mailauth.DefaultPolicy(), "127.0.0.1", "a@nodmarctmp.example", message("a@nodmarctmp.example"), spf.TempError, "", "none", "", mailauth.Mark},
		// At most 5 From: domains are looked up; more is judged by
		// bad_from rather than let the sixth hide.
		{"six From: domains: bad_from", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example",
			withFrom("From: a@good.example, b@x1.example, c@x2.example, d@x3.example, e@x4.example, f@reject.example\r\n"), spf.Pass, "", "permerror", "", mailauth.Reject},
		{"five From: domains: each checked", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example",
			withFrom("From: a@good.example, b@x1.example, c@x2.example, d@x3.example, f@reject.example\r\n"), spf.Pass, "", "fail", "reject", mailauth.Reject},

		// The header goes on to the empty line, as mail readers and the
		// DKIM verifier read it: a line that is not a field hides
		// nothing after it.
		{"From: after a line that is not a field", mailauth.DefaultPolicy(), "127.0.0.1", "a@good.example",
			strings.Replace(good, "Subject: test\r\n", "Subject: test\r\nnot a field\r\nFrom: <ceo@reject.example>\r\n", 1), spf.Pass, "", "fail", "reject", mailauth.Reject},
		{"DKIM-Signature written with a space before the colon", mailauth.DefaultPolicy(), "127.0.0.1", "a@nodmarc.example",
			strings.Replace(signedGood, "DKIM-Signature:", "DKIM-Signature :", 1), spf.Fail, "pass", "pass", "none", mailauth.Mark},
		{"From written with a space before the colon", mailauth.DefaultPolicy(), "127.0.0.1", "a@reject.example",
			strings.Replace(message("a@reject.example"), "From:", "From :", 1), spf.Fail, "", "fail", "reject", mailauth.Reject},
		{"DKIM-Signature after a line that is not a field", mailauth.DefaultPolicy(), "127.0.0.1", "a@nodmarc.example",
			"X-First: 1\r\nnot a field\r\n" + signedGood, spf.Fail, "pass", "pass", "none", mailauth.Mark},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := check(t, w.checker(c.policy, 5*time.Second), c.ip, c.from, c.msg)
			if r.SPF.Result != c.spf {
				t.Errorf("spf = %s (%v), want %s", r.SPF.Result, r.SPF.Err, c.spf)
			}
			switch {
			case c.dkim == "" && len(r.DKIM) != 0:
				t.Errorf("dkim results %+v, want none", r.DKIM)
			case c.dkim != "" && (len(r.DKIM) != 1 || r.DKIM[0].Result != c.dkim):
				t.Errorf("dkim results %+v, want one %s", r.DKIM, c.dkim)
			}
			if r.DMARC.Result != c.dmarc || r.DMARC.Applied != c.applied {
				t.Errorf("dmarc = %s/%s (%v), want %s/%s", r.DMARC.Result, r.DMARC.Applied, r.DMARC.Err, c.dmarc, c.applied)
			}
			if r.Action != c.action {
				t.Errorf("action = %v (%s), want %v", r.Action, r.Reason, c.action)
			}
		})
	}
}

// TestHostileSPFIsBounded: an include loop and a 20-deep include chain
// end in permerror after at most 10 lookups (RFC 7208 §4.6.4), and a
// domain whose DNS never answers costs no more than the per-message
// timeout and is a temperror, never a refusal.
func TestHostileSPFIsBounded(t *testing.T) {
	w := newWorld(t)
	w.dns.Delay(20 * time.Millisecond)
	c := w.checker(mailauth.DefaultPolicy(), 2*time.Second)
	for _, from := range []string{"a@loop.example", "a@chain0.example"} {
		before := w.dns.Queries()
		start := time.Now()
		r := check(t, c, "127.0.0.1", from, message(from))
		if r.SPF.Result != spf.PermError {
			t.Errorf("%s: spf=%s (%v), want permerror", from, r.SPF.Result, r.SPF.Err)
		}
		// SPF's at most 11 record lookups plus DMARC's two (From: and
		// its organizational domain), at 20 ms each.
		if q := w.dns.Queries() - before; q > 14 {
			t.Errorf("%s: %d DNS questions, want at most 14", from, q)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("%s: took %v", from, d)
		}
	}
	start := time.Now()
	r := check(t, c, "127.0.0.1", "a@slow.example", message("a@slow.example"))
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("a silent DNS held the check %v with a 2s timeout", d)
	}
	if r.SPF.Result != spf.TempError || r.DMARC.Result != "temperror" || r.Action != mailauth.Defer {
		t.Errorf("silent DNS: spf=%s dmarc=%s action=%v; want temperror, temperror, defer", r.SPF.Result, r.DMARC.Result, r.Action)
	}
	// An envelope domain whose DNS never answers does not use up the
	// From: domain's time: its p=reject still refuses.
	r = check(t, c, "127.0.0.1", "a@slow.example", message("a@reject.example"))
	if r.SPF.Result != spf.TempError || r.DMARC.Result != "fail" || r.Action != mailauth.Reject {
		t.Errorf("silent envelope domain, From: p=reject: spf=%s dmarc=%s (%v) action=%v; want temperror, fail, reject",
			r.SPF.Result, r.DMARC.Result, r.DMARC.Err, r.Action)
	}
}

// TestSPFLookupLimitIsTen: the limit is RFC 7208 §4.6.4's own, not a
// stricter one that would fail senders who keep to it: a chain of 10
// includes (10 lookups that count) passes, one of 11 is a permerror.
func TestSPFLookupLimitIsTen(t *testing.T) {
	w := newWorld(t)
	c := w.checker(mailauth.DefaultPolicy(), 5*time.Second)
	for _, n := range []int{9, 10, 11} {
		for i := range n {
			w.dns.Add(t, fmt.Sprintf(`l%d-%d.example. 60 IN TXT "v=spf1 include:l%d-%d.example -all"`, n, i, n, i+1))
		}
		w.dns.Add(t, fmt.Sprintf(`l%d-%d.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`, n, n))
		from := fmt.Sprintf("a@l%d-0.example", n)
		want := spf.Pass
		if n > 10 {
			want = spf.PermError
		}
		if r := check(t, c, "127.0.0.1", from, message(from)); r.SPF.Result != want {
			t.Errorf("%d includes: spf=%s (%v), want %s", n, r.SPF.Result, r.SPF.Err, want)
		}
	}
}

// TestDKIMSignaturesAreBounded: a message with 20 signatures, each of
// another domain, costs at most MaxSignatures (5) key lookups, the rest
// ignored; the five are reported in header order.
func TestDKIMSignaturesAreBounded(t *testing.T) {
	w := newWorld(t)
	msg := message("a@good.example")
	for i := range 20 {
		msg = fmt.Sprintf("DKIM-Signature: v=1; a=rsa-sha256; d=sig%d.example; s=sel; h=From; bh=AAAA; b=AAAA\r\n", i) + msg
	}
	r := check(t, w.checker(mailauth.DefaultPolicy(), 5*time.Second), "127.0.0.1", "a@good.example", msg)
	asked := 0
	for i := range 20 {
		asked += w.dns.QueriesFor(fmt.Sprintf("sel._domainkey.sig%d.example", i))
	}
	if asked > 5 || len(r.DKIM) != 5 || r.DKIM[0].Domain != "sig19.example" {
		t.Errorf("20 signatures: %d key lookups, %d results (first %+v); want at most 5, 5 from the top", asked, len(r.DKIM), r.DKIM[0])
	}
	if r.DMARC.Result != "pass" || r.Action != mailauth.Mark {
		t.Errorf("dmarc %s, action %v: the extra signatures must not change the verdict of aligned SPF", r.DMARC.Result, r.Action)
	}
}

// TestUnreadableMessage: a message the checks cannot read (a failing
// spool) is an error, not a broken signature that DMARC would refuse.
func TestUnreadableMessage(t *testing.T) {
	w := newWorld(t)
	msg := w.signed(t, message("a@good.example"))
	h, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(msg)), 0)
	if err != nil {
		t.Fatal(err)
	}
	broken := io.MultiReader(strings.NewReader(msg[:len(msg)/2]), iotest.ErrReader(errors.New("input/output error")))
	r := w.checker(mailauth.DefaultPolicy(), 5*time.Second).Check(t.Context(),
		mailauth.Envelope{IP: net.ParseIP("192.0.2.9"), Helo: "client.test", MailFrom: "a@reject.example"}, h, broken)
	if r.Err == nil || r.Action != mailauth.Mark {
		t.Errorf("unreadable message: err %v, action %v, dkim %+v; want an error and no verdict", r.Err, r.Action, r.DKIM)
	}
}

func TestHeader(t *testing.T) {
	w := newWorld(t)
	r := check(t, w.checker(mailauth.DefaultPolicy(), 5*time.Second), "127.0.0.1", "a@good.example", w.signed(t, message("a@good.example")))
	f := r.Header("mx.test")
	v := f.Value()
	for _, want := range []string{"mx.test;", "spf=pass smtp.mailfrom=a@good.example", "dkim=pass header.b=", "header.d=good.example", "header.s=sel", "dmarc=pass", "header.from=good.example", "p=REJECT"} {
		if !strings.Contains(strings.ToUpper(v), strings.ToUpper(want)) {
			t.Errorf("Authentication-Results lacks %q:\n%s", want, f.Raw)
		}
	}
	if mailauth.AuthServID(v) != "mx.test" {
		t.Errorf("our own field's authserv-id reads as %q", mailauth.AuthServID(v))
	}
	// dis= is what was done: a p=reject failure that our policy only
	// marks was not refused, and p=quarantine went to Junk.
	markAll := mailauth.Policy{DMARCReject: mailauth.Mark, DMARCQuarantine: mailauth.Mark, SPFFail: mailauth.Mark, BadFrom: mailauth.Mark}
	for _, c := range []struct {
		policy mailauth.Policy
		from   string
		want   string
	}{
		{markAll, "a@reject.example", "dmarc=fail reason=\"p=REJECT dis=NONE\""},
		{mailauth.DefaultPolicy(), "a@quarantine.example", "dmarc=fail reason=\"p=QUARANTINE dis=QUARANTINE\""},
		{mailauth.DefaultPolicy(), "a@none.example", "dmarc=fail reason=\"p=NONE dis=NONE\""},
	} {
		r := check(t, w.checker(c.policy, 5*time.Second), "127.0.0.1", c.from, message(c.from))
		if v := r.Header("mx.test").Value(); !strings.Contains(v, c.want) {
			t.Errorf("%s: %s, want %s", c.from, v, c.want)
		}
	}
	r = check(t, w.checker(mailauth.DefaultPolicy(), 5*time.Second), "127.0.0.1", "", message("a@nodmarc.example"))
	if v := r.Header("mx.test").Value(); !strings.Contains(v, "smtp.helo=client.test") || !strings.Contains(v, "dkim=none") {
		t.Errorf("null sender's field: %s", v)
	}
}

// TestHeaderLines: the field keeps to RFC 5322 §2.1.1 (no line over 998
// octets; folded, one result a line, before 78 where it can be) whatever
// the sender put in the values it names: a long envelope sender, HELO
// name, From: domain, and several signatures with long d= and s= tags.
// A value no address or domain can have (over 255 octets, RFC 5321
// §4.5.3.1) is left out rather than cut to something it is not; the
// field reads back as one, with its authserv-id and every result.
func TestHeaderLines(t *testing.T) {
	w := newWorld(t)
	c := w.checker(mailauth.DefaultPolicy(), 5*time.Second)
	long := strings.Repeat("x", 300) + ".example"
	msg := message("a@" + long)
	for i := range 5 {
		msg = fmt.Sprintf("DKIM-Signature: v=1; a=rsa-sha256; d=%s%d; s=%s; h=From; bh=AAAA; b=AAAA\r\n", long, i, strings.Repeat("s", 400)) + msg
	}
	msg = w.signed(t, msg)
	h, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(msg)), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []mailauth.Envelope{
		{IP: net.ParseIP("127.0.0.1"), Helo: "client.test", MailFrom: strings.Repeat("a", 900) + "@" + long},
		{IP: net.ParseIP("127.0.0.1"), Helo: strings.Repeat("h", 900) + ".example"},
		{IP: net.ParseIP("127.0.0.1"), Helo: "client.test", MailFrom: "a@good.example"},
	} {
		r := c.Check(t.Context(), env, h, strings.NewReader(msg))
		f := r.Header("mx.test")
		for line := range strings.Lines(string(f.Raw)) {
			if len(line) > 998+2 {
				t.Errorf("a line of %d octets:\n%.200s...", len(line), line)
			}
			if strings.Contains(line, strings.Repeat("x", 300)) || strings.Contains(line, strings.Repeat("s", 300)) || strings.Contains(line, strings.Repeat("h", 300)) {
				t.Errorf("an impossible value was written: %.200s...", line)
			}
		}
		back, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(string(f.Raw)+"\r\n")), 0)
		if err != nil || len(back) != 1 {
			t.Fatalf("the field reads back as %d fields (%v):\n%s", len(back), err, f.Raw)
		}
		id, results, err := authres.Parse(back[0].Value())
		if err != nil || id != "mx.test" || len(results) != 1+len(r.DKIM)+1 {
			t.Errorf("authres.Parse: %q, %d results (want %d), %v:\n%s", id, len(results), 2+len(r.DKIM), err, f.Raw)
		}
		if env.MailFrom == "a@good.example" && !strings.Contains(back[0].Value(), "smtp.mailfrom=a@good.example") {
			t.Errorf("an ordinary sender is not named:\n%s", f.Raw)
		}
	}
}

// FuzzHeader: whatever names the sender chose, the field is one field of
// lines within 998 octets, and it says what the unfolded field says.
func FuzzHeader(f *testing.F) {
	f.Add("a@good.example", "client.test", "good.example", "sel", "good.example", "reject")
	f.Add(`"a; (b)  c"@x.example`, "h", "d (x", `s"q`, "", "")
	f.Add(strings.Repeat("a ", 200), "", strings.Repeat("d", 80), strings.Repeat("s ", 60), "x", "none")
	f.Fuzz(func(t *testing.T, mailFrom, helo, d, sel, from, policy string) {
		r := &mailauth.Result{
			SPF:   mailauth.SPFResult{Result: spf.Fail, Identity: "mailfrom", Value: mailFrom},
			DKIM:  []mailauth.DKIMResult{{Result: "fail", Domain: d, Selector: sel, B: "AAAA"}, {Result: "pass", Domain: from, Selector: helo}},
			DMARC: mailauth.DMARCResult{Result: "fail", Domain: from, Policy: policy},
		}
		if mailFrom == "" {
			r.SPF.Identity, r.SPF.Value = "helo", helo
		}
		raw := string(r.Header("mx.test").Raw)
		for line := range strings.Lines(raw) {
			if len(line) > 1000 {
				t.Fatalf("a line of %d octets", len(line))
			}
		}
		back, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(raw+"\r\n")), 0)
		if err != nil || len(back) != 1 {
			t.Fatalf("%d fields read back (%v):\n%q", len(back), err, raw)
		}
		unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(back[0].Value())
		_, want, werr := authres.Parse(unfolded)
		_, got, gerr := authres.Parse(back[0].Value())
		if (werr == nil) != (gerr == nil) || len(want) != len(got) {
			t.Fatalf("folded: %d results (%v), unfolded %d (%v):\n%q", len(got), gerr, len(want), werr, raw)
		}
	})
}

func TestStripForged(t *testing.T) {
	in := "Authentication-Results: mx.test; spf=pass smtp.mailfrom=x@good.example\r\n" +
		"Authentication-Results: (forged) MX.TEST 1; dkim=pass\r\n" +
		"Authentication-Results: mx.test.evil.example; spf=fail\r\n" +
		"Authentication-Results:\r\n mx.test;\r\n dmarc=pass\r\n" +
		"Authentication-Results: other.example; dkim=pass\r\n" +
		"Subject: x\r\n\r\n"
	h, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(in)), 0)
	if err != nil {
		t.Fatal(err)
	}
	out, n := mailauth.StripForged(h, "mx.test")
	if n != 3 || len(out) != 3 || out[0].Value() != "mx.test.evil.example; spf=fail" || !out[2].Is("Subject") {
		t.Errorf("StripForged removed %d, left %q", n, out.Bytes())
	}
}

func TestAuthServID(t *testing.T) {
	for in, want := range map[string]string{
		"mx.test; spf=pass":              "mx.test",
		"  mx.test 1 ; none":             "mx.test",
		"(a (nested) comment) mx.test;x": "mx.test",
		"(unclosed mx.test;":             "",
		"mx.test(comment);":              "mx.test",
		"":                               "",
		"\\(x) y":                        "\\",
		`"mx.test" 1; none`:              "mx.test",
		`"mx\".test`:                     "",
	} {
		if got := mailauth.AuthServID(in); got != want {
			t.Errorf("AuthServID(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzAuthServID(f *testing.F) {
	f.Add("mx.test; spf=pass")
	f.Add("((\\)) x")
	f.Fuzz(func(t *testing.T, v string) {
		id := mailauth.AuthServID(v)
		if !strings.HasPrefix(strings.TrimLeft(v, " \t\r\n"), "\"") && strings.ContainsAny(id, "; \t\r\n(") {
			t.Fatalf("AuthServID(%q) = %q contains a delimiter", v, id)
		}
		if !strings.HasPrefix(strings.TrimSpace(v), "\"") && !strings.Contains(v, id) {
			t.Fatalf("AuthServID(%q) = %q is not part of the value", v, id)
		}
	})
}
