package maildir

import "runtime"

func waitABit() { runtime.Gosched() }
