package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
)

func dec(s string) *Decoder {
	d := NewDecoder(bufio.NewReader(strings.NewReader(s)))
	d.Begin(1 << 16)
	return d
}

func isSyntaxErr(err error) bool {
	var se *SyntaxError
	return errors.As(err, &se)
}

func TestMUTF7(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ enc, dec string }{
		{"INBOX", "INBOX"},
		{"&-", "&"},
		{"Entw&APw-rfe", "Entwürfe"},
		{"&ZeVnLIqe-", "日本語"},
		{"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"},
		{"&2D3eAA-", "😀"}, // a surrogate pair
		{"a&-b", "a&b"},
	} {
		if got, err := DecodeMUTF7(c.enc); err != nil || got != c.dec {
			t.Errorf("DecodeMUTF7(%q) = %q, %v; want %q", c.enc, got, err, c.dec)
		}
		if got := EncodeMUTF7(c.dec); got != c.enc {
			t.Errorf("EncodeMUTF7(%q) = %q, want %q", c.dec, got, c.enc)
		}
	}
	for _, bad := range []string{
		"&AC4-&AC4-",  // two shifts in a row (RFC 3501 §5.1.3)
		"&Jjo",        // not closed
		"&AGE-",       // "a", printable ASCII, encoded
		"&AC",         // not closed, short
		"&AC5-",       // bits left over
		"&2D0-",       // a lone surrogate
		"caf\xc3\xa9", // 8-bit
		"a\x01b",      // a control character
		"&!!-",        // not base64
	} {
		if got, err := DecodeMUTF7(bad); err == nil {
			t.Errorf("DecodeMUTF7(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzMUTF7(f *testing.F) {
	for _, s := range []string{"&-", "Entw&APw-rfe", "&AC4-&AC4-", "&2D3eAA-", "a&b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if dec, err := DecodeMUTF7(s); err == nil {
			if enc := EncodeMUTF7(dec); enc != s {
				t.Fatalf("%q decodes to %q, which encodes to %q", s, dec, enc)
			}
		}
		if utf8.ValidString(s) {
			enc := EncodeMUTF7(s)
			if dec, err := DecodeMUTF7(enc); err != nil || dec != s {
				t.Fatalf("%q encodes to %q, which decodes to %q, %v", s, enc, dec, err)
			}
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	d := dec(`atom "quo\"ted" {5+}` + "\r\nlit\r\n" + ` ]astr NIL 4294967295 12 (a b) ~foo` + "\r\n")
	if a, err := d.Atom(); err != nil || a != "atom" {
		t.Fatalf("Atom: %q %v", a, err)
	}
	d.SP()
	if s, err := d.String(); err != nil || s != `quo"ted` {
		t.Fatalf("quoted: %q %v", s, err)
	}
	d.SP()
	if s, err := d.AString(); err != nil || s != "lit\r\n" {
		t.Fatalf("literal: %q %v", s, err)
	}
	d.SP()
	if s, err := d.AString(); err != nil || s != "]astr" {
		t.Fatalf("astring with ]: %q %v", s, err)
	}
	d.SP()
	if _, ok, err := d.NString(); err != nil || ok {
		t.Fatalf("NIL: %v %v", ok, err)
	}
	d.SP()
	if n, err := d.Number(); err != nil || n != 4294967295 {
		t.Fatalf("Number: %d %v", n, err)
	}
	d.SP()
	d.Number()
	d.SP()
	var items []string
	if err := d.ExpectList(false, func() error { a, err := d.Atom(); items = append(items, a); return err }); err != nil || !reflect.DeepEqual(items, []string{"a", "b"}) {
		t.Fatalf("list: %q %v", items, err)
	}
	d.SP()
	if s, err := d.Mailbox(); err != nil || s != "~foo" { // "~" begins an atom, not a literal8
		t.Fatalf("~foo: %q %v", s, err)
	}
	if err := d.CRLF(); err != nil {
		t.Fatal(err)
	}
}

func TestNumberOverflow(t *testing.T) {
	t.Parallel()
	if _, err := dec("4294967296 ").Number(); !isSyntaxErr(err) {
		t.Errorf("2^32: %v", err)
	}
	if _, err := dec("99999999999999999999999 ").Number64(); !isSyntaxErr(err) {
		t.Errorf("huge: %v", err)
	}
}

func TestNumSet(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		uid  bool
		want goimap.NumSet
		err  string
	}{
		{"1:3,5,*", false, goimap.SeqSet{{Start: 1, Stop: 3}, {Start: 5, Stop: 5}, {Start: 0, Stop: 0}}, ""},
		{"4:2", true, goimap.UIDSet{{Start: 4, Stop: 2}}, ""},
		{"*:7", false, goimap.SeqSet{{Start: 0, Stop: 7}}, ""},
		{"0", false, nil, "0 is not a message number"},
		{"1:4294967296", false, nil, "number too large"},
		{"x", false, nil, "Invalid sequence set"},
		{"1,", false, nil, "Invalid sequence set"},
	} {
		got, err := dec(c.in + " ").NumSet(c.uid)
		if c.err != "" {
			if !isSyntaxErr(err) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %#v %v, want %#v", c.in, got, err, c.want)
		}
	}
	if set, err := dec("$ ").NumSet(false); err != nil || !goimap.IsSearchRes(set) {
		t.Errorf("$: %v %v", set, err)
	}
}

// Skip leaves the decoder at the start of the next command: after the
// line's end, past the data of non-synchronising literals, and never
// past a synchronising one (the client waits for a "+").
func TestSkip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, next string }{
		{"rest of line\r\nNEXT", "NEXT"},
		{"x {5+}\r\nab\r\ncd more {3+}\r\nxyz end\r\nNEXT", "NEXT"},
		{"x ~{4+}\r\n\x00\n\r\x00\r\nNEXT", "NEXT"},
		{"x {5}\r\nNEXT", "NEXT"},
		{"x\nNEXT", "NEXT"},
	} {
		d := dec(c.in)
		if err := d.Skip(1 << 20); err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if rest, _ := io.ReadAll(d.r); string(rest) != c.next {
			t.Errorf("%q: left %q, want %q", c.in, rest, c.next)
		}
	}
	if err := dec("x {999999+}\r\n").Skip(1000); !errors.Is(err, ErrTooLong) {
		t.Errorf("a literal beyond the bound: %v", err)
	}
	// After a refused synchronising literal, the command ends there.
	d := dec("x {9}\r\nNEXT")
	d.Literal = func(int64, bool, bool) error { return errors.New("no") }
	d.Atom()
	d.SP()
	if _, err := d.String(); err == nil {
		t.Fatal("literal accepted")
	}
	if err := d.Skip(100); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(d.r); string(rest) != "NEXT" {
		t.Errorf("after a refused literal: %q", rest)
	}
}

func TestLiteralRefusedWithoutSync(t *testing.T) {
	t.Parallel()
	d := dec("{5+}\r\nhello rest\r\nNEXT")
	d.Literal = func(int64, bool, bool) error { return errors.New("too big") }
	if _, err := d.String(); err == nil {
		t.Fatal("accepted")
	}
	if err := d.Skip(100); err != nil {
		t.Fatal(err)
	}
	// The data is skipped, then the rest of its line.
	if rest, _ := io.ReadAll(d.r); string(rest) != "NEXT" {
		t.Errorf("left %q", rest)
	}
}

func TestCommandLimit(t *testing.T) {
	t.Parallel()
	d := NewDecoder(bufio.NewReader(strings.NewReader(strings.Repeat("a", 100) + "\r\n")))
	d.Begin(50)
	if _, err := d.Atom(); !isSyntaxErr(err) {
		t.Errorf("a 100-byte atom within 50: %v", err)
	}
}

func TestFetchItems(t *testing.T) {
	t.Parallel()
	o, n, err := dec(`(UID FLAGS BODY BODYSTRUCTURE BODY.PEEK[1.2.HEADER.FIELDS (From "To")]<0.10> BINARY[3]<5.7> BINARY.SIZE[1] RFC822)` + "\r\n").FetchItems()
	if err != nil {
		t.Fatal(err)
	}
	if !o.UID || !o.Flags || !n.Body || !n.BodyStructure || len(o.BodySection) != 2 || len(o.BinarySection) != 1 || len(o.BinarySectionSize) != 1 {
		t.Fatalf("%+v %+v", o, n)
	}
	sec := o.BodySection[0]
	want := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Part: []int{1, 2}, HeaderFields: []string{"From", "To"}, Partial: &goimap.SectionPartial{Offset: 0, Size: 10}, Peek: true}
	if !reflect.DeepEqual(sec, want) {
		t.Errorf("section %+v, want %+v", sec, want)
	}
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	e.BodySectionName(sec, n).SP().BinarySectionName(o.BinarySection[0]).SP().BodySectionName(o.BodySection[1], n)
	e.Flush()
	// RFC 3516 §4.2: BINARY[3]<5>, the origin of a partial fetch.
	if got := buf.String(); got != `BODY[1.2.HEADER.FIELDS ("From" "To")]<0> BINARY[3]<5> RFC822` {
		t.Errorf("names %q", got)
	}
	for _, bad := range []string{"(ALL)", "NOSUCH", "BODY[0]", "BODY[MIME]", "BODY[1.FOO]", "BODY[]<1.0>", "BODY.PEEK", "(FLAGS"} {
		if _, _, err := dec(bad + "\r\n").FetchItems(); !isSyntaxErr(err) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if o, _, err := dec("FULL\r\n").FetchItems(); err != nil || !o.Envelope || o.BodyStructure == nil || !o.RFC822Size {
		t.Errorf("FULL: %+v %v", o, err)
	}
}

func TestSearch(t *testing.T) {
	t.Parallel()
	a, err := dec(`RETURN (MIN COUNT) CHARSET UTF-8 OR FROM alice (SEEN UNKEYWORD $x) NOT 1:3 UID 5:* ON 1-Feb-2024 LARGER 10 NEW` + "\r\n").Search()
	if err != nil {
		t.Fatal(err)
	}
	c := a.Criteria
	if !a.Extended || !a.Options.ReturnMin || !a.Options.ReturnCount || a.Options.ReturnAll || a.Charset != "UTF-8" {
		t.Errorf("options %+v", a)
	}
	if len(c.Or) != 1 || c.Or[0][0].Header[0].Value != "alice" || len(c.Or[0][1].Flag) != 1 || len(c.Not) != 1 || len(c.UID) != 1 ||
		!c.Since.Equal(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)) || !c.Before.Equal(time.Date(2024, 2, 2, 0, 0, 0, 0, time.UTC)) || c.Larger != 10 {
		t.Errorf("criteria %+v", c)
	}
	if !reflect.DeepEqual(c.Flag, []goimap.Flag{FlagRecent}) || !reflect.DeepEqual(c.NotFlag, []goimap.Flag{goimap.FlagSeen}) {
		t.Errorf("NEW: %v / %v", c.Flag, c.NotFlag)
	}
	if a, err := dec("ALL\r\n").Search(); err != nil || !a.Options.ReturnAll || a.Extended {
		t.Errorf("ALL: %+v %v", a, err)
	}
	for _, bad := range []string{
		"FOO",
		"",
		strings.Repeat("(", MaxSearchDepth+1) + "ALL" + strings.Repeat(")", MaxSearchDepth+1),
		strings.Repeat("NOT ", MaxSearchDepth+1) + "ALL",
		"SINCE 32-Jan-2024",
		"RETURN (FOO) ALL",
		"OR ALL",
	} {
		if _, err := dec(bad + "\r\n").Search(); !isSyntaxErr(err) {
			t.Errorf("%.40s: %v", bad, err)
		}
	}
}

func TestListArgs(t *testing.T) {
	t.Parallel()
	ref, pats, o, err := dec(`(SUBSCRIBED RECURSIVEMATCH) "" ("a/%" b*) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))` + "\r\n").ListArgs()
	if err != nil || ref != "" || !reflect.DeepEqual(pats, []string{"a/%", "b*"}) || !o.SelectSubscribed || !o.SelectRecursiveMatch || !o.ReturnChildren || o.ReturnStatus == nil || !o.ReturnStatus.NumUnseen {
		t.Errorf("%q %q %+v %v", ref, pats, o, err)
	}
	// The pattern of imaptest's "atoms" test: every atom character.
	if _, pats, _, err := dec(`"" !#$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}%*` + "\r\n").ListArgs(); err != nil || len(pats) != 1 {
		t.Errorf("atoms: %q %v", pats, err)
	}
	for _, bad := range []string{`(IMAPTEST) "" ""`, `(RECURSIVEMATCH) "" ""`, `(RECURSIVEMATCH REMOTE) "" ""`, `"" "" RETURN (IMAPTEST)`} {
		if _, _, _, err := dec(bad + "\r\n").ListArgs(); !isSyntaxErr(err) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestDateTime(t *testing.T) {
	t.Parallel()
	got, err := dec(`" 5-Mar-2024 10:11:12 +0130"`).DateTime()
	if want := time.Date(2024, 3, 5, 10, 11, 12, 0, time.FixedZone("", 90*60)); err != nil || !got.Equal(want) {
		t.Errorf("%v %v", got, err)
	}
	if _, err := dec(`"5-Mar-2024"`).DateTime(); !isSyntaxErr(err) {
		t.Errorf("date only: %v", err)
	}
}

func TestEncoder(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	e.String("plain").SP().String(`q"uo\te`).SP().String("two\r\nlines").SP().String("café").SP().Mailbox("Entwürfe").SP().Mailbox("INBOX")
	e.SP().Envelope(&Envelope{Subject: "Grüße", From: []Address{{Name: "A", Mailbox: "a", Host: "x.org"}},
		To: []Address{{Mailbox: "group"}, {Mailbox: "g1", Host: "d1.org"}, {}}})
	e.Status("*", goimap.StatusResponseTypeOK, "", "text\r\nwith a break")
	e.Flush()
	want := `"plain" "q\"uo\\te" {10}` + "\r\ntwo\r\nlines" + ` {5}` + "\r\ncafé" + ` "Entw&APw-rfe" INBOX` +
		` (NIL "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" (("A" NIL "a" "x.org")) (("A" NIL "a" "x.org")) (("A" NIL "a" "x.org")) ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL NIL NIL)) NIL NIL NIL NIL)` +
		"* OK text  with a break\r\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	buf.Reset()
	e.UTF8 = true
	e.String("café").SP().Mailbox("Entwürfe").Flush()
	if got := buf.String(); got != `"café" "Entwürfe"` {
		t.Errorf("UTF8: %q", got)
	}
}

// TestEncoderNumbers checks numbers in and across a flush, and that a
// FETCH response's numbers and atoms allocate nothing once the buffer is
// taken: a FETCH of 100,000 messages wrote two allocations per message
// before.
func TestEncoderNumbers(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	want := strings.Repeat("x", FlushSize-3)
	e.Atom(want).Number64(-1234567).SP().Number(4294967295).Flush()
	if want += "-1234567 4294967295"; buf.String() != want {
		t.Errorf("got %q...%q, want ...%q", buf.String()[:8], buf.String()[len(buf.String())-20:], want[len(want)-20:])
	}
	allocs := testing.AllocsPerRun(1000, func() {
		e.Atom("* ").Number(99999).Atom(" FETCH (UID ").Number(123456).Atom(" FLAGS ").Flags([]goimap.Flag{goimap.FlagSeen}).Byte(')').CRLF()
		if e.Buffered() > FlushSize/2 {
			buf.Reset()
			e.Flush()
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per FETCH response line, want 0", allocs)
	}
}

// FuzzDecoder feeds arbitrary commands to every argument parser: none
// may panic or read past the command's limit, and each failure is a
// SyntaxError, a NameError or the input's end.
func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		"1:* (FLAGS BODY.PEEK[1.HEADER.FIELDS (a b)]<0.5> BINARY[2]<1.2>)",
		"RETURN (MIN) CHARSET UTF-8 OR (NOT SEEN) TEXT {3+}\r\nabc UID 1:*",
		`(SUBSCRIBED) "" ("a" b) RETURN (STATUS (MESSAGES))`,
		"+FLAGS.SILENT (\\Seen $x)",
		`"&AC4-&AC4-" (MESSAGES)`,
		`" 1-Jan-2024 00:00:00 +0000" ~{3+}` + "\r\nabc",
	} {
		f.Add([]byte(s + "\r\n"))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		parsers := []func(d *Decoder) error{
			func(d *Decoder) error { _, err := d.NumSet(false); return err },
			func(d *Decoder) error { _, _, err := d.FetchItems(); return err },
			func(d *Decoder) error { _, err := d.Search(); return err },
			func(d *Decoder) error { _, _, _, err := d.ListArgs(); return err },
			func(d *Decoder) error { _, err := d.StoreFlags(); return err },
			func(d *Decoder) error { _, err := d.StatusItems(); return err },
			func(d *Decoder) error { _, err := d.Mailbox(); return err },
			func(d *Decoder) error { _, err := d.DateTime(); return err },
			func(d *Decoder) error { _, err := d.FlagList(); return err },
		}
		for _, p := range parsers {
			d := NewDecoder(bufio.NewReader(bytes.NewReader(in)))
			d.Begin(4096)
			err := p(d)
			var ne *NameError
			if err != nil && !isSyntaxErr(err) && !errors.As(err, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %T %v", err, err)
			}
			if d.limit < 0 {
				t.Fatalf("read past the limit")
			}
			if err := d.Skip(1 << 20); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, ErrTooLong) {
				t.Fatalf("Skip: %v", err)
			}
		}
	})
}
