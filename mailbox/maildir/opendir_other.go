//go:build !linux

package maildir

import "os"

// openDir opens dir, a path relative to the mail root, refusing any path
// that would leave the root.
func (s *Store) openDir(dir string) (*os.File, error) { return s.root.Open(dir) }
