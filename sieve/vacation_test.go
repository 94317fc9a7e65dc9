package sieve

import (
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// TestCheckReply covers RFC 3834's and Pigeonhole's reasons not to reply.
func TestCheckReply(t *testing.T) {
	base := "From: Alice <alice@example.org>\nTo: Me <me@example.com>\nSubject: hi\nMessage-ID: <1@example.org>\n"
	opts := ReplyOptions{Sender: "alice@example.org", Recipient: "me@example.com", Own: []string{"me.alias@example.com"}}
	cases := []struct {
		name   string
		header string // replaces To: when it has one, else added
		opts   func(*ReplyOptions)
		vac    Vacation
		from   string
		skip   string
	}{
		{"replied", "", nil, Vacation{}, "me@example.com", ""},
		{"null sender", "", func(o *ReplyOptions) { o.Sender = "" }, Vacation{}, "", "<>"},
		{"to self", "", func(o *ReplyOptions) { o.Sender = "ME@example.com" }, Vacation{}, "", "own addresses"},
		{"to an alias of self", "", func(o *ReplyOptions) { o.Sender = "me.alias@example.com" }, Vacation{}, "", "own addresses"},
		{"to :addresses", "", func(o *ReplyOptions) { o.Sender = "x@example.com" }, Vacation{Addresses: []string{"x@example.com"}}, "", "own addresses"},
		{"list-id", "List-Id: <l.example.org>", nil, Vacation{}, "", "mailing list"},
		{"list-unsubscribe", "List-Unsubscribe: <mailto:x@example.org>", nil, Vacation{}, "", "mailing list"},
		{"auto-submitted", "Auto-Submitted: auto-generated", nil, Vacation{}, "", "Auto-Submitted"},
		{"auto-submitted no", "Auto-Submitted: no", nil, Vacation{}, "me@example.com", ""},
		{"auto-submitted no with comment", "Auto-Submitted: no (a person)", nil, Vacation{}, "me@example.com", ""},
		{"precedence bulk", "Precedence: bulk", nil, Vacation{}, "", "Precedence"},
		{"precedence junk", "Precedence: JUNK", nil, Vacation{}, "", "Precedence"},
		{"precedence other", "Precedence: first-class", nil, Vacation{}, "me@example.com", ""},
		{"x-auto-response-suppress", "X-Auto-Response-Suppress: DR, OOF", nil, Vacation{}, "", "X-Auto-Response-Suppress"},
		{"mailer-daemon", "", func(o *ReplyOptions) { o.Sender = "MAILER-DAEMON@example.org" }, Vacation{}, "", "system address"},
		{"owner-", "", func(o *ReplyOptions) { o.Sender = "owner-list@example.org" }, Vacation{}, "", "system address"},
		{"-request", "", func(o *ReplyOptions) { o.Sender = "list-request@example.org" }, Vacation{}, "", "system address"},
		{"not addressed to me", "To: someone@example.net", nil, Vacation{}, "", "none of the user's addresses"},
		{"bcc by list expansion", "To: staff@example.com", nil, Vacation{}, "", "none of the user's addresses"},
		{"in cc", "To: someone@example.net\nCc: \"Me\" <ME@EXAMPLE.COM>", nil, Vacation{}, "me@example.com", ""},
		{"an own alias in to", "To: me.alias@example.com", nil, Vacation{}, "me.alias@example.com", ""},
		{"an :addresses in to", "To: team@example.com", nil, Vacation{Addresses: []string{"team@example.com"}}, "team@example.com", ""},
		{"an :addresses with a name", "To: Team <TEAM@example.com>", nil, Vacation{Addresses: []string{"The team <team@example.com>"}}, "team@example.com", ""},
		{"sender in :addresses with spaces", "", func(o *ReplyOptions) { o.Sender = "x@example.com" }, Vacation{Addresses: []string{" x@example.com "}}, "", "own addresses"},
		{"sender is the :from", "", func(o *ReplyOptions) { o.Sender = "away@example.com" }, Vacation{From: "Me <away@example.com>"}, "", "own addresses"},
		{":from is not a recipient address", "To: away@example.com", nil, Vacation{From: "away@example.com"}, "", "none of the user's addresses"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := base
			if strings.HasPrefix(c.header, "To:") {
				msg = strings.Replace(msg, "To: Me <me@example.com>", c.header, 1)
			} else if c.header != "" {
				msg += c.header + "\n"
			}
			o := opts
			if c.opts != nil {
				c.opts(&o)
			}
			from, skip := c.vac.CheckReply(readTestMessage(t, msg+"\nbody\n"), o)
			if from != c.from || !strings.Contains(skip, c.skip) || (c.skip == "") != (skip == "") {
				t.Errorf("CheckReply = %q, %q; want %q, %q", from, skip, c.from, c.skip)
			}
		})
	}
}

// TestBuildReply checks the reply's header (RFC 3834 §3, RFC 5230 §4).
func TestBuildReply(t *testing.T) {
	msg := readTestMessage(t, "From: Alice <alice@example.org>\nTo: me@example.com\nSubject: Grüße\n"+
		"Message-ID: <orig@example.org>\nReferences: <a@x> <b@x>\n\nhi\n")
	o := ReplyOptions{Sender: "alice@example.org", Recipient: "me@example.com", Hostname: "mx.example.com", Now: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)}
	for _, c := range []struct {
		name    string
		v       Vacation
		subject string
		from    string
	}{
		{"defaults", Vacation{Reason: "I am away.\nBack on Monday."}, "Auto: Grüße", "me@example.com"},
		{"subject and from", Vacation{Reason: "away", Subject: "Out of office", From: "Me Myself <me@example.com>"}, "Out of office", "Me Myself <me@example.com>"},
		{"invalid from", Vacation{Reason: "away", From: "not an address"}, "Auto: Grüße", "me@example.com"},
		{"subject injection", Vacation{Reason: "away", Subject: "x\r\nBcc: victim@example.net"}, "x  Bcc: victim@example.net", "me@example.com"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := c.v.BuildReply(msg, o, "me@example.com")
			if strings.Contains(strings.ReplaceAll(string(raw), "\r\n", ""), "\n") {
				t.Fatal("a bare LF in the reply")
			}
			m, err := mail.ReadMessage(strings.NewReader(string(raw)))
			if err != nil {
				t.Fatal(err)
			}
			dec := new(mimeDecoder)
			check := func(name, want string) {
				t.Helper()
				if got := dec.decode(m.Header.Get(name)); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			check("Subject", c.subject)
			check("From", c.from)
			check("To", "<alice@example.org>")
			check("In-Reply-To", "<orig@example.org>")
			check("References", "<a@x> <b@x> <orig@example.org>")
			check("Auto-Submitted", "auto-replied (vacation)")
			check("Content-Type", "text/plain; charset=utf-8")
			if len(m.Header["Bcc"]) > 0 {
				t.Error("the subject broke the header")
			}
			if !strings.HasSuffix(m.Header.Get("Message-Id"), "@mx.example.com>") {
				t.Errorf("Message-ID %q", m.Header.Get("Message-Id"))
			}
		})
	}
	mimeReply := Vacation{MIME: true, Reason: "Content-Type: text/html\n\n<p>away</p>\n"}.BuildReply(msg, o, "me@example.com")
	m, err := mail.ReadMessage(strings.NewReader(string(mimeReply)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Content-Type") != "text/html" {
		t.Errorf(":mime reply Content-Type %q", m.Header.Get("Content-Type"))
	}
}

func TestMemoryKey(t *testing.T) {
	a := Vacation{Handle: "h"}.MemoryKey("Alice@Example.org")
	if a != (Vacation{Handle: "h"}).MemoryKey("alice@example.org") {
		t.Error("the key depends on the sender's case")
	}
	if a == (Vacation{Handle: "other"}).MemoryKey("alice@example.org") {
		t.Error("the key ignores the handle")
	}
}

type mimeDecoder struct{}

func (mimeDecoder) decode(s string) string {
	d, err := new(mimeWordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

type mimeWordDecoder = mime.WordDecoder

// TestReplyLines checks that a reply is valid RFC 5322 whatever the
// message and the script put in it: no line over 998 octets, header
// text encoded (RFC 2047) or folded, a reason with long lines sent
// quoted-printable, and a :mime reason unable to add header fields
// other than MIME's.
func TestReplyLines(t *testing.T) {
	long := strings.Repeat("x", 3000)
	var refs []string
	for i := range 100 {
		refs = append(refs, fmt.Sprintf("<ref%d@example.org>", i))
	}
	o := ReplyOptions{Sender: "alice@example.org", Recipient: "me@example.com", Hostname: "mx.example.com", Now: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)}
	cases := []struct {
		name     string
		header   string
		v        Vacation
		check    map[string]string // decoded header values; "" = absent
		body     string            // the decoded body
		bodyType string
	}{
		{"long ASCII subject", "Subject: " + long + "\nMessage-ID: <m@example.org>\n", Vacation{Reason: "away"},
			map[string]string{"Subject": ("Auto: " + long)[:maxSubject], "In-Reply-To": "<m@example.org>"}, "away\r\n", "text/plain; charset=utf-8"},
		{"long non-ASCII subject", "Subject: " + strings.Repeat("Grüße ", 40) + "\n", Vacation{Reason: "away"},
			map[string]string{"Subject": "Auto: " + strings.TrimSpace(strings.Repeat("Grüße ", 40))}, "away\r\n", ""},
		{"many references", "Message-ID: <m@example.org>\nReferences: " + strings.Join(refs, "\n ") + "\n", Vacation{Reason: "away"},
			map[string]string{"References": strings.Join(append(append([]string{refs[0]}, refs[len(refs)-maxReferences+2:]...), "<m@example.org>"), " ")}, "away\r\n", ""},
		{"absurd message id", "Message-ID: <" + long + "@example.org>\n", Vacation{Reason: "away"},
			map[string]string{"In-Reply-To": "", "References": ""}, "away\r\n", ""},
		{"long reason line", "", Vacation{Reason: "Away until " + long + "\nBye."},
			map[string]string{"Content-Transfer-Encoding": "quoted-printable"}, "Away until " + long + "\r\nBye.\r\n", "text/plain; charset=utf-8"},
		{":mime with other fields", "", Vacation{MIME: true, Reason: "From: evil@example.net\nAuto-Submitted: no\nContent-Type: text/html;\n  charset=utf-8\n\n<p>" + long + "</p>\n"},
			map[string]string{"From": "me@example.com", "Auto-Submitted": "auto-replied (vacation)", "Content-Transfer-Encoding": "quoted-printable"},
			"<p>" + long + "</p>\r\n", "text/html; charset=utf-8"},
		{"long display name", "", Vacation{Reason: "away", From: `"` + long + `" <me@example.com>`},
			map[string]string{"From": "me@example.com"}, "away\r\n", ""},
	}
	// A display name with a comma, with and without letters beyond
	// ASCII, stays one address.
	for _, name := range []string{"Jürgen, Müller", "Doe, John"} {
		v := Vacation{Reason: "away", From: `"` + name + `" <me@example.com>`}
		raw := v.BuildReply(readTestMessage(t, "From: alice@example.org\n\nhi\n"), o, "me@example.com")
		m, err := mail.ReadMessage(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := (&mail.AddressParser{WordDecoder: new(mime.WordDecoder)}).Parse(m.Header.Get("From"))
		if err != nil || a.Name != name || a.Address != "me@example.com" {
			t.Errorf("From %q: %v, %+v; want %q <me@example.com>", m.Header.Get("From"), err, a, name)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := readTestMessage(t, "From: alice@example.org\nTo: me@example.com\n"+c.header+"\nhi\n")
			raw := string(c.v.BuildReply(msg, o, "me@example.com"))
			for i, l := range strings.Split(raw, "\r\n") {
				if len(l) > 998 || strings.Contains(l, "\n") {
					t.Fatalf("line %d is %d octets or has a bare LF: %.100q", i+1, len(l), l)
				}
			}
			m, err := mail.ReadMessage(strings.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Header["From"]) != 1 || len(m.Header["Auto-Submitted"]) != 1 {
				t.Errorf("From %q, Auto-Submitted %q: want one each", m.Header["From"], m.Header["Auto-Submitted"])
			}
			dec := new(mimeDecoder)
			for name, want := range c.check {
				if got := dec.decode(m.Header.Get(name)); got != want {
					t.Errorf("%s: %.200q, want %.200q", name, got, want)
				}
			}
			if c.bodyType != "" && m.Header.Get("Content-Type") != c.bodyType {
				t.Errorf("Content-Type %q, want %q", m.Header.Get("Content-Type"), c.bodyType)
			}
			var body io.Reader = m.Body
			if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
				body = quotedprintable.NewReader(body)
			}
			got, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.body {
				t.Errorf("body %.100q, want %.100q", got, c.body)
			}
		})
	}
}

// FuzzBuildReply: whatever the message and the script's arguments, the
// reply parses, has no line over 998 octets nor a bare LF, and has one
// From and one Auto-Submitted.
func FuzzBuildReply(f *testing.F) {
	f.Add("Subject: hi\nMessage-ID: <a@b>\nReferences: <c@d>\n", "away", "", "", false)
	f.Add("Subject: "+strings.Repeat("ü", 600)+"\n", strings.Repeat("x", 2000), "Out\r\nBcc: x@y", "Me <me@example.com>", false)
	f.Add("", "From: evil@x\nContent-Type: text/plain\n\n"+strings.Repeat("y", 1200), "", "", true)
	f.Add("", "Content-Type: multipart/mixed; boundary=x\n\n--x\n\nhi\n--x--\n", "", "", true)
	f.Fuzz(func(t *testing.T, header, reason, subject, from string, isMIME bool) {
		m, err := ReadMessage(func() io.Reader { return strings.NewReader(header + "\nbody\n") }, int64(len(header)+6))
		if err != nil {
			t.Skip()
		}
		v := Vacation{Reason: reason, Subject: subject, From: from, MIME: isMIME}
		o := ReplyOptions{Sender: "alice@example.org", Recipient: "me@example.com", Hostname: "mx.example.com", Now: time.Unix(0, 0).UTC()}
		raw := string(v.BuildReply(m, o, "me@example.com"))
		for _, l := range strings.Split(raw, "\r\n") {
			if len(l) > 998 || strings.ContainsAny(l, "\n") {
				t.Fatalf("line of %d octets or with a bare LF: %.100q", len(l), l)
			}
		}
		msg, err := mail.ReadMessage(strings.NewReader(raw))
		if err != nil {
			t.Fatalf("the reply does not parse: %v\n%.500q", err, raw)
		}
		if len(msg.Header["From"]) != 1 || len(msg.Header["Auto-Submitted"]) != 1 {
			t.Fatalf("From %q, Auto-Submitted %q", msg.Header["From"], msg.Header["Auto-Submitted"])
		}
	})
}
