//go:build !linux

package maildir

import (
	"errors"
	"os"
)

// openDir opens dir, a path relative to the mail root, refusing any path
// that would leave the root.
func (s *Store) openDir(dir string) (*os.File, error) { return s.root.Open(dir) }

var errNoOpenat2 = errors.New("openat2 unavailable")

// openat2Dir is openat2 where there is one; here the caller uses os.Root.
func (s *Store) openat2Dir(*os.File, string) (*os.File, error) { return nil, errNoOpenat2 }
