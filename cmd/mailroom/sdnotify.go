package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// systemd's service manager learns from these messages (sd_notify(3),
// through $NOTIFY_SOCKET; nothing happens without it) when serve is ready
// (Type=notify: units ordered after mailroom start only then, and a
// failed start is seen as one), reloading after SIGHUP, and stopping.
// github.com/coreos/go-systemd/v22's daemon package does the sending: it
// is what Go programs use for this, handles abstract socket names, and
// its activation package is there for socket activation later; the
// protocol is small enough to write, but not worth a second copy.

// sdReady says serve has every listener open and handles SIGHUP, with a
// status line for `systemctl status`.
func sdReady(log *slog.Logger, domains []string) {
	sdNotify(log, daemon.SdNotifyReady+"\nSTATUS=serving "+strings.Join(domains, ", "))
}

// sdReloading says a SIGHUP reload has begun; sdReady ends it. The
// monotonic time stamp is what Type=notify-reload (systemd 253) requires
// and older versions ignore.
func sdReloading(log *slog.Logger) {
	var ts unix.Timespec
	msg := daemon.SdNotifyReloading
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Nano()/1000)
	}
	sdNotify(log, msg)
}

// sdStopping says the two-phase shutdown has begun.
func sdStopping(log *slog.Logger) {
	sdNotify(log, daemon.SdNotifyStopping+"\nSTATUS=shutting down")
}

func sdNotify(log *slog.Logger, state string) {
	// The environment is kept: serve notifies more than once.
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}

// domains are the local domains in force: as last reloaded, else as
// started.
func (a *app) domains() []string {
	if a.reloaded != nil {
		return a.reloaded.Domains
	}
	return a.cfg.Domains
}
