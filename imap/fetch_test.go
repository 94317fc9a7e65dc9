package imap

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

const multipartMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
	"Message-ID: <m1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n" +
	"\r\n" +
	"--XX\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"hello world\r\n" +
	"--XX\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"aGVsbG8gYmluYXJ5\r\n" +
	"--XX--\r\n"

func TestFetchItems(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", multipartMsg)
	c := ts.login(t, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	header, body, _ := strings.Cut(multipartMsg, "\r\n\r\n")
	header += "\r\n\r\n"
	sec := func(spec goimap.PartSpecifier, part ...int) *goimap.FetchItemBodySection {
		return &goimap.FetchItemBodySection{Specifier: spec, Part: part, Peek: true}
	}
	for _, tc := range []struct {
		name string
		item *goimap.FetchItemBodySection
		want string
	}{
		{"BODY[]", sec(goimap.PartSpecifierNone), multipartMsg},
		{"BODY[HEADER]", sec(goimap.PartSpecifierHeader), header},
		{"BODY[TEXT]", sec(goimap.PartSpecifierText), body},
		{"BODY[1]", sec(goimap.PartSpecifierNone, 1), "hello world"},
		{"BODY[1.MIME]", sec(goimap.PartSpecifierMIME, 1), "Content-Type: text/plain; charset=utf-8\r\n\r\n"},
		{"BODY[2]", sec(goimap.PartSpecifierNone, 2), "aGVsbG8gYmluYXJ5"},
		{"BODY[3] (missing)", sec(goimap.PartSpecifierNone, 3), ""},
		{"BODY[HEADER.FIELDS (SUBJECT to)]", &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"SUBJECT", "to"}, Peek: true},
			"To: bob@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"},
		{"BODY[HEADER.FIELDS.NOT (Subject From Date Message-ID MIME-Version Content-Type)]",
			&goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "From", "Date", "Message-ID", "MIME-Version", "Content-Type"}, Peek: true},
			"To: bob@example.org\r\n\r\n"},
		{"BODY[]<0.4>", &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 0, Size: 4}}, "From"},
		{"BODY[]<6.99999>", &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 6, Size: 99999}}, multipartMsg[6:]},
		{"BODY[]<100000.5>", &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 100000, Size: 5}}, ""},
		{"BODY[TEXT]<2.3>", &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierText, Peek: true, Partial: &goimap.SectionPartial{Offset: 2, Size: 3}}, body[2:5]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{tc.item}}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("fetch: %v, %d messages", err, len(msgs))
			}
			if got := string(msgs[0].FindBodySection(tc.item)); got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}

	bin := &goimap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure:     &goimap.FetchItemBodyStructure{Extended: true},
		BinarySection:     []*goimap.FetchItemBinarySection{bin},
		BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: []int{2}}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v", err)
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(multipartMsg)) || m.InternalDate.IsZero() || !slices.Equal(m.Flags, []goimap.Flag{`\Recent`}) {
		t.Errorf("UID %d size %d date %v flags %v", m.UID, m.RFC822Size, m.InternalDate, m.Flags)
	}
	if e := m.Envelope; e == nil || e.Subject != "café" || len(e.From) != 1 || e.From[0].Addr() != "alice@example.org" || e.MessageID != "m1@example.org" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	mp, ok := m.BodyStructure.(*goimap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Errorf("bodystructure %#v", m.BodyStructure)
	}
	if got := string(m.FindBinarySection(bin)); got != "hello binary" {
		t.Errorf("BINARY[2] %q", got)
	}
	if n, _ := m.FindBinarySectionSize([]int{2}); n != 12 {
		t.Errorf("BINARY.SIZE[2] %d", n)
	}

	// Without .PEEK, \Seen is set and reported in the same response.
	full := &goimap.FetchItemBodySection{}
	msgs, err = c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	if !slices.Contains(msgs[0].Flags, goimap.FlagSeen) {
		t.Errorf("BODY[] did not report \\Seen: %v", msgs[0].Flags)
	}
}

// Raw checks of response forms the client library smooths over.
func TestFetchRaw(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", multipartMsg)
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("EXAMINE INBOX")
	for _, tc := range []struct{ cmd, want string }{
		// EXAMINE shows, without claiming them, the messages no session
		// has seen as \Recent (RFC 3501 §2.3.2).
		{"FETCH 1 (FLAGS)", "* 1 FETCH (FLAGS (\\Recent))"},
		{"UID FETCH 1 (FLAGS)", "* 1 FETCH (UID 1 FLAGS (\\Recent))"},
		{"FETCH 1 RFC822.SIZE", fmt.Sprintf("RFC822.SIZE %d", len(multipartMsg))},
		{"FETCH 1 BODY", `BODY (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 11 0)`},
		{"FETCH 1 BODYSTRUCTURE", `"mixed" ("boundary" "XX") NIL NIL NIL)`},
		{"FETCH 1 FAST", "INTERNALDATE"},
		{"FETCH 1 ENVELOPE", `"=?utf-8?q?caf=C3=A9?="`},
		{"FETCH 1 RFC822.HEADER", "RFC822.HEADER {"},
		{"FETCH 1 BODY.PEEK[]<0.4>", "BODY[]<0> {4}"},
		{"FETCH 1 BINARY.SIZE[1]", "BINARY.SIZE[1] 11"},
	} {
		u := r.ok("%s", tc.cmd)
		if !strings.Contains(strings.Join(u, "\n"), tc.want) {
			t.Errorf("%s: %q, want %q", tc.cmd, u, tc.want)
		}
	}
	// A set that names a message many times answers once for it.
	if u := r.ok("UID FETCH %s1 UID", strings.Repeat("1:*,*:1,", 2000)); len(u) != 1 {
		t.Errorf("repeated ranges: %d responses", len(u))
	}
	// EXAMINE is read-only: BODY[] does not set \Seen.
	r.ok("FETCH 1 BODY[]")
	if u := r.ok("FETCH 1 FLAGS"); !strings.Contains(u[0], "FLAGS (\\Recent)") {
		t.Errorf("EXAMINE + BODY[] changed flags: %q", u)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"FETCH 2 FLAGS", "BAD"},
		{"FETCH 0 FLAGS", "BAD Invalid sequence set: 0 is not a message number"},
		{"FETCH 1:4294967296 FLAGS", "BAD Invalid sequence set: number too large"},
		{"FETCH x FLAGS", "BAD Invalid sequence set"},
		{"FETCH 1 (NOSUCHITEM)", "BAD"},
		{"FETCH 1 BODY[99.HEADER]", "OK"},
		{"UID FETCH 5:7 FLAGS", "OK"},
		{"FETCH " + strings.Repeat("1:*,", 5000) + "1 FLAGS", "OK"},
	} {
		if _, st := r.cmd("%s", tc.cmd); !strings.HasPrefix(st, tc.want) {
			t.Errorf("%s: %q, want %s", tc.cmd, st, tc.want)
		}
	}
}

// nastyFetch is every FETCH item the corpus must survive.
const nastyFetch = "(FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[] BODY.PEEK[HEADER] " +
	"BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[1.1] BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] " +
	"BODY.PEEK[2.1.2] BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[HEADER.FIELDS.NOT (Subject)] " +
	"BODY.PEEK[]<3.10> BINARY.PEEK[] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2])"

func nastyCorpus(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/nasty/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// Every message of the nasty corpus FETCHes every item, through the
// client library (which parses every response), and the session goes on.
func TestFetchNastyCorpus(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	corpus := nastyCorpus(t)
	var names []string
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ts.deliver(t, "INBOX", string(corpus[name]))
	}
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	for i, name := range names {
		_, st := r.cmd("FETCH %d %s", i+1, nastyFetch)
		if !strings.HasPrefix(st, "OK") {
			t.Errorf("%s: %s", name, st)
		}
	}
	r.ok("NOOP")

	c := ts.login(t, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		full := &goimap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(goimap.SeqSetNum(uint32(i+1)), &goimap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
			BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
			BodySection: []*goimap.FetchItemBodySection{full,
				{Specifier: goimap.PartSpecifierHeader, Peek: true},
				{Specifier: goimap.PartSpecifierText, Peek: true},
				{Part: []int{1}, Peek: true},
				{Part: []int{2, 1}, Specifier: goimap.PartSpecifierMIME, Peek: true},
			},
			BinarySection:     []*goimap.FetchItemBinarySection{{Part: []int{1}, Peek: true}},
			BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: []int{1}}},
		}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := crlfBytes(corpus[name])
		if got := msgs[0].FindBodySection(full); !bytes.Equal(got, want) {
			t.Errorf("%s: BODY[] is %d bytes, want the %d stored", name, len(got), len(want))
		}
		if msgs[0].BodyStructure == nil {
			t.Errorf("%s: no BODYSTRUCTURE", name)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("session broken after the corpus: %v", err)
	}
}

func crlfBytes(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}
