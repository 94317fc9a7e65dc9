package config

import (
	"embed"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"regexp"
	"strings"
	"sync"
)

// The configuration's own source is the documentation of its keys: the
// doc comment of each struct field (as mox derives its config docs from
// its config structs), so that mailroom.toml(5) and `mailroom help
// config` cannot drift from the code that reads the file.
//
//go:embed *.go
var sources embed.FS

// fieldDocs maps "Type.Field" (and "Type" for a struct type) to its doc
// comment, from the embedded source.
var fieldDocs = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	files, _ := fs.Glob(sources, "*.go")
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := sources.ReadFile(name)
		if err != nil {
			continue
		}
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		if err != nil {
			continue // cannot happen: the package compiled
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				typeDoc := ts.Doc
				if typeDoc == nil && len(gd.Specs) == 1 {
					typeDoc = gd.Doc
				}
				if typeDoc != nil {
					out[ts.Name.Name] = typeDoc.Text()
				}
				// A field without a comment of its own shares the one
				// above it if that names it ("Before and After are ...").
				shared := ""
				for _, fld := range st.Fields.List {
					text := ""
					switch {
					case fld.Doc != nil:
						text = fld.Doc.Text()
					case fld.Comment != nil:
						text = fld.Comment.Text()
					case len(fld.Names) == 1 && regexp.MustCompile(`\b`+fld.Names[0].Name+`\b`).MatchString(shared):
						text = shared
					}
					shared = text
					for _, n := range fld.Names {
						out[ts.Name.Name+"."+n.Name] = text
					}
				}
			}
		}
	}
	return out
})

// keyDoc is the documentation of the key held by field f of struct type
// t: the field's comment, else (for a table) its type's, with Go's names
// for keys of the same struct replaced by the file's ("MaxRecipients per
// message" becomes "max_recipients per message").
func keyDoc(t reflect.Type, f reflect.StructField) string {
	docs := fieldDocs()
	text := docs[t.Name()+"."+f.Name]
	if text == "" {
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		text = docs[ft.Name()]
	}
	names := map[string]string{}
	for i := range t.NumField() {
		g := t.Field(i)
		if tag, _, _ := strings.Cut(g.Tag.Get("toml"), ","); tag != "" && tag != "-" {
			names[g.Name] = tag
		}
	}
	text = normalizeDoc(text)
	// The first word names the key being described; further on, only a
	// key's description speaks of its siblings by their Go names (a
	// table's description speaks of Sieve or TLS, which are not keys),
	// and "User=" is systemd's.
	if tag, _, _ := strings.Cut(f.Tag.Get("toml"), ","); strings.HasPrefix(text, f.Name) {
		text = tag + strings.TrimPrefix(text, f.Name)
	}
	if isTable(f.Type) {
		// "imap is the [imap] table: its listeners..." says no more
		// under the table's heading than "Its listeners...".
		if m := tableIntroRE.FindString(text); m != "" {
			text = strings.TrimPrefix(text, m)
			if text != "" {
				text = strings.ToUpper(text[:1]) + text[1:]
			}
		}
		return text
	}
	return goNameRE.ReplaceAllStringFunc(text, func(w string) string {
		if n, ok := names[strings.TrimSuffix(w, "=")]; ok && !strings.HasSuffix(w, "=") {
			return n
		}
		return w
	})
}

var tableIntroRE = regexp.MustCompile(`^\S+ (is|are) the \[\[?[a-z_]+\]\]? table(: |\.\s*|$)`)

var goNameRE = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*\b=?`)

// normalizeDoc joins the comment's lines into paragraphs separated by
// one blank line, each on one line.
func normalizeDoc(text string) string {
	var paras []string
	for _, p := range strings.Split(text, "\n\n") {
		if p = strings.Join(strings.Fields(p), " "); p != "" {
			paras = append(paras, p)
		}
	}
	return strings.Join(paras, "\n\n")
}
