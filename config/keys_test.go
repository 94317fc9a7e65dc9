package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestKeysAgreeWithExample: Keys (what errors and `mailroom help config`
// describe) names exactly the keys examples/mailroom.toml sets, so that
// neither can leave one out.
func TestKeysAgreeWithExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "mailroom.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example keeps optional keys commented out ("# key = ..."):
	// uncomment them to see every key it documents.
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if trimmed, ok := strings.CutPrefix(l, "# "); ok && (strings.Contains(trimmed, " = ") || strings.HasPrefix(trimmed, "[")) && !strings.HasPrefix(trimmed, " ") {
			l = trimmed
		}
		lines = append(lines, l)
	}
	var m map[string]any
	md, err := toml.Decode(strings.Join(lines, "\n"), &m)
	if err != nil {
		t.Fatalf("decode the example with its commented keys: %v", err)
	}
	inExample := map[string]bool{}
	for _, k := range md.Keys() {
		inExample[k.String()] = true
	}
	// Keys the example does not set, and why: none (the keys of shared
	// table shapes that a table does not take are not in Keys).
	exempt := map[string]string{}
	// A key the example shows in one table stands for the same key of
	// tables that share its shape ("the same keys as [smtp]").
	shown := map[string]bool{}
	for _, l := range lines {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if name, _, ok := strings.Cut(l, "="); ok {
			shown[strings.TrimSpace(name)] = true
		}
	}
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Name] = true
		last := k.Name[strings.LastIndex(k.Name, ".")+1:]
		mentioned := shown[last] || strings.Contains(string(data), " "+last+" = ")
		if !inExample[k.Name] && !mentioned && exempt[k.Name] == "" {
			t.Errorf("key %s is not in examples/mailroom.toml", k.Name)
		}
	}
	for k := range inExample {
		if !known[k] {
			t.Errorf("examples/mailroom.toml sets %s, which Keys does not know", k)
		}
	}
}

func TestTypeErrors(t *testing.T) {
	for _, c := range []struct{ key, msg, want string }{
		{"domains", "incompatible types: TOML value has type string; destination has type slice", "domains: expected a list of strings, not a string"},
		{"limits.max_recipients", "incompatible types: TOML value has type string; destination has type integer", "limits.max_recipients: expected an integer, not a string"},
		{"smtp", "type mismatch for config.Listener: expected table but found int64", "smtp: expected a table ([smtp]), not an integer"},
		{"nosuch", "whatever", "nosuch: whatever"},
	} {
		if got := typeError(c.key, c.msg); got != c.want {
			t.Errorf("typeError(%s): %q, want %q", c.key, got, c.want)
		}
	}
	if got := closest("limits.max_recipient"); got != "limits.max_recipients" {
		t.Errorf("closest: %q", got)
	}
	if got := closest("completely_different"); got != "" {
		t.Errorf("closest of nothing alike: %q, want none", got)
	}
}

// TestKeysDocumented: every key says what it does, from its field's doc
// comment (mailroom.toml(5) is made of these), in the file's names.
func TestKeysDocumented(t *testing.T) {
	docs := map[string]string{}
	for _, k := range Keys() {
		docs[k.Name] = k.Doc
		if strings.TrimSpace(k.Doc) == "" {
			t.Errorf("key %s has no description: give its field in config/ a doc comment", k.Name)
		}
		if _, ok := notKeys[k.Name]; ok {
			t.Errorf("Keys lists %s, which its table does not take", k.Name)
		}
	}
	for _, c := range []struct{ key, want, not string }{
		// The field's Go name becomes the key's, first and further on.
		{"limits.idle_timeout", "idle_timeout bounds every read", "IdleTimeout"},
		{"limits.idle_timeout", "with min_data_rate,", "MinDataRate"},
		{"relay.password", "password for username. Prefer password_file", "PasswordFile"},
		// A field without a comment shares the one above that names it...
		{"sieve.after", "before and after are the administrator's script files", ""},
		{"sieve.max_script_size", "max_script_size the octets of one", ""},
		// ...and only that one.
		{"tls", "names the certificate used for STARTTLS", "domains receive"},
		// A table is described by its field, or else by its type, without
		// the "is the [imap] table" preamble.
		{"imap", "Its listeners and a connection limit of its own", "is the [imap] table"},
		{"smtp", "the MX", "Listener"},
		// Names that are not the struct's keys stay as they are.
		{"server.user", "(whose unit sets User= itself)", ""},
		// Paragraphs are joined into lines.
		{"delivery.allow_commands", "Off by default: a mail home may be writable by its user", "\n"},
		// Trailing comments count.
		{"tls.cert", "PEM certificate chain", ""},
	} {
		d := docs[c.key]
		if !strings.Contains(d, c.want) || c.not != "" && strings.Contains(d, c.not) {
			t.Errorf("%s: %q, want it to say %q and not %q", c.key, d, c.want, c.not)
		}
	}
	if d := Keys()[0]; d.Name != "hostname" || d.Default != "" {
		t.Errorf("hostname's default is the machine's, not shown as a value: %+v", d)
	}
}
