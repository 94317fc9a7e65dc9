package msghdr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
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
		{"not a field ends the header", "From: a@example.org\r\nthis is body\r\n", []string{"From"}, "this is body\r\n"},
		{"space before colon", "From : a@example.org\r\n\r\nb", nil, "From : a@example.org\r\n\r\nb"},
		{"continuation first", " x\r\nFrom: a\r\n\r\n", nil, " x\r\nFrom: a\r\n\r\n"},
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

// FuzzRead checks that reading a header never loses or invents a byte:
// the fields, the separator and the rest are the input.
func FuzzRead(f *testing.F) {
	f.Add([]byte("From: a@example.org\r\nSubject: x\r\n\ty\r\n\r\nbody"))
	f.Add([]byte("a\nb: c\n\n"))
	f.Add([]byte(" \r\n:\r\n"))
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
			if len(f.Raw) == 0 || !bytes.HasPrefix(f.Raw, []byte(f.Name+":")) {
				t.Fatalf("field %q does not start with its name", f.Raw)
			}
			got = append(got, f.Raw...)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.HasPrefix(in, got) || !bytes.HasSuffix(in, rest) || n+len(rest) != len(in) || n-len(got) > 2 {
			t.Fatalf("fields %q + rest %q do not make up %q", got, rest, in)
		}
		h.FromDomains()
	})
}
