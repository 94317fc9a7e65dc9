//go:build !linux

package maildir

import (
	"errors"
	"io/fs"
	"os"
)

// readNames lists the directory d from where it was seeked to (its
// start); a directory removed meanwhile is empty.
func readNames(d *os.File) ([]string, error) {
	names, err := d.Readdirnames(-1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}
