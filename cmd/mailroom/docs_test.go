package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailroom/config"
	"mailroom/internal/mailtest"
)

// codeBlock is a fenced block of a Markdown file.
type codeBlock struct {
	lang, text string
	line       int
}

func codeBlocks(t *testing.T, path string) []codeBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []codeBlock
	var cur *codeBlock
	for i, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &codeBlock{lang: strings.TrimPrefix(trimmed, "```"), line: i + 2}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += trimmed + "\n"
		}
	}
	return out
}

// shellWords splits a shell line into words, quotes kept together
// (without them), up to a comment.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	quote := byte(0)
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == '#' && !in:
			return words
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// mailroomCommands finds the mailroom command lines in a shell block:
// the words after "mailroom" where it stands as a command, up to the end
// of that command.
func mailroomCommands(block string) [][]string {
	var out [][]string
	block = strings.ReplaceAll(block, "\\\n", " ")
	for _, line := range strings.Split(block, "\n") {
		words := shellWords(line)
		for i, w := range words {
			if w != "mailroom" && (!strings.HasSuffix(w, "/mailroom") || strings.Contains(w, "=")) {
				continue
			}
			atCommand := i == 0 || slices.Contains([]string{";", "&&", "||", "|", "--", "$("}, words[i-1]) || strings.HasSuffix(words[i-1], ";")
			if !atCommand {
				continue
			}
			var args []string
			for _, a := range words[i+1:] {
				if slices.Contains([]string{";", "&&", "||", "|", ">", ">>", "2>&1", ")"}, a) {
					break
				}
				if a, ok := strings.CutSuffix(a, ";"); ok {
					args = append(args, a)
					break
				}
				args = append(args, a)
			}
			out = append(out, args)
		}
	}
	return out
}

// TestAdminGuide: every mailroom command line in docs/ and the README
// names a command, an action and flags that exist, and every toml block
// is a configuration mailroom accepts, so that neither can drift from
// the program.
func TestAdminGuide(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(mailtest.ModuleRoot(t), "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	docs = append(docs, filepath.Join(mailtest.ModuleRoot(t), "README.md"))
	commandsSeen := 0
	for _, doc := range docs {
		for _, b := range codeBlocks(t, doc) {
			where := filepath.Base(doc) + ":" + strconv.Itoa(b.line)
			switch b.lang {
			case "toml":
				if _, err := config.Parse(doc, []byte(b.text)); err != nil {
					t.Errorf("%s: a toml block mailroom does not accept: %v\n%s", where, err, b.text)
				}
			case "sh":
				for _, args := range mailroomCommands(b.text) {
					commandsSeen++
					if msg := checkCommandLine(args); msg != "" {
						t.Errorf("%s: mailroom %s: %s", where, strings.Join(args, " "), msg)
					}
				}
			}
		}
	}
	t.Logf("%d mailroom command lines in docs/ and README.md", commandsSeen)
	if commandsSeen < 10 {
		t.Errorf("only %d mailroom command lines found in docs/: the parser is broken", commandsSeen)
	}
	// The checker itself.
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"user", "add", "a@example.org"}, true},
		{[]string{"user", "rename", "a@example.org"}, false},
		{[]string{"backup", "-verify", "DIR"}, true},
		{[]string{"backup", "-check", "DIR"}, false},
		{[]string{"frobnicate"}, false},
		{[]string{"manpage", "mailroom.8"}, true},
		{[]string{"manpage", "mailroom.1"}, false},
		{[]string{"check", "-repair", "-from", "/x"}, true},
		{[]string{"restore", "-config", "$scratch/mailroom.toml", "/x"}, true},
	} {
		if msg := checkCommandLine(c.args); (msg == "") != c.ok {
			t.Errorf("checkCommandLine(%q) = %q, want ok %v", c.args, msg, c.ok)
		}
	}
	if got := mailroomCommands("x=1; mailroom user list # all\nrunuser -u mailroom -- mailroom check -repair > out\njournalctl -u mailroom\n"); len(got) != 2 ||
		strings.Join(got[0], " ") != "user list" || strings.Join(got[1], " ") != "check -repair" {
		t.Errorf("mailroomCommands: %q", got)
	}
}

// checkCommandLine says what is wrong with "mailroom ARGS", or "".
func checkCommandLine(args []string) string {
	if len(args) == 0 {
		return "no command"
	}
	c := lookupCommand(args[0])
	if c == nil {
		return "no such command"
	}
	rest := args[1:]
	switch c.name {
	case "manpage":
		if len(rest) != 1 || manPages()[rest[0]] == nil {
			return "no such page"
		}
	case "help":
		if len(rest) > 0 && rest[0] != "config" && lookupCommand(rest[0]) == nil {
			return "no help for that"
		}
	}
	if len(c.actions) > 0 {
		if len(rest) == 0 || !slices.ContainsFunc(c.actions, func(a action) bool { return strings.Fields(a.usage)[0] == rest[0] }) {
			return "no such action"
		}
	}
	sets := c.flagSets()
	for _, a := range rest {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.ContainsFunc(sets, func(fs *flag.FlagSet) bool { return fs.Lookup(name) != nil }) {
			return "no flag -" + name
		}
	}
	return ""
}
