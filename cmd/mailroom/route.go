package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"mailroom/internal/ctl"
	"mailroom/mda"
	"mailroom/mda/alias"
)

type routeArgs struct {
	Address string `json:"address"`
}

type routeResult struct {
	Tree        string `json:"tree"`
	Deliverable bool   `json:"deliverable"`
}

// opRoute expands an address exactly as a delivery would (the running
// server's aliases table, the .forward files as they are now) and prints
// the tree; nothing is delivered.
func opRoute(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[routeArgs](raw)
	if err != nil {
		return nil, err
	}
	rc, err := a.mda.Route(ctx, args.Address)
	switch {
	case errors.Is(err, mda.ErrBadAddress):
		return nil, &ctl.Error{Exit: exitDataErr, Msg: err.Error()}
	case errors.Is(err, mda.ErrNotLocal):
		return routeResult{Tree: args.Address + " (remote: handed to the queue)\n", Deliverable: true}, nil
	case errors.Is(err, mda.ErrNoSuchUser):
		return nil, &ctl.Error{Exit: exitNoUser, Msg: err.Error()}
	case err != nil:
		return nil, err
	}
	var b strings.Builder
	if err := rc.Route.Format(&b); err != nil {
		return nil, err
	}
	return routeResult{Tree: b.String(), Deliverable: rc.Route.Deliverable()}, nil
}

// cmdRoute is `mailroom route ADDRESS`.
func cmdRoute(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("route", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return withExit(exitUsage, errors.New("say which address: mailroom route ADDRESS"))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	var res routeResult
	if err := call(context.Background(), cfg, "route", routeArgs{Address: pos[0]}, nil, &res); err != nil {
		return err
	}
	fmt.Fprint(stdout, res.Tree)
	if !res.Deliverable {
		return withExit(exitNoUser, fmt.Errorf("%s is not deliverable", pos[0]))
	}
	return nil
}

// reloadAliases puts the aliases file in force again (SIGHUP). On an
// error the old table stays.
func reloadAliases(a *app) error {
	t, err := alias.Load(a.cfg.Delivery.Aliases)
	if err != nil {
		return fmt.Errorf("delivery.aliases: %w", err)
	}
	a.mda.SetAliases(t)
	if a.cfg.Delivery.Aliases != "" {
		a.log.Info("aliases file reloaded", "file", a.cfg.Delivery.Aliases, "aliases", len(t.Names()))
	}
	return nil
}
