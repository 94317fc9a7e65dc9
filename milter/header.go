package milter

import (
	"fmt"
	"slices"
	"strings"

	gomilter "github.com/emersion/go-milter"

	"mailroom/internal/msghdr"
)

// maxHeaderName bounds a field name a milter may add (RFC 5322 has no
// limit; a line does).
const maxHeaderName = 200

// editHeader applies one header modification of a milter to h, as
// libmilter defines them: smfi_addheader appends; smfi_insheader inserts
// at position HeaderIndex (0 is the top; past the end appends);
// smfi_chgheader replaces the HeaderIndex-th field of that name (counted
// from 1), deletes it when the value is empty, and appends it when there
// are fewer such fields. h is changed in place (the caller owns it), so
// that a milter's many modifications cost no copy of the header each.
func editHeader(h msghdr.Header, mod gomilter.ModifyAction) (msghdr.Header, error) {
	name := mod.HeaderName
	if name == "" || len(name) > maxHeaderName || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r > '~' || r == ':' }) {
		return h, fmt.Errorf("bad header field name %q", name)
	}
	value := strings.TrimLeft(strings.ReplaceAll(mod.HeaderValue, "\x00", ""), " \t")
	switch mod.Code {
	case gomilter.ActAddHeader:
		return append(h, msghdr.New(name, value)), nil
	case gomilter.ActInsertHeader:
		i := min(int(mod.HeaderIndex), len(h))
		return slices.Insert(h, i, msghdr.New(name, value)), nil
	case gomilter.ActChangeHeader:
		n := 0
		for i, f := range h {
			if !f.Is(name) {
				continue
			}
			if n++; uint32(n) != max(mod.HeaderIndex, 1) {
				continue
			}
			if value == "" {
				return slices.Delete(h, i, i+1), nil
			}
			h[i] = msghdr.New(f.Name, value)
			return h, nil
		}
		if value == "" {
			return h, nil
		}
		return append(h, msghdr.New(name, value)), nil
	}
	return h, fmt.Errorf("not a header modification: %q", mod.Code)
}
