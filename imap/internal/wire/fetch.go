package wire

import (
	"strconv"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
)

// FetchNames is what a FETCH response must echo that go-imap's
// FetchOptions does not keep: which of BODY and BODYSTRUCTURE were asked
// for, and the RFC 822 names of body sections (RFC822 is BODY[], and its
// response says RFC822).
type FetchNames struct {
	Body, BodyStructure bool
	Obsolete            map[*goimap.FetchItemBodySection]string
}

// FetchItems reads FETCH's items: a macro (ALL, FAST, FULL), one item,
// or a list of items (RFC 9051 §6.4.5).
func (d *Decoder) FetchItems() (*goimap.FetchOptions, *FetchNames, error) {
	o := &goimap.FetchOptions{}
	n := &FetchNames{}
	list, err := d.List(false, func() error {
		name, err := d.fetchAttName()
		if err != nil {
			return err
		}
		switch name {
		case "ALL", "FAST", "FULL":
			return syntaxf("FETCH macros cannot be in a list")
		}
		return d.fetchAtt(name, o, n)
	})
	if err != nil || list {
		return o, n, err
	}
	name, err := d.fetchAttName()
	if err != nil {
		return nil, nil, err
	}
	switch name {
	case "FULL":
		n.Body = true
		o.BodyStructure = &goimap.FetchItemBodyStructure{}
		fallthrough
	case "ALL":
		o.Envelope = true
		fallthrough
	case "FAST":
		o.Flags, o.InternalDate, o.RFC822Size = true, true, true
		return o, n, nil
	}
	return o, n, d.fetchAtt(name, o, n)
}

// fetchAttName reads an item's name up to its "[" or the next space.
func (d *Decoder) fetchAttName() (string, error) {
	s, err := d.readWhile(func(c byte) bool { return isAtomChar(c) && c != '[' }, "a FETCH item")
	return strings.ToUpper(s), err
}

func (d *Decoder) fetchAtt(name string, o *goimap.FetchOptions, n *FetchNames) error {
	obsolete := func(sec *goimap.FetchItemBodySection) {
		if n.Obsolete == nil {
			n.Obsolete = map[*goimap.FetchItemBodySection]string{}
		}
		n.Obsolete[sec] = name
		o.BodySection = append(o.BodySection, sec)
	}
	switch name {
	case "ENVELOPE":
		o.Envelope = true
	case "FLAGS":
		o.Flags = true
	case "INTERNALDATE":
		o.InternalDate = true
	case "RFC822.SIZE":
		o.RFC822Size = true
	case "UID":
		o.UID = true
	case "RFC822":
		obsolete(&goimap.FetchItemBodySection{})
	case "RFC822.HEADER":
		obsolete(&goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Peek: true})
	case "RFC822.TEXT":
		obsolete(&goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierText})
	case "BODYSTRUCTURE":
		n.BodyStructure = true
		o.BodyStructure = &goimap.FetchItemBodyStructure{Extended: true}
	case "BODY", "BODY.PEEK":
		if b, err := d.peek(); err != nil {
			return err
		} else if b != '[' {
			if name == "BODY.PEEK" {
				return syntaxf("Expected [ after BODY.PEEK")
			}
			n.Body = true
			if o.BodyStructure == nil {
				o.BodyStructure = &goimap.FetchItemBodyStructure{}
			}
			return nil
		}
		sec, err := d.section()
		if err != nil {
			return err
		}
		sec.Peek = name == "BODY.PEEK"
		if sec.Partial, err = d.partial(); err != nil {
			return err
		}
		o.BodySection = append(o.BodySection, sec)
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		part, err := d.binarySection()
		if err != nil {
			return err
		}
		if name == "BINARY.SIZE" {
			o.BinarySectionSize = append(o.BinarySectionSize, &goimap.FetchItemBinarySectionSize{Part: part})
			return nil
		}
		sec := &goimap.FetchItemBinarySection{Part: part, Peek: name == "BINARY.PEEK"}
		if sec.Partial, err = d.partial(); err != nil {
			return err
		}
		o.BinarySection = append(o.BinarySection, sec)
	default:
		return syntaxf("Unknown FETCH item %s", truncate(name))
	}
	return nil
}

// section reads "[" [section-spec] "]".
func (d *Decoder) section() (*goimap.FetchItemBodySection, error) {
	if err := d.Expect('[', "["); err != nil {
		return nil, err
	}
	sec := &goimap.FetchItemBodySection{}
	if ok, err := d.Maybe(']'); err != nil || ok {
		return sec, err
	}
	spec, err := d.Atom()
	if err != nil {
		return nil, syntaxf("Invalid section")
	}
	words := strings.Split(strings.ToUpper(spec), ".")
	for len(words) > 0 {
		k, err := strconv.ParseUint(words[0], 10, 32)
		if err != nil {
			break
		}
		if k == 0 {
			return nil, syntaxf("Invalid section: part numbers start at 1")
		}
		sec.Part = append(sec.Part, int(k))
		words = words[1:]
	}
	switch strings.Join(words, ".") {
	case "":
		if len(sec.Part) == 0 {
			return nil, syntaxf("Invalid section")
		}
	case "HEADER":
		sec.Specifier = goimap.PartSpecifierHeader
	case "TEXT":
		sec.Specifier = goimap.PartSpecifierText
	case "MIME":
		if len(sec.Part) == 0 {
			return nil, syntaxf("MIME needs a part number (RFC 9051 §6.4.5)")
		}
		sec.Specifier = goimap.PartSpecifierMIME
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		sec.Specifier = goimap.PartSpecifierHeader
		if err := d.SP(); err != nil {
			return nil, err
		}
		var names []string
		err := d.ExpectList(false, func() error {
			s, err := d.AString()
			names = append(names, s)
			return err
		})
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(strings.ToUpper(spec), ".NOT") {
			sec.HeaderFieldsNot = names
		} else {
			sec.HeaderFields = names
		}
	default:
		return nil, syntaxf("Invalid section %s", truncate(spec))
	}
	if err := d.Expect(']', "] after the section"); err != nil {
		return nil, err
	}
	return sec, nil
}

// binarySection reads "[" [section-part] "]" (RFC 3516).
func (d *Decoder) binarySection() ([]int, error) {
	if err := d.Expect('[', "["); err != nil {
		return nil, err
	}
	var part []int
	for {
		if ok, err := d.Maybe(']'); err != nil || ok {
			return part, err
		}
		if len(part) > 0 {
			if err := d.Expect('.', ". or ]"); err != nil {
				return nil, err
			}
		}
		k, err := d.Number()
		if err != nil {
			return nil, err
		}
		if k == 0 {
			return nil, syntaxf("Invalid section: part numbers start at 1")
		}
		part = append(part, int(k))
	}
}

// partial reads an optional "<" offset "." size ">".
func (d *Decoder) partial() (*goimap.SectionPartial, error) {
	if ok, err := d.Maybe('<'); err != nil || !ok {
		return nil, err
	}
	off, err := d.Number()
	if err != nil {
		return nil, err
	}
	if err := d.Expect('.', ". in <offset.size>"); err != nil {
		return nil, err
	}
	size, err := d.Number()
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, syntaxf("The size in <offset.size> must not be 0")
	}
	if err := d.Expect('>', "> after <offset.size"); err != nil {
		return nil, err
	}
	return &goimap.SectionPartial{Offset: int64(off), Size: int64(size)}, nil
}

// BodySectionName writes a body section's name as a FETCH response has
// it: BODY[...] with the origin of a partial fetch ("<0>"), or the RFC
// 822 name it was asked by.
func (e *Encoder) BodySectionName(sec *goimap.FetchItemBodySection, n *FetchNames) *Encoder {
	if name, ok := n.Obsolete[sec]; ok {
		return e.Atom(name)
	}
	e.Atom("BODY[").SectionPart(sec.Part)
	if sec.Specifier != goimap.PartSpecifierNone {
		if len(sec.Part) > 0 {
			e.Byte('.')
		}
		e.Atom(string(sec.Specifier))
		names := sec.HeaderFields
		if len(names) > 0 {
			e.Atom(".FIELDS")
		} else if names = sec.HeaderFieldsNot; len(names) > 0 {
			e.Atom(".FIELDS.NOT")
		}
		if len(names) > 0 {
			e.SP().Byte('(')
			for i, h := range names {
				if i > 0 {
					e.SP()
				}
				e.String(h)
			}
			e.Byte(')')
		}
	}
	e.Byte(']')
	if sec.Partial != nil {
		e.Byte('<').Number64(sec.Partial.Offset).Byte('>')
	}
	return e
}

// BinarySectionName writes BINARY[part], with "<origin>" for a partial
// fetch (RFC 3516 §4.2: "BINARY" section-binary ["<" number ">"]).
func (e *Encoder) BinarySectionName(sec *goimap.FetchItemBinarySection) *Encoder {
	e.Atom("BINARY[").SectionPart(sec.Part).Byte(']')
	if sec.Partial != nil {
		e.Byte('<').Number64(sec.Partial.Offset).Byte('>')
	}
	return e
}
