package mda

import (
	"strings"
	"testing"
)

func TestScanHeader(t *testing.T) {
	cases := []struct {
		name     string
		msg      string
		received int
		dt       []string
	}{
		{"none", "Subject: x\n\nReceived: in body\n", 0, nil},
		{"counts", "Received: a\nReceived: b\n\tcontinued\nreceived: c\nSubject: x\n\nbody\n", 3, nil},
		{"delivered-to", "Delivered-To: Alice@Example.org\nDELIVERED-TO: <bob@example.org>\n\n", 0, []string{"alice@example.org", "bob@example.org"}},
		{"crlf", "Received: a\r\nDelivered-To: a@b.example\r\n\r\nDelivered-To: c@d.example\r\n", 1, []string{"a@b.example"}},
		{"no body", "Received: a", 1, nil},
		{"long line", "X-Long: " + strings.Repeat("x", 100000) + "\nReceived: z\n\n", 1, nil},
		{"garbage", "\x00\x01\xff\n\n", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ti := scanHeader(strings.NewReader(c.msg))
			if ti.received != c.received {
				t.Errorf("received = %d, want %d", ti.received, c.received)
			}
			if len(ti.deliveredTo) != len(c.dt) {
				t.Errorf("deliveredTo = %v, want %v", ti.deliveredTo, c.dt)
			}
			for _, a := range c.dt {
				if !ti.deliveredTo[a] {
					t.Errorf("deliveredTo lacks %s: %v", a, ti.deliveredTo)
				}
			}
		})
	}
}

func FuzzScanHeader(f *testing.F) {
	f.Add("Received: a\nDelivered-To: x@y\n\nbody")
	f.Fuzz(func(t *testing.T, s string) {
		ti := scanHeader(strings.NewReader(s))
		if ti.received > strings.Count(strings.ToLower(s), "received") {
			t.Fatalf("counted %d Received fields", ti.received)
		}
	})
}
