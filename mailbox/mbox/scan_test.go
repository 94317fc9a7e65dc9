package mbox

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// scanAll scans b and returns its spans and the served text of each.
func scanAll(t testing.TB, b []byte) ([]*Span, []string, ScanResult) {
	t.Helper()
	var spans []*Span
	res, err := Scan(bytes.NewReader(b), 0, int64(len(b)), func(s *Span) error {
		c := *s
		spans = append(spans, &c)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	var texts []string
	for _, s := range spans {
		got, err := io.ReadAll(NewReader(bytes.NewReader(b), s))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != s.Served() {
			t.Errorf("message at %d: Served() %d, reader gave %d bytes", s.Offset, s.Served(), len(got))
		}
		texts = append(texts, string(got))
	}
	return spans, texts, res
}

// mboxrd writes msgs as Append does.
func mboxrd(t testing.TB, msgs ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for _, m := range msgs {
		if err := writeMessage(bw, fromLine("a@example.org", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)), strings.NewReader(m), ""); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestScanMboxrdRoundTrip: what Append wrote, Scan and NewReader give
// back byte for byte (with CRLF), From lines and quoting included.
func TestScanMboxrdRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := []string{
		"Subject: one\n\nbody\n",
		"Subject: two\n\nFrom the start\n>From quoted\n>>From more\n\n\nFrom again\n",
		"Subject: empty body\n\n",
		"Subject: no newline at the end\n\nlast",
		"Subject: binary\n\n\x00\x01\xff\r\n\rstray CR\n",
	}
	spans, texts, res := scanAll(t, mboxrd(t, msgs...))
	if res.Junk != 0 || len(spans) != len(msgs) {
		t.Fatalf("%d messages, junk %d", len(spans), res.Junk)
	}
	for i, m := range msgs {
		want := m
		if !strings.HasSuffix(want, "\n") {
			want += "\n" // Append ends every message with a newline
		}
		want = strings.ReplaceAll(strings.ReplaceAll(want, "\r\n", "\n"), "\n", "\r\n")
		if texts[i] != want {
			t.Errorf("message %d: %q, want %q", i, texts[i], want)
		}
		if !bytes.HasPrefix(spans[i].FromLine, []byte("From a@example.org Tue Jan  2 03:04:05 2024")) {
			t.Errorf("message %d: From line %q", i, spans[i].FromLine)
		}
	}
}

// TestScanOthersFiles: files other programs write, and damaged ones.
func TestScanOthersFiles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		file  string
		junk  int64
		texts []string
		check func(t *testing.T, s []*Span)
	}{
		{name: "CRLF line ends", file: "From a\r\nSubject: x\r\n\r\nbody\r\n\r\nFrom b\r\nSubject: y\r\n\r\nz\r\n",
			texts: []string{"Subject: x\r\n\r\nbody\r\n", "Subject: y\r\n\r\nz\r\n"}},
		{name: "no leading From", file: "Subject: stray\n\ntext\n\nFrom a\nSubject: x\n\nb\n", junk: 22,
			texts: []string{"Subject: x\r\n\r\nb\r\n"}},
		{name: "no From at all", file: "just text\n", junk: 10},
		{name: "From line without a date", file: "From \nSubject: x\n\nb\n\nFrom\nnot a separator\n",
			texts: []string{"Subject: x\r\n\r\nb\r\n\r\nFrom\r\nnot a separator\r\n"}},
		{name: "truncated in the header", file: "From a\nSubject: x\n\nb\n\nFrom b\nSubject: cut",
			texts: []string{"Subject: x\r\n\r\nb\r\n", "Subject: cut"},
			check: func(t *testing.T, s []*Span) {
				if s[0].Truncated || !s[1].Truncated {
					t.Errorf("Truncated = %v, %v; want false, true", s[0].Truncated, s[1].Truncated)
				}
			}},
		{name: "From in a body without an empty line before", file: "From a\n\nline\nFrom me\n",
			texts: []string{"\r\nline\r\nFrom me\r\n"}},
		{name: "mboxcl2: Content-Length covers an unquoted From", file: "From a\nContent-Length: 15\n\nx\n\nFrom inside\n\nFrom b\n\ny\n",
			texts: []string{"\r\nx\r\n\r\nFrom inside\r\n", "\r\ny\r\n"}, // Content-Length read, not served
			check: func(t *testing.T, s []*Span) {
				if !s[0].Verbatim {
					t.Error("a confirmed Content-Length did not make the body verbatim")
				}
			}},
		{name: "a wrong Content-Length is not believed", file: "From a\nContent-Length: 3\n\nx\n>From q\n\nFrom b\n\ny\n",
			texts: []string{"\r\nx\r\nFrom q\r\n", "\r\ny\r\n"}},
		{name: "a Content-Length past the end", file: "From a\nContent-Length: 99999\n\nx\n\nFrom b\n\ny\n",
			texts: []string{"\r\nx\r\n", "\r\ny\r\n"}},
		{name: "flags other programs wrote", file: "From a\nStatus: RO\nX-Status: AF\nX-Keywords: $Junk work\n\nb\n",
			texts: []string{"\r\nb\r\n"}, // read as flags, not served
			check: func(t *testing.T, s []*Span) {
				if string(s[0].Status) != "RO" || string(s[0].XStatus) != "AF" || string(s[0].XKeywords) != "$Junk work" {
					t.Errorf("fields %q %q %q", s[0].Status, s[0].XStatus, s[0].XKeywords)
				}
			}},
		{name: "empty file", file: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spans, texts, res := scanAll(t, []byte(c.file))
			if res.Junk != c.junk || res.End != int64(len(c.file)) {
				t.Errorf("junk %d end %d, want %d %d", res.Junk, res.End, c.junk, len(c.file))
			}
			if len(texts) != len(c.texts) {
				t.Fatalf("%d messages %q, want %d %q", len(texts), texts, len(c.texts), c.texts)
			}
			for i := range texts {
				if texts[i] != c.texts[i] {
					t.Errorf("message %d: %q, want %q", i, texts[i], c.texts[i])
				}
			}
			if c.check != nil {
				c.check(t, spans)
			}
		})
	}
}

// TestScanFromOffset: a Scan from the end of the last one sees only the
// messages appended since, with the same offsets as a full scan.
func TestScanFromOffset(t *testing.T) {
	t.Parallel()
	first := mboxrd(t, "Subject: 1\n\na\n", "Subject: 2\n\nb\n")
	all := append(bytes.Clone(first), mboxrd(t, "Subject: 3\n\nc\n")...)
	full, _, _ := scanAll(t, all)
	var got []*Span
	if _, err := Scan(bytes.NewReader(all), int64(len(first)), int64(len(all)), func(s *Span) error {
		got = append(got, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Offset != full[2].Offset || got[0].End != full[2].End || got[0].Hash != full[2].Hash {
		t.Fatalf("incremental scan %+v, full scan's third %+v", got, full[2])
	}
}

// TestScanHashIgnoresBody: the fingerprint is of the From line and the
// header: the same for the same message wherever it moves, different for
// another header.
func TestScanHashIgnoresBody(t *testing.T) {
	t.Parallel()
	s1, _, _ := scanAll(t, mboxrd(t, "Subject: a\n\none\n", "Subject: b\n\ntwo\n"))
	s2, _, _ := scanAll(t, mboxrd(t, "Subject: b\n\ntwo\n"))
	if s1[1].Hash != s2[0].Hash || s1[0].Hash == s1[1].Hash {
		t.Error("hash does not follow the header")
	}
}

// TestScanLongLines: lines longer than the buffer, with CRLF split at its
// edge and a line of many '>' before "From ".
func TestScanLongLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxLine-1) + "\r\n" + strings.Repeat("y", 3*maxLine) + "\n"
	msg := "Subject: long\n\n" + long + strings.Repeat(">", 100) + "From deep\n"
	_, texts, _ := scanAll(t, mboxrd(t, msg))
	want := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if len(texts) != 1 || texts[0] != want {
		t.Fatalf("long lines did not survive: got %d bytes, want %d", len(texts[0]), len(want))
	}
}

// FuzzScanRoundTrip: any two messages written as Append writes them come
// back from Scan and NewReader as they were given (LF turned into CRLF),
// and Served() is what the reader gives.
func FuzzScanRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: a\n\nFrom x\n"), []byte(">From y\r\n"))
	f.Add([]byte("\n\n\nFrom "), []byte("From \n\n"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		file := mboxrd(t, string(a), string(b))
		spans, texts, res := scanAll(t, file)
		if res.Junk != 0 || len(spans) != 2 {
			t.Fatalf("%d messages, junk %d, from %q", len(spans), res.Junk, file)
		}
		for i, m := range [][]byte{a, b} {
			want := served(string(m))
			if texts[i] != want {
				t.Fatalf("message %d: %q, want %q (file %q)", i, texts[i], want, file)
			}
		}
	})
}

// FuzzScan: any file scans without error or panic into ordered,
// non-overlapping spans inside it, each served as Served() says.
func FuzzScan(f *testing.F) {
	f.Add([]byte("From a\nContent-Length: 2\n\nx\n\nFrom b\n\n"))
	f.Add([]byte("junk\n\nFrom \r\n\r\n>From\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spans, _, res := scanAll(t, data)
		last := res.Junk
		for _, s := range spans {
			if s.Offset < last || s.Start <= s.Offset || s.End < s.Start || s.End > int64(len(data)) {
				t.Fatalf("span %+v after %d in %d bytes", s, last, len(data))
			}
			last = s.End
		}
	})
}

// served is what IMAP serves of a message given to Append: stored with LF
// (CRLF turned into LF), ending in a newline, then every LF not after a
// CR served as CRLF.
func served(m string) string {
	m = strings.ReplaceAll(m, "\r\n", "\n")
	if m != "" && !strings.HasSuffix(m, "\n") {
		m += "\n"
	}
	m = dropHidden(m)
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		if m[i] == '\n' && (i == 0 || m[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(m[i])
	}
	return b.String()
}

// dropHidden removes the hidden fields (and their folded lines) from the
// header of m (LF line ends), as a reader of the store sees it.
func dropHidden(m string) string {
	var b strings.Builder
	header, hiding := true, false
	for _, l := range strings.SplitAfter(m, "\n") {
		if header {
			if l == "\n" || l == "\r\n" {
				header = false
			} else {
				if !isContinuation([]byte(l)) {
					hiding = isHidden([]byte(l))
				}
				if hiding {
					continue
				}
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// TestScanHidden: the store's fields are read as flags, not served, not
// in the fingerprint, folded or not.
func TestScanHidden(t *testing.T) {
	t.Parallel()
	plain := "Subject: s\nFrom: a@b\n\nStatus: RO in the body\n"
	withFlags := "Status: RO\nSubject: s\nX-Keywords: $Work\n  Later\nX-Status: AF\nFrom: a@b\nX-UID: 7\n\nStatus: RO in the body\n"
	// Written by another program: mailroom's writer drops these fields.
	file := append(mboxrd(t, plain), "From a@example.org Tue Jan  2 03:04:05 2024\n"+withFlags+"\n"...)
	if w := mboxrd(t, withFlags); bytes.Contains(w, []byte("Status")) && !bytes.Contains(w, []byte("Status: RO in")) {
		t.Errorf("the writer kept a hidden field: %q", w)
	}
	spans, texts, _ := scanAll(t, file)
	if texts[0] != texts[1] || texts[1] != served(plain) {
		t.Errorf("served %q and %q, want both %q", texts[0], texts[1], served(plain))
	}
	if spans[0].Hash != spans[1].Hash {
		t.Error("the hidden fields changed the fingerprint")
	}
	s := spans[1]
	if string(s.Status) != "RO" || string(s.XStatus) != "AF" || string(s.XKeywords) != "$Work Later" {
		t.Errorf("flags read: Status %q X-Status %q X-Keywords %q", s.Status, s.XStatus, s.XKeywords)
	}
	if s.Served() != int64(len(texts[1])) {
		t.Errorf("Served() %d, read %d", s.Served(), len(texts[1]))
	}
}

// TestScanLinesUnhashed: mutt's Lines: field (added with Content-Length:
// when mutt rewrites a file) is served but leaves the fingerprint as it
// was, so that the message keeps its UID (TestMboxMutt in test/e2e).
func TestScanLinesUnhashed(t *testing.T) {
	t.Parallel()
	plain := "Subject: s\nFrom: a@b\n\nbody\n"
	mutts := "Subject: s\nFrom: a@b\nContent-Length: 5\nLines: 1\n\nbody\n"
	file := append(mboxrd(t, plain), "From a@example.org Tue Jan  2 03:04:05 2024\n"+mutts+"\n"...)
	spans, texts, _ := scanAll(t, file)
	if spans[0].Hash != spans[1].Hash {
		t.Error("Lines: changed the fingerprint")
	}
	if want := served("Subject: s\nFrom: a@b\nLines: 1\n\nbody\n"); texts[1] != want {
		t.Errorf("served %q, want %q (Lines: kept)", texts[1], want)
	}
	other, _, _ := scanAll(t, mboxrd(t, "Subject: t\nFrom: a@b\n\nbody\n"))
	if other[0].Hash == spans[0].Hash {
		t.Error("another Subject: gives the same fingerprint")
	}
}
