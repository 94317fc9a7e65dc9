package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Key describes one configuration key, as Keys lists them: what errors
// about a key say it expects, and what `mailroom help config` prints.
type Key struct {
	// Name is the dotted name: "limits.max_recipients".
	Name string
	// Type says what the key takes, as an error message would: "an
	// integer", "a list of strings".
	Type string
	// Default is the value in Default(), in TOML, "" where there is none.
	Default string
	// Table marks a table ([limits]) or an array of tables ([[dkim]]).
	Table bool
	// Doc says what the key does, from the doc comment of its field in
	// this package (paragraphs separated by a blank line), so that the
	// manual page is the code's own documentation.
	Doc string
}

var (
	durationType = reflect.TypeFor[Duration]()
)

// notKeys are keys that tables of a shared shape have but do not take,
// and why: Keys leaves them out (Validate refuses the first ones, and
// the MX never asks for AUTH).
var notKeys = map[string]string{
	"smtp.listen_tls":            "implicit TLS belongs to [submission]",
	"smtp.allow_insecure_auth":   "the MX role offers no AUTH",
	"imap.milters":               "milters filter SMTP only",
	"imap.milter_default_action": "milters filter SMTP only",
	"imap.milter_timeout":        "milters filter SMTP only",
}

// Keys lists every key the configuration file may set, in the order of
// the structs (tables after the keys of their parent).
func Keys() []Key {
	var out []Key
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		var tables []func()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			fv := v.Field(i)
			if f.Anonymous && tag == "" {
				walk(prefix, fv) // inline, as the decoder takes it
				continue
			}
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			name := prefix + tag
			if notKeys[name] != "" {
				continue
			}
			switch {
			case isTable(f.Type) && f.Type.Kind() == reflect.Struct:
				tables = append(tables, func() {
					out = append(out, Key{Name: name, Type: "a table ([" + name + "])", Table: true, Doc: keyDoc(t, f)})
					walk(name+".", fv)
				})
			case isTable(f.Type):
				tables = append(tables, func() {
					out = append(out, Key{Name: name, Type: "an array of tables ([[" + name + "]])", Table: true, Doc: keyDoc(t, f)})
					walk(name+".", reflect.New(f.Type.Elem()).Elem())
				})
			default:
				out = append(out, Key{Name: name, Type: describeType(f.Type), Default: tomlValue(fv), Doc: keyDoc(t, f)})
			}
		}
		for _, fn := range tables {
			fn()
		}
	}
	def := Default()
	def.Hostname = "" // the machine's, as its description says
	walk("", reflect.ValueOf(def).Elem())
	return out
}

// isTable says whether a field of type t is a table or an array of
// tables in the file.
func isTable(t reflect.Type) bool {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != durationType
}

func describeType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer { // optional, to tell unset from false or ""
		t = t.Elem()
	}
	if t == durationType {
		return `a duration such as "5m" or "90s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		elem := strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ")
		switch {
		case strings.HasPrefix(elem, "duration"):
			return "a list of durations"
		case elem == "true or false":
			return "a list of true or false"
		}
		return "a list of " + elem + "s"
	case reflect.Map:
		return "a table"
	}
	return t.String()
}

func tomlValue(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Type() == durationType {
		d := v.Interface().(Duration)
		if d.Duration == 0 {
			return ""
		}
		return fmt.Sprintf("%q", formatDuration(d))
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return ""
		}
		return fmt.Sprintf("%q", v.String())
	case reflect.Bool:
		return fmt.Sprint(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Int() == 0 {
			return ""
		}
		return fmt.Sprint(v.Int())
	case reflect.Slice:
		if v.Len() == 0 {
			return ""
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return ""
}

// formatDuration writes d in the largest unit that divides it ("5m",
// "4h", "120h"), as the configuration file would.
func formatDuration(d Duration) string {
	for _, u := range []struct {
		n time.Duration
		s string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d.Duration%u.n == 0 {
			return fmt.Sprintf("%d%s", d.Duration/u.n, u.s)
		}
	}
	return d.Duration.String()
}

// expected returns what key takes, or "".
func expected(key string) string {
	for _, k := range Keys() {
		if k.Name == key {
			return k.Type
		}
	}
	return ""
}

// closest returns the known key most like key (an unknown one), or "".
func closest(key string) string {
	best, bestD := "", 4 // suggest only near misses
	for _, k := range Keys() {
		if d := editDistance(key, k.Name); d < bestD {
			best, bestD = k.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tomlTypeNames turn the decoder's names for what the file holds into
// words.
var tomlTypeNames = map[string]string{
	"string": "a string", "int64": "an integer", "integer": "an integer", "float64": "a number", "float": "a number",
	"bool": "true or false", "boolean": "true or false", "slice": "a list", "array": "a list",
	"map": "a table", "table": "a table", "map[string]interface {}": "a table", "[]interface {}": "a list",
	"time.Time": "a date", "datetime": "a date",
}

var (
	incompatibleRE = regexp.MustCompile(`TOML value has type (\S+); destination has type`)
	mismatchRE     = regexp.MustCompile(`expected \S+ but found (\S+)`)
)

// typeError rewrites the decoder's message about a value of the wrong
// type for key into what the key expects.
func typeError(key, msg string) string {
	want := expected(key)
	if want == "" {
		return key + ": " + msg
	}
	got := ""
	for _, re := range []*regexp.Regexp{incompatibleRE, mismatchRE} {
		if m := re.FindStringSubmatch(msg); m != nil {
			got = tomlTypeNames[m[1]]
			if got == "" {
				got = m[1]
			}
		}
	}
	if got == "" {
		return fmt.Sprintf("%s: expected %s (%s)", key, want, msg)
	}
	return fmt.Sprintf("%s: expected %s, not %s", key, want, got)
}
