package dkim_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/dkimtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/msghdr"
	"mailroom/internal/resolve"
	"mailroom/mailauth/dkim"
)

// Keys are slow to make (RSA): one of each per test process.
var (
	keysOnce sync.Once
	rsaKey   crypto.Signer
	edKey    crypto.Signer
)

func testKeys(t testing.TB) (crypto.Signer, crypto.Signer) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = dkim.Generate(dkim.RSA); err != nil {
			panic(err)
		}
		if edKey, err = dkim.Generate(dkim.Ed25519); err != nil {
			panic(err)
		}
	})
	return rsaKey, edKey
}

// publish serves the keys' records under example.org on a fake DNS server.
func publish(t testing.TB, srv *fakedns.Server, keys []dkim.Key) {
	t.Helper()
	for _, k := range keys {
		rec, err := dkim.RecordFor(k.Signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		srv.AddTXT(dkim.RecordName(k.Selector, k.Domain), rec)
	}
}

func dualKeys(t testing.TB) []dkim.Key {
	r, e := testKeys(t)
	return []dkim.Key{
		{Domain: "example.org", Selector: "mr-rsa", Signer: r},
		{Domain: "example.org", Selector: "mr-ed", Signer: e},
	}
}

const message = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: signed\r\n" +
	"Date: Mon, 6 Jul 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Not-Signed: anything\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\n  with  some   spaces   \r\nand a bare LF\nbye\r\n\r\n\r\n"

func sign(t testing.TB, s *dkim.Signer, msg string) string {
	t.Helper()
	sig, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// verifyGo checks with go-msgauth through our resolver and the fake DNS:
// one verification error per signature (nil for a pass).
func verifyGo(t testing.TB, dnsAddr, msg string) []error {
	t.Helper()
	r := resolve.New(resolve.Options{Server: dnsAddr})
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return r.LookupTXT(t.Context(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []error
	for _, v := range vs {
		out = append(out, v.Err)
	}
	return out
}

func dkimpy(t testing.TB, dnsAddr, msg string) (string, bool) {
	t.Helper()
	return dkimtest.DKIMPy(t, dnsAddr, msg)
}

func TestSignVerifiesWithDkimpy(t *testing.T) {
	srv := fakedns.Start(t)
	keys := dualKeys(t)
	publish(t, srv, keys)
	s, err := dkim.NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	sig := sign(t, s, message)
	if n := strings.Count(sig, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures, want 2 (RSA and Ed25519):\n%s", n, sig)
	}
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.org", "s=mr-rsa", "s=mr-ed"} {
		if !strings.Contains(sig, want) {
			t.Errorf("signatures lack %s:\n%s", want, sig)
		}
	}
	signed := sig + message
	for i, err := range verifyGo(t, srv.Addr, signed) {
		if err != nil {
			t.Errorf("go-msgauth: signature %d: %v", i, err)
		}
	}
	out, ok := dkimpy(t, srv.Addr, signed)
	if !ok || strings.Count(out, " pass") != 2 {
		t.Fatalf("dkimpy did not verify both signatures:\n%s", out)
	}

	// Altered after signing: every verifier must fail every signature.
	for name, altered := range map[string]string{
		"body":          strings.Replace(signed, "Hello Bob", "Hello Eve", 1),
		"subject":       strings.Replace(signed, "Subject: signed", "Subject: changed", 1),
		"added From":    strings.Replace(signed, "To: bob", "From: ceo@example.org\r\nTo: bob", 1),
		"appended body": signed + "P.S. added later\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			if out, ok := dkimpy(t, srv.Addr, altered); ok || strings.Contains(out, " pass") {
				t.Errorf("dkimpy passed an altered message:\n%s", out)
			}
			for i, err := range verifyGo(t, srv.Addr, altered) {
				if err == nil {
					t.Errorf("go-msgauth passed signature %d of an altered message", i)
				}
			}
		})
	}
	// Changes relaxed canonicalization allows (RFC 6376 §3.4.2, §3.4.4)
	// keep the signatures valid.
	relaxed := strings.Replace(signed, "Subject: signed", "subject:   signed ", 1)
	relaxed = strings.Replace(relaxed, "  with  some   spaces   ", " with some spaces", 1)
	if out, ok := dkimpy(t, srv.Addr, relaxed); !ok {
		t.Errorf("dkimpy failed a message changed only as relaxed canonicalization allows:\n%s", out)
	}
}

// TestSignVerifiesWithOpendkim checks the RSA and Ed25519 signatures with
// libopendkim (opendkim-testmsg, see mailtest.Opendkim).
func TestSignVerifiesWithOpendkim(t *testing.T) {
	keys := dualKeys(t)
	records := map[string]string{}
	for _, k := range keys {
		rec, _ := dkim.RecordFor(k.Signer.Public())
		records[dkim.RecordName(k.Selector, k.Domain)] = rec
	}
	for _, k := range keys {
		t.Run(dkim.Algorithm(k.Signer.Public()), func(t *testing.T) {
			s, err := dkim.NewSigner([]dkim.Key{k})
			if err != nil {
				t.Fatal(err)
			}
			signed := sign(t, s, message) + message
			if out, err := dkimtest.Opendkim(t, records, signed); err != nil {
				t.Fatalf("opendkim-testmsg did not verify: %v\n%s", err, out)
			}
			if out, err := dkimtest.Opendkim(t, records, strings.Replace(signed, "Hello Bob", "Hello Eve", 1)); err == nil {
				t.Errorf("opendkim-testmsg verified an altered message: %s", out)
			}
		})
	}
}

func TestSignerChoosesTheFromDomain(t *testing.T) {
	r, e := testKeys(t)
	s, err := dkim.NewSigner([]dkim.Key{
		{Domain: "example.org", Selector: "a", Signer: r},
		{Domain: "Other.Example.", Selector: "b", Signer: e},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from string
		want string // d= of the one signature, "" for none
	}{
		{"alice@example.org", "example.org"},
		{"MAILER-DAEMON@mx.example.org", "example.org"}, // parent domain: relaxed alignment
		{"x@deep.sub.other.example", "other.example"},
		{"bob@example.net", ""},
		{"eve@org", ""},
		{"eve@notexample.org", ""},
	} {
		sig := sign(t, s, "From: "+c.from+"\r\nSubject: x\r\n\r\nbody\r\n")
		if c.want == "" {
			if sig != "" {
				t.Errorf("From: %s was signed: %s", c.from, sig)
			}
			continue
		}
		if !strings.Contains(sig, "d="+c.want+";") || strings.Count(sig, "DKIM-Signature:") != 1 {
			t.Errorf("From: %s: want one signature with d=%s, got\n%s", c.from, c.want, sig)
		}
	}
	if _, err := s.Sign(strings.NewReader("Subject: no from\r\n\r\nbody\r\n")); err == nil {
		t.Error("a message without From: was signed without error")
	}
}

func TestSignedHeaders(t *testing.T) {
	r, _ := testKeys(t)
	s, _ := dkim.NewSigner([]dkim.Key{{Domain: "example.org", Selector: "a", Signer: r}})
	sig := sign(t, s, message)
	tags, err := dkim.ParseTags(strings.ReplaceAll(strings.TrimPrefix(sig, "DKIM-Signature:"), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	h := strings.Join(strings.Fields(tags["h"]), "")
	const want = "From:From:Subject:Date:To:Message-ID:MIME-Version:Content-Type"
	if h != want {
		t.Errorf("h=%s, want %s (present fields of opendkim's list, From oversigned)", h, want)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	r, e := testKeys(t)
	for _, k := range []crypto.Signer{r, e} {
		pemData, err := dkim.MarshalKey(k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dkim.ParseKey(pemData)
		if err != nil {
			t.Fatal(err)
		}
		if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s key changed through PEM", dkim.Algorithm(k.Public()))
		}
		rec, err := dkim.RecordFor(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := dkim.ParseRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := parsed.Matches(k.Public()); err != nil {
			t.Errorf("the record of a %s key does not match it: %v", dkim.Algorithm(k.Public()), err)
		}
	}
	// opendkim-genkey's PKCS #1 key files are accepted.
	t.Run("opendkim-genkey", func(t *testing.T) {
		p := mailtest.NeedTool(t, "opendkim-genkey")
		dir := t.TempDir()
		if out, err := exec.Command(p, "-D", dir, "-d", "example.org", "-s", "legacy").CombinedOutput(); err != nil {
			t.Fatalf("opendkim-genkey: %v %s", err, out)
		}
		k, err := dkim.LoadKey(filepath.Join(dir, "legacy.private"))
		if err != nil {
			t.Fatal(err)
		}
		txt, _ := os.ReadFile(filepath.Join(dir, "legacy.txt"))
		rec, err := dkim.ParseRecord(zoneValue(string(txt)))
		if err != nil {
			t.Fatalf("opendkim-genkey's record: %v\n%s", err, txt)
		}
		if err := rec.Matches(k.Public()); err != nil {
			t.Errorf("opendkim-genkey's record and key do not match by our reading: %v", err)
		}
		if _, ok := k.(*rsa.PrivateKey); !ok {
			t.Errorf("opendkim key read as %T", k)
		}
	})
}

// zoneValue joins the quoted strings of a zone-file TXT line.
func zoneValue(line string) string {
	var b strings.Builder
	for i, part := range strings.Split(line, `"`) {
		if i%2 == 1 {
			b.WriteString(part)
		}
	}
	return b.String()
}

func TestZoneLineSplits(t *testing.T) {
	r, _ := testKeys(t)
	rec, _ := dkim.RecordFor(r.Public())
	line := dkim.ZoneLine("sel", "example.org", rec)
	if !strings.HasPrefix(line, "sel._domainkey.example.org. 3600 IN TXT (") {
		t.Errorf("zone line starts %q", line[:40])
	}
	if zoneValue(line) != rec {
		t.Error("the quoted strings of the zone line do not make up the record")
	}
	for i, part := range strings.Split(line, `"`) {
		if i%2 == 1 && len(part) > 255 {
			t.Errorf("a string of %d octets (DNS allows 255)", len(part))
		}
	}
}

func TestParseRecord(t *testing.T) {
	_, e := testKeys(t)
	p, _ := dkim.PublicKeyData(e.Public())
	for _, c := range []struct {
		txt   string
		err   bool // ParseRecord fails
		match bool // the record is usable for e
	}{
		{"v=DKIM1; k=ed25519; p=" + p, false, true},
		{"k=ed25519; p=" + p + "; t=y", false, true},
		{"v=DKIM1;k=ed25519;h=sha256;s=email;p=" + p, false, true},
		{"v=DKIM1; k=ed25519; h=sha1; p=" + p, false, false},
		{"v=DKIM1; k=ed25519; s=other; p=" + p, false, false},
		{"v=DKIM1; k=rsa; p=" + p, false, false},
		{"v=DKIM1; k=ed25519; p=", false, false},
		{"k=ed25519; v=DKIM1; p=" + p, true, false},
		{"v=DKIM2; p=" + p, true, false},
		{"v=DKIM1; k=ed25519", true, false},
		{"v=DKIM1; p=%%%", true, false},
		{"v=DKIM1; p=a; p=b", true, false},
		{"v=DKIM1; bad", true, false},
	} {
		r, err := dkim.ParseRecord(c.txt)
		if (err != nil) != c.err {
			t.Errorf("ParseRecord(%q): %v, want error %v", c.txt, err, c.err)
			continue
		}
		if err == nil && (r.Matches(e.Public()) == nil) != c.match {
			t.Errorf("ParseRecord(%q).Matches = %v, want match %v", c.txt, r.Matches(e.Public()), c.match)
		}
	}
}

func TestNewSignerRefuses(t *testing.T) {
	r, _ := testKeys(t)
	for _, k := range []dkim.Key{
		{Domain: "", Selector: "a", Signer: r},
		{Domain: "example.org", Selector: "", Signer: r},
		{Domain: "example.org", Selector: "bad_sel", Signer: r},
		{Domain: "example.org", Selector: "a..b", Signer: r},
		{Domain: "example.org", Selector: "a", Signer: nil},
	} {
		if _, err := dkim.NewSigner([]dkim.Key{k}); err == nil {
			t.Errorf("NewSigner accepted %+v", k)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=DKIM1; k=rsa; p=MIIBIjANBg")
	f.Add("v=DKIM1; k=ed25519; h=sha256:sha1; s=*; t=y:s; p=")
	f.Add(";;= ; a=b=c")
	f.Fuzz(func(t *testing.T, txt string) {
		r, err := dkim.ParseRecord(txt)
		if err != nil {
			return
		}
		_, e := testKeys(t)
		r.Matches(e.Public())
		var buf bytes.Buffer
		buf.WriteString(r.KeyType)
	})
}

// TestBareLFSignsAsCRLF: a message with bare LF line ends (a local
// program's, header continuation lines too) is signed as the queue sends
// it, with CRLF, and a signature made in the middle of a CRLF split
// across reads still holds; SignHeader signs as Sign does.
func TestBareLFSignsAsCRLF(t *testing.T) {
	srv := fakedns.Start(t)
	keys := dualKeys(t)
	publish(t, srv, keys)
	s, err := dkim.NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	lf := "From: Alice <alice@example.org>\nSubject: folded\n\tover two lines\nTo: bob@example.net\n\n" +
		"body  with   spaces \nline two\n\n\n"
	sent := strings.ReplaceAll(lf, "\n", "\r\n")
	big := sent + strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz\r\n", 5000) // past one chunk
	for name, c := range map[string]struct{ signed, sent string }{
		"bare LF":       {lf, sent},
		"CRLF":          {sent, sent},
		"over a chunk":  {big, big},
		"one byte read": {sent, sent},
	} {
		t.Run(name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(c.signed)
			if name == "one byte read" {
				r = iotest.OneByteReader(r)
			}
			sig, err := s.Sign(r)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range verifyGo(t, srv.Addr, sig+c.sent) {
				if err != nil {
					t.Errorf("go-msgauth: signature %d: %v", i, err)
				}
			}
			if out, ok := dkimpy(t, srv.Addr, sig+c.sent); !ok || strings.Count(out, " pass") != 2 {
				t.Errorf("dkimpy did not verify both signatures:\n%s", out)
			}
		})
	}
	h, off, err := msghdr.Read(bufio.NewReader(strings.NewReader(lf)), 0)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignHeader(h, strings.NewReader(lf[off:]))
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range verifyGo(t, srv.Addr, sig+sent) {
		if err != nil {
			t.Errorf("SignHeader: go-msgauth: signature %d: %v", i, err)
		}
	}
}
