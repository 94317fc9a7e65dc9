package alias

import (
	"errors"
	"io"
	"os"
	"sort"

	"mailroom/internal/address"
)

// Table is a parsed aliases file. It is immutable once parsed, so one
// Table can serve concurrent expansions; reloading builds a new one.
type Table struct {
	file    string
	entries map[string]*entry // key: lower-case name
}

type entry struct {
	name    string // as written
	targets []Target
	src     Source
}

// Parse reads an aliases file in aliases(5) syntax. file names it in
// errors. Syntax errors are *ParseError values, several joined with
// errors.Join; on any error the table is nil, so that a reload keeps the
// old one in force.
func Parse(r io.Reader, file string) (*Table, error) {
	return nil, errors.New("alias: not implemented yet")
}

// Load parses the aliases file at path; an empty path gives an empty
// table (no aliases configured).
func Load(path string) (*Table, error) {
	if path == "" {
		return &Table{entries: map[string]*entry{}}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

// File is the path the table was parsed from ("" for none).
func (t *Table) File() string { return t.file }

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
// the line that defines it.
func (t *Table) Lookup(name string) (targets []Target, src Source, ok bool) {
	return nil, Source{}, false
}

// Defines reports whether the table has an alias for a itself: a.Key() or
// its bare local part (a catch-all does not count). `mailroom check` uses
// it to warn about a local domain without postmaster.
func (t *Table) Defines(a address.Address) bool {
	return false
}

// ParseForward reads a .forward file (also the syntax of :include:
// files): targets separated by commas or newlines, `#` comments. An empty
// or comment-only file gives no targets, which means normal delivery.
// On syntax errors it returns the targets it could parse together with the
// errors (*ParseError, joined), so that a caller may deliver to the good
// ones; callers that want all-or-nothing ignore the targets.
func ParseForward(r io.Reader, file string) ([]Target, error) {
	return nil, errors.New("alias: not implemented yet")
}
