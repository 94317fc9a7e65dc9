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
	// Keys the example does not set, and why.
	exempt := map[string]string{
		"smtp.listen_tls":            "Validate refuses it (implicit TLS belongs to [submission])",
		"smtp.allow_insecure_auth":   "the MX role offers no AUTH; [smtp] shares the listener table's shape",
		"imap.milters":               "Validate refuses it (milters filter SMTP only)",
		"imap.milter_default_action": "Validate refuses it",
		"imap.milter_timeout":        "Validate refuses it",
	}
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
