package imap

import (
	"strings"
	"unicode/utf8"
)

// delim separates hierarchy levels in folder names (mailbox.Folder.Name).
const delim = '/'

// maxNameLen bounds a folder name in bytes.
const maxNameLen = 512

// checkName validates a mailbox name from a client and returns it with
// INBOX in its canonical spelling (RFC 9051 §5.1: INBOX is case-
// insensitive). Names that are not valid UTF-8, contain NUL or other
// control characters, have empty, "." or ".." levels, or start or end with
// the delimiter are refused before the store sees them.
func checkName(name string) (string, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return "", errBadName
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", errBadName
		}
	}
	parts := strings.Split(name, string(delim))
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return "", errBadName
		}
	}
	if strings.EqualFold(parts[0], "INBOX") {
		name = "INBOX" + name[len(parts[0]):]
	}
	return name, nil
}
