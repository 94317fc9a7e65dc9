package imap

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/internal/mailtest"
)

var fuzzSeeds = []string{
	"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[])\r\n",
	"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 SEARCH OR FROM x (BODY y NOT SEEN)\r\na4 UID STORE 1:* +FLAGS (\\Deleted)\r\na5 EXPUNGE\r\n",
	"a1 LOGIN alice secret\r\na2 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" * RETURN (STATUS (MESSAGES SIZE))\r\na3 CREATE a/b\r\na4 RENAME a c\r\n",
	"a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\na2 APPEND INBOX (\\Seen) {5+}\r\nhello\r\na3 SELECT INBOX\r\na4 MOVE 1 Trash\r\n",
	"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 IDLE\r\nDONE\r\na4 FETCH 1 (BODY[1.MIME] BINARY[2] BINARY.SIZE[1] BODY[HEADER.FIELDS (From)]<0.3>)\r\n",
	"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 SEARCH RETURN (SAVE MIN) ALL\r\na4 COPY $ Archive\r\na5 ENABLE IMAP4rev2\r\n",
	"a1 CAPABILITY\r\na2 STARTTLS\r\n\x00\xff\r\n",
}

// FuzzSession plays arbitrary bytes as a client against a server with a
// few messages (the nasty corpus among them): no command may panic the
// server, and every session is greeted.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	l := mailtest.NewPipeListener()
	ts := start(f, Options{IdleTimeout: 5 * time.Second, AuthFailureDelay: -1}, l)
	for i := range 3 {
		ts.deliver(f, "INBOX", msgN(i))
	}
	for _, m := range nastyCorpus(f) {
		if len(m) < 10000 {
			ts.deliver(f, "INBOX", string(m))
		}
	}
	f.Fuzz(func(t *testing.T, session []byte) {
		// "*" and DONE end AUTHENTICATE and IDLE; the end of the client's
		// half ends a literal left waiting for.
		reply := mailtest.PlaySession(t, l, session, []byte("\r\n*\r\nDONE\r\nz9 LOGOUT\r\n"))
		if !bytes.HasPrefix(reply, []byte("* OK")) {
			t.Fatalf("no greeting: %q", reply)
		}
		if panicked(ts.log.String()) {
			t.Fatalf("the server panicked:\n%s", ts.log.String())
		}
	})
}

// FuzzMessage runs the message reader (header split, lenient fields,
// every FETCH item) on arbitrary bytes: it must not panic, and the raw
// sections must stay inside the message.
func FuzzMessage(f *testing.F) {
	for _, m := range nastyCorpus(f) {
		if len(m) < 10000 {
			f.Add(m)
		}
	}
	f.Add([]byte(multipartMsg))
	f.Add([]byte("Date: Tue, 3 Feb 2026 07:08:09 +0000\r\nDate: x\r\nFrom: a@b.example\r\n\r\nx"))
	opts := &goimap.FetchOptions{
		Envelope:      true,
		BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
		BodySection: []*goimap.FetchItemBodySection{
			{}, {Specifier: goimap.PartSpecifierHeader}, {Specifier: goimap.PartSpecifierText},
			{Part: []int{1}}, {Part: []int{2, 1}, Specifier: goimap.PartSpecifierMIME},
			{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
			{Partial: &goimap.SectionPartial{Offset: 3, Size: 7}},
		},
		BinarySection: []*goimap.FetchItemBinarySection{{}, {Part: []int{1}}},
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		hang := time.AfterFunc(5*time.Second, func() { panic("FuzzMessage: stuck on one message") })
		defer hang.Stop()
		c, err := newContent(bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(msg, c.raw) {
			t.Fatalf("header %q is not a prefix of the message", c.raw)
		}
		for _, fl := range c.fields {
			if !validKey(fl.key) || !bytes.HasPrefix(fl.raw, []byte(fl.key)) || !bytes.HasSuffix(fl.raw, []byte("\n")) {
				t.Fatalf("bad field %q", fl.raw)
			}
		}
		var it fetchItems
		if err := c.items(opts, known{}, &it); err != nil {
			t.Fatal(err)
		}
		for _, sp := range it.spans {
			if sp.off < 0 || sp.n < 0 || sp.off+sp.n > int64(len(msg)) {
				t.Fatalf("span %+v outside a %d-byte message", sp, len(msg))
			}
		}
		if it.spans[0] != (span{0, int64(len(msg))}) {
			t.Fatalf("BODY[] span %+v", it.spans[0])
		}
		env := envelopeOf(c.fields)
		if it.bs == nil || env == nil {
			t.Fatalf("no body structure or envelope")
		}
		// The header cache's entry gives the same ENVELOPE.
		if got := envelopeOf(fieldsOf(cachedBlock(c.fields))); !reflect.DeepEqual(got, env) {
			t.Fatalf("ENVELOPE from the cached fields %+v, from the message %+v", got, env)
		}
		// The header block splits the same way from a small buffer.
		raw, err := splitHeader(bufio.NewReaderSize(bytes.NewReader(msg), 16))
		if err != nil || !bytes.Equal(raw, c.raw) {
			t.Fatalf("split with a small buffer: %q, %v; want %q", raw, err, c.raw)
		}
	})
}
