package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

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

// sdWatchdog feeds systemd's watchdog (WatchdogSec= in the unit: it
// sets $WATCHDOG_USEC) at half its interval until ctx ends, each time
// once the database has answered a read: a serve wedged on it, or
// stuck altogether, stops feeding it, and systemd kills and restarts
// it (Restart=on-failure). A full disk is no reason to restart, so it
// is only /healthz's business.
func sdWatchdog(ctx context.Context, a *app) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn("systemd watchdog not fed", "err", err)
		return
	}
	if interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, interval/2)
		err := a.dbAlive(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error("not feeding systemd's watchdog: the database does not answer", "err", err)
			}
			continue
		}
		sdNotify(a.log, daemon.SdNotifyWatchdog)
	}
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
