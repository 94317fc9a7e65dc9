//go:build !linux

package sievestore

// openScriptDir opens home's script directory for the signature checks
// of a delivery; without openat2 each check goes through os.Root.
func (s *Store) openScriptDir(home string) scriptDir { return scriptDir{s: s, home: home, fd: -1} }

// sig is the signature of the file name in the directory.
func (d scriptDir) sig(name string) fileSig { return d.s.signature(scriptDirPath(d.home, name)) }

// close releases the directory.
func (d scriptDir) close() {}
