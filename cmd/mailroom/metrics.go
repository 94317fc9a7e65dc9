package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"mailroom/internal/listen"
	"mailroom/internal/metrics"
)

// withMetrics returns the Metrics of [metrics] and log counting into
// them, or nil and log itself when [metrics] listen is not set.
func withMetrics(listenAddr string, log *slog.Logger) (*metrics.Metrics, *slog.Logger) {
	if listenAddr == "" {
		return nil, log
	}
	m := metrics.New(metrics.Options{Version: version()})
	return m, slog.New(m.Log(log.Handler()))
}

// addMetrics serves [metrics] listen: GET /metrics and GET /healthz.
func (svc *services) addMetrics(a *app) error {
	if a.metrics == nil {
		return nil
	}
	srv := metrics.NewServer(metrics.ServerOptions{
		Metrics: a.metrics,
		Queue:   a.queueStats,
		Panics:  a.panics.Count,
		Health:  a.health,
		Logger:  a.log,
	})
	if a.certs != nil {
		a.metrics.CertificateExpiry(a.certs.NotAfter)
	}
	svc.servers = append(svc.servers, srv)
	return svc.add(a.cfg.Metrics.Listen, "metrics", listen.UnixOptions{}, srv.Serve)
}

// queueStats counts the outgoing queue for a scrape.
func (a *app) queueStats() (metrics.QueueStats, error) {
	var st metrics.QueueStats
	if a.queue == nil {
		return st, nil
	}
	list, err := a.queue.List()
	if err != nil {
		return st, err
	}
	for _, m := range list {
		st.Messages++
		if m.Held {
			st.Held++
			continue
		}
		if st.Oldest.IsZero() || m.Created.Before(st.Oldest) {
			st.Oldest = m.Created
		}
		for _, rc := range m.Rcpts {
			if rc.State == "pending" {
				st.Pending++
			}
		}
	}
	return st, nil
}

// health is GET /healthz: the database answers a read, and data_dir's
// file system has room (full, every delivery gets 452).
func (a *app) health(ctx context.Context) error {
	if err := a.dbAlive(ctx); err != nil {
		return err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(a.cfg.DataDir, &fs); err != nil {
		return fmt.Errorf("data_dir %s: %w", a.cfg.DataDir, err)
	}
	if fs.Bavail == 0 {
		return fmt.Errorf("data_dir %s: %w", a.cfg.DataDir, errDiskFull)
	}
	return nil
}

// dbAlive reports whether the database answers a read before ctx ends.
func (a *app) dbAlive(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		done <- a.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func([]byte, *bolt.Bucket) error { return nil })
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("database %s: %w", a.db.Path(), err)
		}
	case <-ctx.Done():
		return fmt.Errorf("database %s: no answer to a read in time", a.db.Path())
	}
	return nil
}

// errDiskFull: data_dir's file system has no block left for mailroom.
var errDiskFull = errors.New("the file system is full: mail is refused with 452 until there is room")
