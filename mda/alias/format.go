package alias

import (
	"bufio"
	"io"
	"strings"
)

// Format writes the tree for `mailroom route`, one node per line, each
// with where its rule came from:
//
//	sales@example.org: alias (/etc/mailroom/aliases:3)
//	├── alice@example.org: .forward (/var/lib/mailroom/mail/example.org/alice/.forward)
//	│   ├── alice@example.org: mailbox example.org/alice (\, .forward:1)
//	│   └── carol@example.net: remote (.forward:2)
//	├── file /var/mail/sales (/etc/mailroom/aliases:3)
//	└── error: dave@example.org: no such user
func (n *Node) Format(w io.Writer) error {
	bw := bufio.NewWriter(w)
	n.format(bw, "", "")
	return bw.Flush()
}

func (n *Node) format(w *bufio.Writer, first, rest string) {
	w.WriteString(first)
	w.WriteString(n.describe())
	w.WriteByte('\n')
	for i, c := range n.Children {
		if i == len(n.Children)-1 {
			c.format(w, rest+"└── ", rest+"    ")
		} else {
			c.format(w, rest+"├── ", rest+"│   ")
		}
	}
}

// describe is one node's line, without the tree drawing.
func (n *Node) describe() string {
	var b strings.Builder
	var notes []string
	switch n.Kind {
	case Mailbox:
		b.WriteString(n.Address + ": mailbox")
		if n.Leaf != nil && n.Leaf.Home != "" {
			b.WriteString(" " + n.Leaf.Home)
		}
		notes = append(notes, viaNote(n.Via))
	case Remote:
		b.WriteString(n.Address + ": remote")
		if n.Via != ViaRemote {
			notes = append(notes, viaNote(n.Via))
		}
	case File:
		b.WriteString("file " + Target{Kind: File, Value: n.Value}.String())
	case Pipe:
		b.WriteString("pipe " + Target{Kind: Pipe, Value: n.Value}.String())
	case Include:
		b.WriteString("include " + n.Value)
		if n.Via == ViaDuplicate {
			b.WriteString(": duplicate, expanded above")
		}
	default:
		if n.Err != nil && n.Leaf != nil {
			// The error names the address.
			break
		}
		b.WriteString(n.Address)
		switch n.Via {
		case ViaNone:
		case ViaDuplicate:
			b.WriteString(": duplicate, expanded above")
		default:
			b.WriteString(": " + n.Via.String())
		}
	}
	if s := n.Source.String(); s != "" {
		notes = append(notes, s)
	}
	notes = slicesCompact(notes)
	if len(notes) > 0 && b.Len() > 0 {
		b.WriteString(" (" + strings.Join(notes, ", ") + ")")
	}
	if n.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString("error: " + oneLine(n.Err.Error()))
		if b.Len() > 0 && n.Kind == Address && n.Leaf != nil {
			if s := n.Source.String(); s != "" {
				b.WriteString(" (" + s + ")")
			}
		}
	}
	return b.String()
}

// slicesCompact drops empty notes.
func slicesCompact(s []string) []string {
	out := s[:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// oneLine keeps a multi-line error (joined parse errors) on one line.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

func viaNote(via Via) string {
	if via == ViaNoExpand {
		return "no expansion"
	}
	return via.String()
}
