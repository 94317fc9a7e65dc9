package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mailroom/config"
	"mailroom/internal/mailtest"
)

// render formats page (roff) with groff as man(1) would, in plain text,
// and fails on any warning groff has about it.
func render(t *testing.T, name, page string) string {
	t.Helper()
	groff := mailtest.NeedTool(t, "groff")
	cmd := exec.Command(groff, "-man", "-ww", "-Tutf8", "-P-cbou", "-rLL=200n")
	cmd.Stdin = strings.NewReader(page)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Fatalf("groff %s: %v\n%s", name, err, errs.String())
	}
	// One space between words, whatever the justification did.
	return regexp.MustCompile(`[ \t]+`).ReplaceAllString(out.String(), " ")
}

// TestManPages: mailroom(8) documents every command, each of its
// actions and flags and its exit statuses, and mailroom.toml(5) every
// key of every table with what it takes and does; both are well-formed
// for groff (no warning) and man-db (whatis reads their NAME line).
func TestManPages(t *testing.T) {
	page8, code := cli(t, "", "manpage", "mailroom.8")
	if code != 0 {
		t.Fatalf("manpage mailroom.8: %d %s", code, page8)
	}
	page5, code := cli(t, "", "manpage", "mailroom.toml.5")
	if code != 0 {
		t.Fatalf("manpage mailroom.toml.5: %d %s", code, page5)
	}
	text8 := render(t, "mailroom.8", page8)
	for _, c := range commands() {
		i := strings.Index(text8, "\n "+c.name+"\n")
		if i < 0 {
			t.Errorf("mailroom(8) has no section for %s", c.name)
			continue
		}
		sect := text8[i:]
		if j := strings.Index(sect[1:], "\n ENVIRONMENT"); j > 0 {
			sect = sect[:j]
		}
		for _, u := range c.usage {
			if !strings.Contains(sect, "mailroom "+u) {
				t.Errorf("mailroom(8), %s: no usage line %q", c.name, u)
			}
		}
		for _, a := range c.actions {
			// A short tag shares its line with the text.
			tagged := regexp.MustCompile(`\n ` + regexp.QuoteMeta(a.usage) + `( |\n )` + regexp.QuoteMeta(strings.Fields(a.text)[0]))
			if !tagged.MatchString(sect) {
				t.Errorf("mailroom(8), %s: action %q not explained", c.name, a.usage)
			}
		}
		for _, fs := range c.flagSets() {
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(sect, flagUsage(f)) {
					t.Errorf("mailroom(8), %s: flag %s not explained", c.name, flagUsage(f))
				}
			})
		}
		if c.exit != "" && !strings.Contains(sect, "Exit status: "+strings.Fields(c.exit)[0]) {
			t.Errorf("mailroom(8), %s: no exit status", c.name)
		}
	}

	text5 := render(t, "mailroom.toml.5", page5)
	table := "" // the section each key must be under
	for _, k := range config.Keys() {
		if k.Table {
			heading := "[" + k.Name + "]"
			if strings.HasPrefix(k.Type, "an array") {
				heading = "[" + heading + "]"
			}
			i := strings.Index(text5, "\n"+heading+"\n")
			if i < 0 {
				t.Errorf("mailroom.toml(5) has no section %s", heading)
				continue
			}
			table = text5[i+1:]
			if j := regexp.MustCompile(`\n[\[A-Z]`).FindStringIndex(table[1:]); j != nil {
				table = table[:j[0]+1]
			}
			continue
		}
		if table == "" {
			table = text5[strings.Index(text5, "\nTOP-LEVEL KEYS\n"):]
		}
		name := k.Name[strings.LastIndex(k.Name, ".")+1:]
		want := " " + name + " (" + k.Type
		if k.Default != "" {
			want += ", default " + k.Default
		}
		firstWords := strings.Join(strings.Fields(k.Doc)[:min(4, len(strings.Fields(k.Doc)))], " ")
		if !strings.Contains(table, want) || !strings.Contains(table, firstWords) {
			t.Errorf("mailroom.toml(5): key %s not documented under its table as %q followed by %q", k.Name, want, firstWords)
		}
	}

	// man-db's whatis(1) and apropos(1) read the NAME line with lexgrog.
	lexgrog := mailtest.NeedTool(t, "lexgrog")
	dir := t.TempDir()
	for name, page := range map[string]string{"mailroom.8": page8, "mailroom.toml.5": page5} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(lexgrog, p).CombinedOutput()
		if want := strings.TrimSuffix(strings.TrimSuffix(name, ".8"), ".5") + " - "; err != nil || !strings.Contains(string(out), want) {
			t.Errorf("lexgrog %s: %v %q, want a NAME line %q", name, err, out, want)
		}
	}

	if out, code := cli(t, "", "manpage", "nosuch.1"); code != exitUsage || !strings.Contains(out, "mailroom.toml.5") {
		t.Errorf("manpage nosuch.1: %d %q", code, out)
	}
}

// TestRoff: text that roff would take as a request or an escape is
// written as text.
func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		".forward files":   `\&.forward files`,
		"'quoted":          `\&'quoted`,
		`a\b`:              `a\eb`,
		"plain text":       "plain text",
		"mid.dle and 'q' ": "mid.dle and 'q' ",
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
	if got := roffOpt("check -repair [-from BACKUP]"); got != `\fBcheck\fR \fB\-repair\fR [\fB\-from\fR \fIBACKUP]\fR` {
		t.Errorf("roffOpt: %q", got)
	}
}
