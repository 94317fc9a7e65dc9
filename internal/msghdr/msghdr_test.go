package msghdr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	msgdkim "github.com/emersion/go-msgauth/dkim"
)

func TestRead(t *testing.T) {
	for _, c := range []struct {
		name, in string
		names    []string
		body     string
	}{
		{"crlf", "From: a@example.org\r\nSubject: hi\r\n\tthere\r\n\r\nbody\r\n", []string{"From", "Subject"}, "body\r\n"},
		{"bare lf", "From: a@example.org\nSubject: x\n\nbody\n", []string{"From", "Subject"}, "body\n"},
		{"no body", "From: a@example.org\r\n", []string{"From"}, ""},
		{"no header", "\r\nbody\r\n", nil, "body\r\n"},
		// A line that is not a field does not end the header: every
		// other reader goes on to the empty line.
		{"not a field", "From: a@example.org\r\nthis is no field\r\nFrom: b@example.org\r\n\r\nbody\r\n", []string{"From", "", "From"}, "body\r\n"},
		{"not a field, no empty line", "From: a@example.org\r\nthis is body\r\n", []string{"From", ""}, ""},
		{"space before colon (RFC 5322 §4.5.8)", "From : a@example.org\r\nDKIM-Signature\t: x\r\n\r\nb", []string{"From", "DKIM-Signature"}, "b"},
		{"continuation first", " x\r\nFrom: a\r\n\r\n", []string{"", "From"}, ""},
		{"empty name", ": x\r\n \r\n\r\n", []string{""}, ""},
		{"no final newline", "From: a@example.org", []string{"From"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.in))
			h, n, err := Read(br, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(c.in)-len(c.body) {
				t.Errorf("consumed %d, want %d", n, len(c.in)-len(c.body))
			}
			var names []string
			var raw []byte
			for _, f := range h {
				names = append(names, f.Name)
				raw = append(raw, f.Raw...)
			}
			if !slices.Equal(names, c.names) {
				t.Errorf("names = %q, want %q", names, c.names)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != c.body {
				t.Errorf("body = %q, want %q", rest, c.body)
			}
			// Nothing is lost or changed: fields, the blank line and the
			// body are the input.
			if !strings.HasPrefix(c.in, string(raw)) {
				t.Errorf("raw fields %q are not the start of the input", raw)
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	in := "Subject: " + strings.Repeat("x", 5000) + "\r\n\r\n"
	if _, _, err := Read(bufio.NewReader(strings.NewReader(in)), 1000); !errors.Is(err, ErrTooLong) {
		t.Errorf("Read past the limit: %v, want ErrTooLong", err)
	}
	if _, _, err := Read(bufio.NewReaderSize(strings.NewReader(in), 1024), 0); !errors.Is(err, ErrTooLong) {
		t.Errorf("Read of a line longer than the buffer: %v, want ErrTooLong", err)
	}
}

func TestValueAndNew(t *testing.T) {
	f := Field{Name: "Subject", Raw: []byte("Subject:  hello\r\n\tworld \r\n")}
	if v := f.Value(); v != "hello\tworld" {
		t.Errorf("Value = %q", v)
	}
	n := New("X-Test", "a\nb\r\nc")
	if string(n.Raw) != "X-Test: a\r\n\tb\r\n\tc\r\n" {
		t.Errorf("New folded to %q", n.Raw)
	}
	h, _, err := Read(bufio.NewReader(bytes.NewReader(append(n.Raw, "\r\n"...))), 0)
	if err != nil || len(h) != 1 {
		t.Errorf("a field from New reads back as %d fields (%v)", len(h), err)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		in   string
		line int // of the first line that is not a field; 0: none
	}{
		{"From: a@example.org\r\nSubject: x\r\n\ty\r\n\r\n", 0},
		{"From : a@example.org\r\n\r\n", 0},
		{"From: a\r\nSubject: x\r\n\ty\r\nno colon\r\nFrom: b\r\n\r\n", 4},
		{" leading\r\nFrom: a\r\n\r\n", 1},
		{"Bad Name: x\n\n", 1},
		{"X: \xff\r\n\x00: y\r\n\r\n", 2},
	} {
		h, _, err := Read(bufio.NewReader(strings.NewReader(c.in)), 0)
		if err != nil {
			t.Fatal(err)
		}
		err = h.Check()
		switch {
		case c.line == 0 && err != nil:
			t.Errorf("Check(%q) = %v, want nil", c.in, err)
		case c.line != 0 && (!errors.Is(err, ErrNotAField) || !strings.Contains(err.Error(), fmt.Sprintf("line %d ", c.line))):
			t.Errorf("Check(%q) = %v, want ErrNotAField at line %d", c.in, err, c.line)
		}
	}
}

func TestAuthorDomains(t *testing.T) {
	for _, c := range []struct {
		in        string
		want      []string
		malformed bool
	}{
		{"From: Alice <alice@Example.ORG>\r\n", []string{"example.org"}, false},
		{"From: a@x.example, b@y.example\r\nFrom: c@X.example\r\n", []string{"x.example", "y.example"}, false},
		{"From: c@X.example.\r\n", []string{"x.example"}, true},
		{"From: a@reject.example;\r\n", []string{"reject.example"}, true},
		{"From: \"x\" <a@reject.example>>\r\n", []string{"reject.example"}, true},
		{"From: a@reject.example (unclosed\r\n", []string{"reject.example"}, true},
		{"From: <a@good.example>, <b@Reject.example>;\r\n", []string{"good.example", "reject.example"}, true},
		{"From: @@, a@\r\n", nil, true},
		{"From: undisclosed\r\n", nil, true},
		{"From:\r\n", nil, true},
		{"Subject: none\r\n", nil, false},
		{"From : a@spaced.example\r\n", []string{"spaced.example"}, false},
		{"X: 1\r\nno field\r\nFrom: a@late.example\r\n", []string{"late.example"}, false},
	} {
		h, _, err := Read(bufio.NewReader(strings.NewReader(c.in+"\r\n")), 0)
		if err != nil {
			t.Fatal(err)
		}
		got, malformed := h.AuthorDomains()
		if !slices.Equal(got, c.want) || malformed != c.malformed {
			t.Errorf("AuthorDomains(%q) = %q, %v; want %q, %v", c.in, got, malformed, c.want, c.malformed)
		}
	}
}

func TestFromDomains(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"From: Alice <alice@Example.ORG>\r\n", []string{"example.org"}, false},
		{"From: =?utf-8?q?J=C3=B6rg?= <j@example.net>, b@sub.example.com\r\n", []string{"example.net", "sub.example.com"}, false},
		{"From: a@x.example\r\nFrom: b@y.example\r\n", []string{"x.example", "y.example"}, false},
		{"From: not an address\r\n", nil, true},
		{"Subject: none\r\n", nil, false},
	} {
		h, _, err := Read(bufio.NewReader(strings.NewReader(c.in+"\r\n")), 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.FromDomains()
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("FromDomains(%q) = %q, %v; want %q, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

// FuzzRead checks that reading a header never loses or invents a byte
// (the fields, the separator and the rest are the input), and that it
// reads the header as go-msgauth's DKIM verifier and go-message do: as
// many DKIM-Signature fields as the verifier reports, and, for a header
// Check accepts, the same field names as go-message.
func FuzzRead(f *testing.F) {
	f.Add([]byte("From: a@example.org\r\nSubject: x\r\n\ty\r\n\r\nbody"))
	f.Add([]byte("a\nb: c\n\n"))
	f.Add([]byte(" \r\n:\r\n"))
	f.Add([]byte("From: <a@good.example>\r\nSubject: x\r\nno colon\r\nFrom: <ceo@reject.example>\r\n\r\n"))
	f.Add([]byte("DKIM-Signature : v=1; d=a.example\r\nx\r\nDKIM-Signature: v=1; d=b.example\r\nFrom: a@a.example\r\n\r\nbody\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		h, n, err := Read(br, 0)
		if err != nil {
			if errors.Is(err, ErrTooLong) {
				return
			}
			t.Fatal(err)
		}
		var got []byte
		for _, f := range h {
			if len(f.Raw) == 0 || f.Name != "" && !bytes.HasPrefix(f.Raw, []byte(f.Name)) {
				t.Fatalf("field %q does not start with its name %q", f.Raw, f.Name)
			}
			got = append(got, f.Raw...)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.HasPrefix(in, got) || !bytes.HasSuffix(in, rest) || n+len(rest) != len(in) || n-len(got) > 2 {
			t.Fatalf("fields %q + rest %q do not make up %q", got, rest, in)
		}
		h.FromDomains()
		h.AuthorDomains()
		checked := h.Check() == nil

		// go-msgauth reads to the empty line and needs one; a NUL or a
		// bare CR it reads otherwise than a mail store does, and the
		// MX refuses neither (go-smtp's reader keeps CR), so those are
		// left out.
		if !bytes.Contains(in, []byte("\n\n")) && !bytes.Contains(in, []byte("\n\r\n")) || !crlfOnly(got) {
			return
		}
		if checked {
			vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(in), &msgdkim.VerifyOptions{
				LookupTXT: func(string) ([]string, error) { return nil, errors.New("no DNS in the fuzzer") },
			})
			if err == nil && len(vs) != h.Count("DKIM-Signature") {
				t.Fatalf("go-msgauth verified %d signatures, msghdr reads %d fields named DKIM-Signature", len(vs), h.Count("DKIM-Signature"))
			}
			mh, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(in)))
			if err == nil {
				var names, theirs []string
				for _, f := range h {
					names = append(names, strings.ToLower(f.Name))
				}
				for fs := mh.Fields(); fs.Next(); {
					theirs = append(theirs, strings.ToLower(fs.Key()))
				}
				if !slices.Equal(names, theirs) {
					t.Fatalf("msghdr reads fields %q, go-message %q", names, theirs)
				}
			}
		}
	})
}

// crlfOnly reports whether every CR of b is followed by LF.
func crlfOnly(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return false
		}
		if c == 0 {
			return false
		}
	}
	return true
}
