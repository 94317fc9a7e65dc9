package mutf7

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMUTF7(t *testing.T) {
	t.Parallel()
	cases := []struct{ dec, enc string }{
		{"", ""},
		{"Sent", "Sent"},
		{"A&B", "A&-B"},
		{"&", "&-"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"日本語", "&ZeVnLIqe-"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"😀", "&2D3eAA-"},
		{"a\tb", "a&AAk-b"},
		{"é&é", "&AOk-&-&AOk-"},
	}
	for _, c := range cases {
		enc, err := Encode(c.dec)
		if err != nil || enc != c.enc {
			t.Errorf("encode(%q) = %q, %v; want %q", c.dec, enc, err, c.enc)
		}
		dec, err := Decode(c.enc)
		if err != nil || dec != c.dec {
			t.Errorf("decode(%q) = %q, %v; want %q", c.enc, dec, err, c.dec)
		}
	}
	for _, bad := range []string{
		"&", "&AOk", "&AOk-&AOk-", "&AGE-", "&AOl-", "&2D0-", "&3gA-", "&*-", "é", "a\x00", "&A-",
	} {
		if dec, err := Decode(bad); err == nil {
			t.Errorf("decode(%q) = %q, want an error", bad, dec)
		}
	}
	if _, err := Encode("\xff"); err == nil {
		t.Error("encode of invalid UTF-8 succeeded")
	}
}

func FuzzMUTF7(f *testing.F) {
	for _, s := range []string{"", "Sent", "A&B", "Entwürfe", "日本語", "😀x😀", "a\tb", "&-", "&AOk-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc, err := Encode(s)
		if utf8.ValidString(s) != (err == nil) {
			t.Fatalf("encode(%q): %v", s, err)
		}
		if err == nil {
			dec, err := Decode(enc)
			if err != nil || dec != s {
				t.Fatalf("round trip %q -> %q -> %q, %v", s, enc, dec, err)
			}
			for i := 0; i < len(enc); i++ {
				if enc[i] < 0x20 || enc[i] > 0x7e || enc[i] == '/' && !strings.Contains(s, "/") || enc[i] == '.' && !strings.Contains(s, ".") {
					t.Fatalf("encode(%q) = %q: byte %q", s, enc, enc[i])
				}
			}
		}
		// Whatever decodes is canonical: encoding gives it back.
		if dec, err := Decode(s); err == nil {
			if again, err := Encode(dec); err != nil || again != s {
				t.Fatalf("decode(%q) = %q, which encodes to %q", s, dec, again)
			}
		}
	})
}
