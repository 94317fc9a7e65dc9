package alias

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"mailroom/internal/address"
)

// Limits that keep a damaged or hostile file from costing more than a
// clear error.
const (
	// MaxLineLen bounds one physical line. Longer lines are an error
	// (and the rest of such a line is skipped, not held in memory).
	MaxLineLen = 64 << 10
	// maxErrors stops collecting syntax errors: a binary file would
	// otherwise give one per line.
	maxErrors = 20
)

// Table is a parsed aliases file. It is immutable once parsed, so one
// Table can serve concurrent expansions; reloading builds a new one.
type Table struct {
	file    string
	entries map[string]*entry // key: lower-case name
}

type entry struct {
	targets []Target
	src     Source
}

// errList collects syntax errors up to maxErrors.
type errList struct {
	file string
	errs []error
	full bool
}

func (l *errList) add(line int, format string, args ...any) {
	if l.full {
		return
	}
	if len(l.errs) == maxErrors {
		l.errs = append(l.errs, &ParseError{File: l.file, Line: line, Msg: "too many errors; stopped looking for more"})
		l.full = true
		return
	}
	l.errs = append(l.errs, &ParseError{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (l *errList) err() error { return errors.Join(l.errs...) }

// lineReader yields physical lines with their numbers. A line longer than
// MaxLineLen is reported once and skipped without buffering it.
type lineReader struct {
	br   *bufio.Reader
	n    int
	errs *errList
}

// next returns the next line without its end-of-line, ok=false at EOF.
// A read error other than EOF is returned as err.
func (lr *lineReader) next() (line string, ok bool, err error) {
	for {
		var buf []byte
		long := false
		for {
			frag, isPrefix, err := lr.br.ReadLine()
			if err == io.EOF {
				if buf == nil && !long {
					return "", false, nil
				}
				break
			}
			if err != nil {
				return "", false, err
			}
			if !long {
				if len(buf)+len(frag) > MaxLineLen {
					long = true
					buf = nil
				} else {
					buf = append(buf, frag...)
				}
			}
			if !isPrefix {
				break
			}
		}
		lr.n++
		if lr.n == 1 {
			// A byte order mark would otherwise become part of the
			// first alias name, silently.
			buf = bytes.TrimPrefix(buf, []byte("\ufeff"))
		}
		if long {
			lr.errs.add(lr.n, "line longer than %d bytes; split it with continuation lines (start them with white space)", MaxLineLen)
			continue
		}
		if buf == nil {
			buf = []byte{}
		}
		return string(buf), true, nil
	}
}

// checkText reports why a line cannot be text: the first sign of a binary
// or damaged file.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "line is not valid UTF-8 (is this a binary file?)"
	}
	for _, r := range s {
		if r == 0 {
			return "line contains a NUL byte (is this a binary file?)"
		}
		if r != '\t' && unicode.IsControl(r) {
			return fmt.Sprintf("line contains the control character %q; remove it", r)
		}
	}
	return ""
}

// Parse reads an aliases file in aliases(5) syntax:
//
//	# comment
//	postmaster: root              # a bare name: every local domain
//	sales@example.org: alice, bob # this address only
//	team: alice,
//	    "|/usr/local/bin/ticket --queue team",  # continuation line
//	    "/var/mail/team archive", :include:/etc/mailroom/team.list
//	@example.org: catchall        # unknown users of example.org
//
// file names the file in errors. Syntax errors are *ParseError values,
// several joined with errors.Join; on any error the table is nil, so that a
// reload keeps the old one in force. An alias defined twice is an error
// naming both lines (Postfix warns and uses the first; an error makes the
// administrator choose).
func Parse(r io.Reader, file string) (*Table, error) {
	errs := &errList{file: file}
	lr := &lineReader{br: bufio.NewReaderSize(r, 4096), errs: errs}
	t := &Table{file: file, entries: map[string]*entry{}}
	var cur *entry // the entry continuation lines add to
	var curKey string
	bad := false // cur had an error: its continuation lines are still checked
	finish := func() {
		if cur != nil && !bad && len(cur.targets) == 0 {
			errs.add(cur.src.Line, "alias %q has no targets; add them after the colon, separated by commas", curKey)
		}
		cur, bad = nil, false
	}
	for {
		line, ok, err := lr.next()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		if !ok {
			break
		}
		n := lr.n
		if msg := checkText(line); msg != "" {
			errs.add(n, "%s", msg)
			if line[0] != ' ' && line[0] != '\t' {
				finish() // a new logical line, and a bad one
			}
			bad = true
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil && !bad {
				errs.add(n, "continuation line (starts with white space) without an alias before it; remove the leading white space")
				bad = true
				continue
			}
			if cur == nil {
				continue
			}
			ts, perr := parseTargets(trimmed, file, n)
			for _, pe := range perr {
				errs.add(n, "%s", pe)
				bad = true
			}
			cur.targets = append(cur.targets, ts...)
			continue
		}
		finish()
		name, rest, msg := splitName(line)
		if msg != "" {
			errs.add(n, "%s", msg)
			bad = true
			continue
		}
		key, msg := checkName(name)
		if msg != "" {
			errs.add(n, "%s", msg)
			bad = true
			continue
		}
		e := &entry{src: Source{File: file, Line: n}}
		if prev, dup := t.entries[key]; dup {
			errs.add(n, "alias %q is already defined at line %d; merge the two into one entry", key, prev.src.Line)
			bad = true
			cur, curKey = e, key // check its targets, but keep the first
		} else {
			t.entries[key] = e
			cur, curKey = e, key
		}
		ts, perr := parseTargets(rest, file, n)
		for _, pe := range perr {
			errs.add(n, "%s", pe)
			bad = true
		}
		e.targets = append(e.targets, ts...)
	}
	finish()
	if err := errs.err(); err != nil {
		return nil, err
	}
	return t, nil
}

// splitName splits "name: rest". The name may be double-quoted.
func splitName(line string) (name, rest, msg string) {
	if line[0] == '"' {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return "", "", "unterminated quote in the alias name; add the closing \""
		}
		name = line[1 : 1+end]
		after := strings.TrimLeft(line[2+end:], " \t")
		if !strings.HasPrefix(after, ":") {
			return "", "", fmt.Sprintf("missing ':' after the alias name %q; write it as \"name: target, target\"", short(name))
		}
		return name, after[1:], ""
	}
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", "", fmt.Sprintf("missing ':' after the alias name in %q; write it as \"name: target, target\"", short(line))
	}
	name = strings.TrimRight(line[:i], " \t")
	if name == "" {
		return "", "", "empty alias name before ':'; write it as \"name: target, target\""
	}
	return name, line[i+1:], ""
}

// checkName validates an alias name and returns its lookup key.
func checkName(name string) (key, msg string) {
	switch {
	case strings.HasPrefix(name, "@"):
		d, err := address.NormalizeDomain(name[1:])
		if err != nil {
			return "", fmt.Sprintf("bad catch-all %q: %v; write it as \"@example.org\"", short(name), err)
		}
		return "@" + d, ""
	case strings.Contains(name, "@"):
		a, err := address.Parse(name)
		if err != nil {
			return "", fmt.Sprintf("bad alias name: %v", err)
		}
		return a.Key(), ""
	}
	if err := address.CheckLocal(name); err != nil {
		return "", fmt.Sprintf("bad alias name %q: %v", short(name), err)
	}
	return strings.ToLower(name), ""
}

// short truncates s for an error message.
func short(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// parseTargets splits one physical line's worth of targets. It returns the
// good targets and a message per bad one.
func parseTargets(s, file string, line int) ([]Target, []string) {
	var ts []Target
	var msgs []string
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == ',':
			i++
			continue
		case c == '#':
			return ts, msgs // comment to the end of the line
		}
		var raw string
		quoted := c == '"'
		if quoted {
			val, n, msg := unquote(s[i:])
			if msg != "" {
				msgs = append(msgs, msg)
				return ts, msgs
			}
			raw = val
			i += n
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			if j < len(s) && s[j] != ',' && s[j] != '#' {
				msgs = append(msgs, fmt.Sprintf("unexpected text after the closing quote of %q; separate targets with commas", short(raw)))
				return ts, msgs
			}
			i = j
		} else {
			j := i
			for j < len(s) && s[j] != ',' {
				// " #" starts a comment.
				if (s[j] == ' ' || s[j] == '\t') && strings.HasPrefix(strings.TrimLeft(s[j:], " \t"), "#") {
					break
				}
				j++
			}
			raw = strings.TrimRight(s[i:j], " \t")
			i = j
			if strings.ContainsRune(raw, '"') {
				msgs = append(msgs, fmt.Sprintf("quote in the middle of target %q; quote the whole target, as in \"|/usr/bin/cmd arg\"", short(raw)))
				continue
			}
		}
		t, msg := classify(raw, quoted)
		if msg != "" {
			msgs = append(msgs, msg)
			continue
		}
		t.Source = Source{File: file, Line: line}
		ts = append(ts, t)
	}
	return ts, msgs
}

// unquote reads a double-quoted string at the start of s, with \" and \\
// escapes, and returns its value and the bytes consumed.
func unquote(s string) (val string, n int, msg string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), i + 1, ""
		case '\\':
			if i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return "", 0, fmt.Sprintf("unterminated quote in %q; add the closing \" (a quoted target cannot span lines)", short(s))
}

// classify turns one target's text into a Target.
func classify(v string, quoted bool) (Target, string) {
	hasSpace := strings.ContainsAny(v, " \t")
	switch {
	case v == "":
		return Target{}, "empty quoted target; remove the \"\""
	case v[0] == '|':
		cmd := strings.TrimSpace(v[1:])
		if cmd == "" {
			return Target{}, "empty command after '|'; write it as \"|/path/to/command args\""
		}
		return Target{Kind: Pipe, Value: cmd}, ""
	case len(v) >= 9 && strings.EqualFold(v[:9], ":include:"):
		p := strings.TrimSpace(v[9:])
		if !quoted && strings.ContainsAny(p, " \t") {
			return Target{}, fmt.Sprintf("white space in include path %q; quote the whole target: \":include:/path with space\"", short(p))
		}
		if msg := checkPath(p, "include file"); msg != "" {
			return Target{}, msg
		}
		return Target{Kind: Include, Value: p}, ""
	case v[0] == '/':
		if !quoted && hasSpace {
			return Target{}, fmt.Sprintf("white space in file target %q; quote it: \"/path with space\"", short(v))
		}
		if msg := checkPath(v, "file target"); msg != "" {
			return Target{}, msg
		}
		return Target{Kind: File, Value: v}, ""
	}
	if hasSpace {
		if quoted {
			return Target{}, fmt.Sprintf("bad target %q: an address cannot contain white space", short(v))
		}
		return Target{}, fmt.Sprintf("white space inside target %q; separate targets with commas (pipes and files with spaces go in double quotes)", short(v))
	}
	noExpand := false
	if v[0] == '\\' {
		noExpand = true
		v = v[1:]
		if v == "" {
			return Target{}, "empty name after '\\'; write it as \\alice"
		}
	}
	if strings.Contains(v, "/") || v[0] == '~' {
		return Target{}, fmt.Sprintf("bad target %q: a file target must be an absolute path (start with /)", short(v))
	}
	if strings.ContainsRune(v, ':') {
		return Target{}, fmt.Sprintf("bad target %q: ':' is not allowed in an address (an include is written :include:/path; .forward files have no alias names)", short(v))
	}
	if strings.HasPrefix(v, "@") {
		return Target{}, fmt.Sprintf("bad target %q: a target must be a user or an address, not a whole domain", short(v))
	}
	if strings.Contains(v, "@") {
		a, err := address.Parse(v)
		if err != nil {
			return Target{}, fmt.Sprintf("bad target: %v", err)
		}
		return Target{Kind: Address, Value: a.String(), NoExpand: noExpand}, ""
	}
	if err := address.CheckLocal(v); err != nil {
		return Target{}, fmt.Sprintf("bad target %q: %v", short(v), err)
	}
	return Target{Kind: Address, Value: v, NoExpand: noExpand}, ""
}

// MaxPathLen bounds file and include paths (Linux PATH_MAX).
const MaxPathLen = 4096

// checkPath accepts only absolute, clean paths: a path with ".." elements
// is refused rather than cleaned, since it usually means a mistake or an
// attempt to reach outside a directory that a reviewer would trust.
func checkPath(p, what string) string {
	switch {
	case p == "":
		return fmt.Sprintf("empty %s path; write an absolute path", what)
	case len(p) > MaxPathLen:
		return fmt.Sprintf("%s path longer than %d bytes", what, MaxPathLen)
	case p[0] != '/':
		return fmt.Sprintf("%s %q is not an absolute path; start it with /", what, short(p))
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Sprintf("%s %q has a '..' element; write the path without it", what, short(p))
		}
	}
	if strings.HasSuffix(p, "/") && p != "/" {
		return fmt.Sprintf("%s %q ends in '/'; name a file, not a directory", what, short(p))
	}
	if c := path.Clean(p); c != p || p == "/" {
		if p == "/" {
			return fmt.Sprintf("%s %q is a directory; name a file", what, p)
		}
		return fmt.Sprintf("%s %q is not a clean path; write it as %q", what, short(p), short(c))
	}
	return ""
}

// Load parses the aliases file at path; an empty path gives an empty
// table (no aliases configured).
func Load(path string) (*Table, error) {
	if path == "" {
		return &Table{entries: map[string]*entry{}}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// File is the path the table was parsed from ("" for none).
func (t *Table) File() string {
	if t == nil {
		return ""
	}
	return t.file
}

// Names returns every alias name in lower case, sorted: bare names
// ("postmaster"), addresses ("sales@example.org") and catch-alls
// ("@example.org").
func (t *Table) Names() []string {
	if t == nil {
		return nil
	}
	names := make([]string, 0, len(t.entries))
	for k := range t.entries {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the targets of the alias name (case-insensitive, written
// as in the file: "postmaster", "sales@example.org" or "@example.org") and
// the line that defines it. The slice is shared; do not modify it.
func (t *Table) Lookup(name string) (targets []Target, src Source, ok bool) {
	if t == nil {
		return nil, Source{}, false
	}
	e, ok := t.entries[strings.ToLower(name)]
	if !ok {
		return nil, Source{}, false
	}
	return e.targets, e.src, true
}

// Defines reports whether the table has an alias for a itself: a.Key() or
// its bare local part (a catch-all does not count). `mailroom check` uses
// it to warn about a local domain without postmaster.
func (t *Table) Defines(a address.Address) bool {
	if t == nil {
		return false
	}
	_, full := t.entries[a.Key()]
	_, bare := t.entries[strings.ToLower(a.Local)]
	return full || bare
}

// ParseForward reads a .forward file (also the syntax of :include:
// files): targets separated by commas or newlines, `#` comments, no alias
// names. An empty or comment-only file gives no targets, which means
// normal delivery. On syntax errors it returns the targets it could parse
// together with the errors (*ParseError, joined), so that a caller may
// deliver to the good ones; callers that want all-or-nothing ignore the
// targets.
func ParseForward(r io.Reader, file string) ([]Target, error) {
	errs := &errList{file: file}
	lr := &lineReader{br: bufio.NewReaderSize(r, 4096), errs: errs}
	var ts []Target
	for {
		line, ok, err := lr.next()
		if err != nil {
			return ts, fmt.Errorf("read %s: %w", file, err)
		}
		if !ok {
			break
		}
		if msg := checkText(line); msg != "" {
			errs.add(lr.n, "%s", msg)
			continue
		}
		got, msgs := parseTargets(strings.TrimSpace(line), file, lr.n)
		for _, m := range msgs {
			errs.add(lr.n, "%s", m)
		}
		ts = append(ts, got...)
	}
	return ts, errs.err()
}
