//go:build !linux

package maildir

// openTmpfile is O_TMPFILE where there is one; here the caller writes a
// named file in tmp/.
func openTmpfile(int) (int, error) { return -1, errNoTmpfile }

func linkTmpfile(int, int, string) error { return errNoTmpfile }
