package imap

import (
	"reflect"
	"testing"

	"mailroom/imap/internal/wire"
)

func TestParseAddressList(t *testing.T) {
	t.Parallel()
	a := func(name, adl, mailbox, host string) wire.Address {
		return wire.Address{Name: name, ADL: adl, Mailbox: mailbox, Host: host}
	}
	for _, c := range []struct {
		in   string
		want []wire.Address
	}{
		{"user@domain", []wire.Address{a("", "", "user", "domain")}},
		{`"Real, Name" <user@domain>`, []wire.Address{a("Real, Name", "", "user", "domain")}},
		{"Real Name <user@domain>, other@x.org", []wire.Address{a("Real Name", "", "user", "domain"), a("", "", "other", "x.org")}},
		// A comment is the name of an address without one (imaptest
		// fetch-envelope), and is skipped inside addresses.
		{"user@domain (Real Name)", []wire.Address{a("Real Name", "", "user", "domain")}},
		{"<user-from (comment)@ (comment) domain.org>", []wire.Address{a("", "", "user-from", "domain.org")}},
		// Source routes are the ADL (RFC 9051 §7.5.2).
		{"<@route:user@domain>", []wire.Address{a("", "@route", "user", "domain")}},
		{"<@a,@b:user@domain>", []wire.Address{a("", "@a,@b", "user", "domain")}},
		// Groups, with their start and end markers.
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;", []wire.Address{
			a("", "", "group", ""), a("", "", "g1", "d1.org"), a("", "", "g2", "d2.org"), {},
			a("", "", "group2", ""), a("", "", "g3", "d3.org"), {}}},
		{"group:;, group2: (foo) ;", []wire.Address{a("", "", "group", ""), {}, a("", "", "group2", ""), {}}},
		{"undisclosed-recipients:;", []wire.Address{a("", "", "undisclosed-recipients", ""), {}}},
		// Broken ones still give something, never a group marker by
		// mistake.
		{"user", []wire.Address{a("", "", "user", missingDomain)}},
		{"@domain", []wire.Address{a("", "", missingMailbox, "domain")}},
		{"John Q. Public <jqp@x.org>", []wire.Address{a("John Q. Public", "", "jqp", "x.org")}},
		{"<a@b", []wire.Address{a("", "", "a", "b")}},
		// Words are joined with one space, whatever was between them;
		// escapes and nested comments are undone.
		{"a  b <c@d>", []wire.Address{a("a b", "", "c", "d")}},
		{`"a" "b" <c@d>`, []wire.Address{a("a b", "", "c", "d")}},
		{`"a\"b" <c@d>`, []wire.Address{a(`a"b`, "", "c", "d")}},
		{`(a (b) \) c) x@y`, []wire.Address{a("a (b) ) c", "", "x", "y")}},
		{"x @ example . org", []wire.Address{a("", "", "x", "example.org")}},
		{`"" <a@b>`, []wire.Address{a("", "", "a", "b")}},
		{"<@a.b,@c:u@[1.2.3.4]>", []wire.Address{a("", "@a.b,@c", "u", "[1.2.3.4]")}},
		{"", nil},
	} {
		if got := parseAddressList(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{"a <b@c>", "g: a@b, c@d;", "<@r:u@d>", `"q\"x" (c (n)) <a@[1.2.3.4]>`, "((((", `"`, "[", "a@b (x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range parseAddressList(s) {
			if a.Host == "" && (a.Name != "" || a.ADL != "") {
				t.Fatalf("%q: %+v would read as a group marker", s, a)
			}
		}
	})
}

// BenchmarkEnvelopeOf is the CPU of one ENVELOPE from a cached header
// block as bench/imapbench gen writes them (bench/imap.sh's "FETCH 1:*
// (ENVELOPE), again" row is 100,000 of these); a profiling aid, not a
// figure.
func BenchmarkEnvelopeOf(b *testing.B) {
	block := []byte("Date: Sun, 31 Dec 2023 15:14:05 -0900\r\n" +
		"From: =?utf-8?q?Jos=C3=A9_Garc=C3=ADa?= <jose.garcia@post.example.de>\r\n" +
		"To: Alice <alice@example.org>\r\nCc: \"Ivanova, Alice\" <alice.ivanova@shop.example>, bob@example.com\r\n" +
		"Subject: Which same any through wedding after just quarterly\r\n" +
		"Message-ID: <1.b390794959e03596@post.example.de>\r\n")
	b.ReportAllocs()
	for b.Loop() {
		envelopeOf(fieldsOf(block))
	}
}

// BenchmarkCacheEntry is the CPU of one header cache entry as a first
// FETCH ENVELOPE writes it (fields, ENVELOPE parsed and encoded); a
// profiling aid, not a figure.
func BenchmarkCacheEntry(b *testing.B) {
	block := []byte("Date: Sun, 31 Dec 2023 15:14:05 -0900\r\n" +
		"From: =?utf-8?q?Jos=C3=A9_Garc=C3=ADa?= <jose.garcia@post.example.de>\r\n" +
		"To: Alice <alice@example.org>\r\nCc: \"Ivanova, Alice\" <alice.ivanova@shop.example>, bob@example.com\r\n" +
		"Subject: Which same any through wedding after just quarterly\r\n" +
		"Message-ID: <1.b390794959e03596@post.example.de>\r\n")
	fields := fieldsOf(block)
	b.ReportAllocs()
	for b.Loop() {
		newEntry(fields, nil)
	}
}
