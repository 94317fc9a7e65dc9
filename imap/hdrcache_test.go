package imap

import (
	"bufio"
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	gotextproto "github.com/emersion/go-message/textproto"

	"mailroom/internal/memfolders"
	"mailroom/mailbox"
)

// envelopeCorpus is the nasty corpus and a few ordinary messages, among
// them one without any cached field and one with folded and repeated
// fields.
func envelopeCorpus(t *testing.T) [][]byte {
	corpus := nastyCorpus(t)
	var names []string
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	var out [][]byte
	for _, n := range names {
		out = append(out, corpus[n])
	}
	return append(out,
		[]byte(multipartMsg),
		[]byte("X-Only: nothing cached\r\n\r\nbody\r\n"),
		[]byte("Subject: first\r\n part\r\nReceived: x\r\nsubject: second\r\nFrom: \"B, A\" <a@b.example>,\r\n\tc@d.example\r\n"+
			"To: undisclosed-recipients:;\r\nCc: =?iso-8859-1?q?J=F6rg?= <j@e.example>\r\nIn-Reply-To: <x@y> <z@w>\r\n"+
			"Message-Id: <id@example>\r\nDate: 2 Jan 2006 15:04 +0100\r\nReply-To: r@example\r\nSender: s@example\r\nBcc: b@example\r\n\r\nhi\r\n"),
		[]byte("Subject: no body and no line end"),
		[]byte("Date: Tue, 3 Feb 2026 07:08:09 +0000\r\n\r\n"),
		[]byte("Date: Tue, 03 Feb 2026 07:08:09 -0000 (UTC)\r\n\r\n"),
		[]byte("Date: 31 Feb 2026 07:08:09 +0100\r\n\r\n"),
		[]byte("Date: Xyz, 3 Feb 2026 07:08:09 +0100\r\n\r\n"),
		[]byte("Date: Tue, 3 Feb 26 07:08 EST\r\nDate: Wed, 4 Feb 2026 07:08:09 +0100\r\n\r\n"),
		[]byte("Date:   Tue,  3 Feb 2026 07:08:09 +0530  \r\n\r\n"),
		[]byte("Date: Tue, 3 Feb 2026 24:08:09 +0100\r\n\r\n"),
		[]byte(""),
	)
}

// The ENVELOPE built from the cached fields alone is the one built from
// the whole header, as before the cache.
func TestEnvelopeOfMatchesWholeHeader(t *testing.T) {
	t.Parallel()
	for i, msg := range envelopeCorpus(t) {
		c, err := newContent(bytes.NewReader(crlfBytes(msg)), int64(len(crlfBytes(msg))))
		if err != nil {
			t.Fatal(err)
		}
		h, _ := gotextproto.ReadHeader(bufio.NewReader(bytes.NewReader(c.clean())))
		want := envelopeOf(c.fields)
		if got, want := headerList(headerOf(c.fields, nil)), headerList(h); !reflect.DeepEqual(got, want) {
			t.Errorf("message %d: headerOf gives %q, ReadHeader %q", i, got, want)
		}
		if got := envelopeOf(fieldsOf(cachedBlock(c.fields))); !reflect.DeepEqual(got, want) {
			t.Errorf("message %d: from the cached block %+v, whole header gives %+v", i, got, want)
		}
	}
}

// FETCH ENVELOPE answers byte for byte the same from a store without a
// header cache, from one filling its cache, and from the filled cache.
func TestFetchEnvelopeCached(t *testing.T) {
	t.Parallel()
	msgs := envelopeCorpus(t)
	plain := start(t, Options{})
	cstore := memfolders.NewWithHeaderCache()
	cached := start(t, Options{Store: cstore})
	for _, m := range msgs {
		plain.deliver(t, "INBOX", string(m))
		cached.deliver(t, "INBOX", string(m))
	}
	fetch := func(ts *testServer, cmd string) string {
		r := dialRaw(t, ts.addr)
		r.login()
		r.ok("SELECT INBOX")
		return strings.Join(r.ok("%s", cmd), "\n")
	}
	want := fetch(plain, "FETCH 1:* (ENVELOPE)")
	if n := strings.Count(want, "ENVELOPE ("); n != len(msgs) {
		t.Fatalf("%d ENVELOPEs for %d messages:\n%s", n, len(msgs), want)
	}
	first := fetch(cached, "FETCH 1:* (ENVELOPE)")
	st := cstore.CacheStats()
	if st.Stored != len(msgs) || st.Hits != 0 {
		t.Errorf("after the first FETCH: %+v, want %d stored, no hits", st, len(msgs))
	}
	second := fetch(cached, "FETCH 1:* (ENVELOPE)")
	if st := cstore.CacheStats(); st.Hits != len(msgs) || st.Stored != len(msgs) {
		t.Errorf("after the second FETCH: %+v, want %d hits, nothing more stored", st, len(msgs))
	}
	if first != want {
		t.Errorf("filling the cache:\n%s\nwithout a cache:\n%s", first, want)
	}
	if second != want {
		t.Errorf("from the cache:\n%s\nwithout a cache:\n%s", second, want)
	}
	// With other items, reading the message anyway: the same ENVELOPEs.
	mixed := fetch(cached, "FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
	wantMixed := fetch(plain, "FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
	if mixed != wantMixed {
		t.Errorf("ENVELOPE BODYSTRUCTURE from the cache:\n%s\nwithout:\n%s", mixed, wantMixed)
	}
}

// A large FETCH asks the cache cacheChunk messages at a time, and a
// sequence set in pieces gets every ENVELOPE once.
func TestFetchEnvelopeCacheChunks(t *testing.T) {
	t.Parallel()
	cstore := memfolders.NewWithHeaderCache()
	ts := start(t, Options{Store: cstore})
	const n = 2*cacheChunk + 5
	for i := range n {
		if _, err := cstore.DeliverQuietly("alice", "INBOX", []byte("Subject: m"+strings.Repeat("x", i%7)+"\r\n\r\nb\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	if got := len(r.ok("FETCH 1:* (ENVELOPE)")); got != n {
		t.Fatalf("%d responses, want %d", got, n)
	}
	if st := cstore.CacheStats(); st.Calls != 3 || st.Misses != n || st.Stored != n {
		t.Errorf("first FETCH: %+v, want 3 calls, %d misses and stores", st, n)
	}
	if got := len(r.ok("FETCH 1:10,2000:*,5 (ENVELOPE)")); got != 10+n-1999 {
		t.Fatalf("%d responses, want %d", got, 10+n-1999)
	}
	if st := cstore.CacheStats(); st.Hits != 10+n-1999 || st.Stored != n {
		t.Errorf("second FETCH: %+v, want %d hits, nothing stored", st, 10+n-1999)
	}
}

// headerList is a header's fields as "Key: value", in order.
func headerList(h gotextproto.Header) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		out = append(out, f.Key()+": "+f.Value())
	}
	return out
}

// FETCH BODYSTRUCTURE and BODY answer byte for byte the same from a store
// without a header cache, from one filling its cache, and from the filled
// cache (bscache.go); the ENVELOPEs of entries that carry a structure are
// the same too, and a session with UTF8=ACCEPT gets its own encoding.
func TestFetchBodyStructureCached(t *testing.T) {
	t.Parallel()
	msgs := envelopeCorpus(t)
	plain := start(t, Options{})
	cstore := memfolders.NewWithHeaderCache()
	cached := start(t, Options{Store: cstore})
	for _, m := range msgs {
		plain.deliver(t, "INBOX", string(m))
		cached.deliver(t, "INBOX", string(m))
	}
	fetch := func(ts *testServer, utf8 bool, cmd string) string {
		r := dialRaw(t, ts.addr)
		r.login()
		if utf8 {
			r.ok("ENABLE UTF8=ACCEPT")
		}
		r.ok("SELECT INBOX")
		return strings.Join(r.ok("%s", cmd), "\n")
	}
	const bs = "FETCH 1:* (BODYSTRUCTURE)"
	want := fetch(plain, false, bs)
	if n := strings.Count(want, "BODYSTRUCTURE ("); n != len(msgs) {
		t.Fatalf("%d BODYSTRUCTUREs for %d messages:\n%s", n, len(msgs), want)
	}
	if got := fetch(cached, false, bs); got != want {
		t.Errorf("filling the cache:\n%s\nwithout a cache:\n%s", got, want)
	}
	if st := cstore.CacheStats(); st.Stored != len(msgs) || st.Hits != 0 {
		t.Errorf("after the first FETCH: %+v, want %d stored, no hits", st, len(msgs))
	}
	if got := fetch(cached, false, bs); got != want {
		t.Errorf("from the cache:\n%s\nwithout a cache:\n%s", got, want)
	}
	if st := cstore.CacheStats(); st.Hits != len(msgs) || st.Stored != len(msgs) {
		t.Errorf("after the second FETCH: %+v, want %d hits, nothing more stored", st, len(msgs))
	}
	for _, cmd := range []string{"FETCH 1:* (BODY)", "FETCH 1:* (ENVELOPE)", "FETCH 1:* (BODY ENVELOPE BODYSTRUCTURE UID)", "FETCH 1:* (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)])"} {
		if got, want := fetch(cached, false, cmd), fetch(plain, false, cmd); got != want {
			t.Errorf("%s from the cache:\n%s\nwithout:\n%s", cmd, got, want)
		}
	}
	if st := cstore.CacheStats(); st.Stored != len(msgs) {
		t.Errorf("%d entries stored after the cache was full, want %d", st.Stored, len(msgs))
	}
	if got, want := fetch(cached, true, bs), fetch(plain, true, bs); got != want {
		t.Errorf("UTF8=ACCEPT from the cache:\n%s\nwithout:\n%s", got, want)
	}
	if st := cstore.CacheStats(); st.Stored != len(msgs) {
		t.Errorf("a UTF8=ACCEPT session stored %d entries again", st.Stored-len(msgs))
	}
}

// An entry's ENVELOPE and structure records are found only where they
// were written, and only in this version; a damaged one is ignored.
func TestSplitEntry(t *testing.T) {
	t.Parallel()
	cs := &cachedStructure{ext: []byte(`("text" "plain" NIL NIL NIL "7bit" 3 1 NIL NIL NIL NIL)`), basic: []byte(`("text" "plain" NIL NIL NIL "7bit" 3 1)`)}
	env := []byte("(NIL {3}\r\na\r\n NIL NIL NIL NIL NIL NIL NIL NIL)")
	block := []byte("Subject: a\r\n b\r\nFrom: x@y\r\n")
	with := func(tail string) []byte { return append(append([]byte{}, block...), tail...) }
	for _, tc := range []struct {
		name       string
		entry      []byte
		block, env string
		ext, body  string
	}{
		{"fields only", block, string(block), "", "", ""},
		{"fields and structure", entryWith(block, nil, cs), string(block), "", string(cs.ext), string(cs.basic)},
		{"no fields, structure", entryWith(nil, nil, cs), "", "", string(cs.ext), string(cs.basic)},
		{"fields and envelope", entryWith(block, env, nil), string(block), string(env), "", ""},
		{"all", entryWith(block, env, cs), string(block), string(env), string(cs.ext), string(cs.basic)},
		{"no fields, envelope", entryWith(nil, env, cs), "", string(env), string(cs.ext), string(cs.basic)},
		{"empty", []byte{}, "", "", "", ""},
		{"another version", with("\r\nBODYSTRUCTURE0 3 abcdef"), string(block), "", "", ""},
		{"bad length", with("\r\nBODYSTRUCTURE1 99 abc"), string(block), "", "", ""},
		{"no length", with("\r\nBODYSTRUCTURE1 abc"), string(block), "", "", ""},
		{"envelope of another version", with("\r\nENVELOPE0 3 abcBODYSTRUCTURE1 1 ab"), string(block), "", "", ""},
		{"envelope too long", with("\r\nENVELOPE1 99 abc"), string(block), "", "", ""},
		{"envelope length not a number", with("\r\nENVELOPE1 -3 abc"), string(block), "", "", ""},
		{"envelope, bad structure", with("\r\nENVELOPE1 3 abcBODYSTRUCTURE1 2 ab"), string(block), "abc", "", ""},
	} {
		b, e, got := splitEntry(tc.entry)
		if string(b) != tc.block {
			t.Errorf("%s: block %q, want %q", tc.name, b, tc.block)
		}
		if string(e) != tc.env || (e == nil) != (tc.env == "") {
			t.Errorf("%s: envelope %q, want %q", tc.name, e, tc.env)
		}
		var ext, body string
		if got != nil {
			ext, body = string(got.ext), string(got.basic)
		}
		if ext != tc.ext || body != tc.body {
			t.Errorf("%s: structure %q %q, want %q %q", tc.name, ext, body, tc.ext, tc.body)
		}
		if f, want := fieldsOf(tc.entry), fieldsOf([]byte(tc.block)); (len(f) > 0 || len(want) > 0) && !reflect.DeepEqual(f, want) {
			t.Errorf("%s: fieldsOf gives %q, want %q", tc.name, f, want)
		}
	}
}

// An entry of only header fields (written before ENVELOPEs were cached)
// answers FETCH ENVELOPE as the message would, and gets its ENVELOPE
// record then: the next FETCH stores nothing. A session with UTF8=ACCEPT
// gets its own encoding from entries that have the record.
func TestFetchEnvelopeOldEntries(t *testing.T) {
	t.Parallel()
	msgs := envelopeCorpus(t)
	plain := start(t, Options{})
	cstore := memfolders.NewWithHeaderCache()
	cached := start(t, Options{Store: cstore})
	var uids []uint32
	for _, m := range msgs {
		plain.deliver(t, "INBOX", string(m))
		uids = append(uids, cached.deliver(t, "INBOX", string(m)))
	}
	f, err := cstore.Open(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	hc := f.(mailbox.HeaderCache)
	for i, m := range msgs {
		c, err := newContent(bytes.NewReader(crlfBytes(m)), int64(len(crlfBytes(m))))
		if err != nil {
			t.Fatal(err)
		}
		hc.CacheFields("INBOX", uids[i], cachedBlock(c.fields))
	}
	fetch := func(ts *testServer, utf8 bool, cmd string) string {
		r := dialRaw(t, ts.addr)
		r.login()
		if utf8 {
			r.ok("ENABLE UTF8=ACCEPT")
		}
		r.ok("SELECT INBOX")
		return strings.Join(r.ok("%s", cmd), "\n")
	}
	const cmd = "FETCH 1:* (ENVELOPE)"
	want := fetch(plain, false, cmd)
	before := cstore.CacheStats()
	if got := fetch(cached, false, cmd); got != want {
		t.Errorf("from old entries:\n%s\nwithout a cache:\n%s", got, want)
	}
	st := cstore.CacheStats()
	if st.Hits-before.Hits != len(msgs) || st.Stored-before.Stored != len(msgs) {
		t.Errorf("first FETCH: %+v after %+v, want %d hits and entries stored", st, before, len(msgs))
	}
	if got := fetch(cached, false, cmd); got != want {
		t.Errorf("from the records:\n%s\nwithout a cache:\n%s", got, want)
	}
	if got, want := fetch(cached, true, cmd), fetch(plain, true, cmd); got != want {
		t.Errorf("UTF8=ACCEPT from the records:\n%s\nwithout a cache:\n%s", got, want)
	}
	if after := cstore.CacheStats(); after.Stored != st.Stored {
		t.Errorf("%d entries stored again", after.Stored-st.Stored)
	}
}

// buildEntry's entry, written in one buffer, reads back as the header
// block, ENVELOPE and structure it was given, with or without a
// structure and from an encoded ENVELOPE as from a parsed one.
func TestBuildEntry(t *testing.T) {
	t.Parallel()
	cs := &cachedStructure{ext: []byte(`("text" "plain" NIL NIL NIL "7bit" 3 1 NIL NIL NIL NIL)`), basic: []byte(`("text" "plain" NIL NIL NIL "7bit" 3 1)`)}
	for i, msg := range envelopeCorpus(t) {
		c, err := newContent(bytes.NewReader(crlfBytes(msg)), int64(len(crlfBytes(msg))))
		if err != nil {
			t.Fatal(err)
		}
		env := envelopeOf(c.fields)
		want := encodeEnvelope(env)
		for _, s := range []*cachedStructure{nil, cs} {
			for _, raw := range [][]byte{nil, want} {
				entry, got := buildEntry(c.fields, raw, env, s)
				if string(got) != string(want) {
					t.Errorf("message %d: ENVELOPE %q, want %q", i, got, want)
				}
				block, e, gs := splitEntry(entry)
				if string(block) != string(cachedBlock(c.fields)) || string(e) != string(want) {
					t.Errorf("message %d: entry %q reads back as %q and %q", i, entry, block, e)
				}
				if (gs == nil) != (s == nil) || s != nil && (string(gs.ext) != string(s.ext) || string(gs.basic) != string(s.basic)) {
					t.Errorf("message %d: entry %q has structure %+v, want %+v", i, entry, gs, s)
				}
			}
		}
	}
}
