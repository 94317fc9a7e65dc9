// Package listen opens the listeners named in the configuration: TCP
// "host:port" and "unix:/path" sockets with a mode and group, removing a
// stale socket left by a crashed server but never one a live server uses.
package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UnixOptions set the permissions of a unix socket.
type UnixOptions struct {
	Mode  os.FileMode // e.g. 0660
	Group string      // group name or number; "" keeps the process's group
}

// Listen opens addr: "unix:/path" or "host:port".
func Listen(addr string, uo UnixOptions) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return Unix(path, uo)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}

// Unix listens on a unix socket at path. A socket file already there is
// removed if nothing answers on it (a crashed server's); if a server
// answers, Unix fails rather than steal its address.
func Unix(path string, uo UnixOptions) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on unix:%s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on unix:%s: another server is already listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix:%s: %w", path, err)
	}
	// Closing the listener removes the file; a crash leaves it for the
	// next start to clean up.
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := setPerm(path, uo); err != nil {
		l.Close()
		return nil, fmt.Errorf("set permissions of unix:%s: %w", path, err)
	}
	return l, nil
}

func setPerm(path string, uo UnixOptions) error {
	if uo.Group != "" {
		gid, err := strconv.Atoi(uo.Group)
		if err != nil {
			g, lerr := user.LookupGroup(uo.Group)
			if lerr != nil {
				return fmt.Errorf("group %q: %w", uo.Group, lerr)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return err
		}
	}
	mode := uo.Mode
	if mode == 0 {
		mode = 0o660
	}
	return os.Chmod(path, mode)
}

// IsNoServer reports whether a dial error means nobody listens on the
// socket (missing file or connection refused), as opposed to a real fault.
func IsNoServer(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
}
