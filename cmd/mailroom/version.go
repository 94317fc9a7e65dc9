package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the module version and VCS revision the binary was built
// from, as debug.ReadBuildInfo has them: "v1.2.3", or "(devel)" with
// "rev 0123456789ab, modified" when built from a checkout with VCS stamping
// (go build's default; -buildvcs=false leaves it out).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified, at string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		case "vcs.time":
			at = ", " + s.Value
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (rev %s%s%s)", rev[:min(12, len(rev))], at, modified)
	}
	return v
}

func cmdVersion(stdout io.Writer) error {
	fmt.Fprintf(stdout, "mailroom %s %s %s/%s\n", version(), strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH)
	return nil
}
