package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"mailroom/account"
	"mailroom/internal/address"
	"mailroom/internal/ctl"
	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

// `mailroom sieve`: the administrator's view of a user's Sieve scripts,
// the same operations as ManageSieve's, through the running server or,
// without one, on the files directly.

type sieveArgs struct {
	User     string `json:"user"`
	Name     string `json:"name,omitempty"`
	Activate bool   `json:"activate,omitempty"`
	// Stored: check the user's active script rather than the body.
	Stored bool `json:"stored,omitempty"`
}

type sieveScript struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Size   int64  `json:"size"`
}

type sieveSource struct {
	Source string `json:"source"`
}

func cmdSieve(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("sieve", stderr)
	name := fs.String("name", "", "put: the script's name (default: FILE's base name without .sieve)")
	activate := fs.Bool("activate", false, "put: make the script active once stored")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return withExit(exitUsage, errors.New("say list, put, get, activate, deactivate, del or check"))
	}
	sub, pos := pos[0], pos[1:]
	nargs := map[string][2]int{"list": {1, 1}, "put": {2, 2}, "get": {2, 2}, "activate": {2, 2},
		"deactivate": {1, 1}, "del": {2, 2}, "check": {1, 2}}
	n, ok := nargs[sub]
	if !ok {
		return withExit(exitUsage, fmt.Errorf("unknown sieve command %q: say list, put, get, activate, deactivate, del or check", sub))
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		return withExit(exitUsage, fmt.Errorf("sieve %s: wrong number of arguments (mailroom help sieve)", sub))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	a := sieveArgs{User: pos[0]}
	switch sub {
	case "list":
		var list []sieveScript
		if err := call(ctx, cfg, "sieve.list", a, nil, &list); err != nil {
			return err
		}
		for _, s := range list {
			active := ""
			if s.Active {
				active = "\tACTIVE"
			}
			fmt.Fprintf(stdout, "%s\t%d%s\n", s.Name, s.Size, active)
		}
	case "get":
		a.Name = pos[1]
		var src sieveSource
		if err := call(ctx, cfg, "sieve.get", a, nil, &src); err != nil {
			return err
		}
		io.WriteString(stdout, src.Source)
	case "put", "check":
		file := ""
		if len(pos) == 2 {
			file = pos[1]
		}
		if sub == "put" {
			a.Name, a.Activate = *name, *activate
			if a.Name == "" {
				if file == "-" {
					return withExit(exitUsage, errors.New("sieve put from standard input needs -name"))
				}
				a.Name = strings.TrimSuffix(filepath.Base(file), ".sieve")
			}
		}
		var body io.Reader
		switch file {
		case "":
			a.Stored = true // check the user's scripts as delivery runs them
		case "-":
			body = stdin
			if sub == "check" {
				a.Name = "stdin"
			}
		default:
			if sub == "check" {
				a.Name = file
			}
			f, err := os.Open(file)
			if err != nil {
				return withExit(exitDataErr, err)
			}
			defer f.Close()
			body = f
		}
		if err := call(ctx, cfg, "sieve."+sub, a, body, nil); err != nil {
			return err
		}
		switch {
		case sub == "check":
			fmt.Fprintln(stdout, "ok")
		case a.Activate:
			fmt.Fprintf(stdout, "%s: %s stored and active\n", a.User, a.Name)
		default:
			fmt.Fprintf(stdout, "%s: %s stored\n", a.User, a.Name)
		}
	case "activate", "deactivate":
		if sub == "activate" {
			a.Name = pos[1]
		}
		if err := call(ctx, cfg, "sieve.activate", a, nil, nil); err != nil {
			return err
		}
		if a.Name == "" {
			fmt.Fprintf(stdout, "%s: no active script\n", a.User)
		} else {
			fmt.Fprintf(stdout, "%s: %s active\n", a.User, a.Name)
		}
	case "del":
		a.Name = pos[1]
		if err := call(ctx, cfg, "sieve.del", a, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s deleted\n", a.User, a.Name)
	}
	return nil
}

// sieveHome is the mail home of the account user names.
func sieveHome(ctx context.Context, a *app, user string) (string, error) {
	addr, err := address.Parse(user)
	if err != nil {
		return "", &ctl.Error{Exit: exitDataErr, Msg: fmt.Sprintf("%q: %v", user, err)}
	}
	acct, err := a.accounts.Lookup(ctx, addr)
	if errors.Is(err, account.ErrNotFound) {
		return "", &ctl.Error{Exit: exitNoUser, Msg: fmt.Sprintf("%s: no such account", user)}
	}
	if err != nil {
		return "", err
	}
	return acct.Home(), nil
}

// sieveError gives the script store's errors the exit status a script
// can act on, with the text ManageSieve would give.
func sieveError(err error) error {
	var se *sieve.Error
	var qe *sievestore.QuotaError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sievestore.ErrNoScript):
		return &ctl.Error{Exit: exitNoUser, Msg: err.Error()}
	case errors.As(err, &se), errors.As(err, &qe), errors.Is(err, sievestore.ErrBadName),
		errors.Is(err, sievestore.ErrActive), errors.Is(err, sievestore.ErrExists):
		return &ctl.Error{Exit: exitDataErr, Msg: err.Error()}
	}
	return err
}

func decodeSieve(ctx context.Context, a *app, raw json.RawMessage) (sieveArgs, string, error) {
	args, err := decodeArgs[sieveArgs](raw)
	if err != nil {
		return args, "", err
	}
	home, err := sieveHome(ctx, a, args.User)
	return args, home, err
}

func opSieveList(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	_, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	list, err := a.scripts.List(home)
	if err != nil {
		return nil, sieveError(err)
	}
	out := make([]sieveScript, len(list))
	for i, s := range list {
		out[i] = sieveScript{Name: s.Name, Active: s.Active, Size: s.Size}
	}
	return out, nil
}

func opSieveGet(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	src, err := a.scripts.Get(home, args.Name)
	if err != nil {
		return nil, sieveError(err)
	}
	return sieveSource{Source: string(src)}, nil
}

// readScript reads a script from the command's body, at most the
// largest size a user may store.
func readScript(a *app, body io.Reader) ([]byte, error) {
	max := a.scripts.MaxScriptSize()
	src, err := io.ReadAll(io.LimitReader(body, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(src) > max {
		return nil, &ctl.Error{Exit: exitDataErr, Msg: fmt.Sprintf("the script is larger than %d octets ([sieve] max_script_size)", max)}
	}
	return src, nil
}

func opSievePut(ctx context.Context, a *app, raw json.RawMessage, body io.Reader) (any, error) {
	args, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	src, err := readScript(a, body)
	if err != nil {
		return nil, err
	}
	if err := a.scripts.Put(home, args.Name, src); err != nil {
		return nil, sieveError(err)
	}
	a.log.Info("sieve script stored", "event", "sieve_put", "user", args.User, "script", args.Name, "size", len(src))
	if args.Activate {
		if err := a.scripts.SetActive(home, args.Name); err != nil {
			return nil, sieveError(err)
		}
		a.log.Info("active sieve script set", "event", "sieve_activate", "user", args.User, "script", args.Name)
	}
	return nil, nil
}

// opSieveCheck compiles the body as one of the user's scripts, or with
// Stored every script a delivery to the user runs (the administrator's
// too).
func opSieveCheck(ctx context.Context, a *app, raw json.RawMessage, body io.Reader) (any, error) {
	args, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	if args.Stored {
		_, err := a.scripts.Sequence(ctx, home)
		return nil, sieveError(err)
	}
	src, err := readScript(a, body)
	if err != nil {
		return nil, err
	}
	return nil, sieveError(a.scripts.Check(home, cmp.Or(args.Name, "stdin"), src))
}

func opSieveActivate(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	if err := a.scripts.SetActive(home, args.Name); err != nil {
		return nil, sieveError(err)
	}
	a.log.Info("active sieve script set", "event", "sieve_activate", "user", args.User, "script", args.Name)
	return nil, nil
}

func opSieveDel(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, home, err := decodeSieve(ctx, a, raw)
	if err != nil {
		return nil, err
	}
	if err := a.scripts.Delete(home, args.Name); err != nil {
		return nil, sieveError(err)
	}
	a.log.Info("sieve script deleted", "event", "sieve_delete", "user", args.User, "script", args.Name)
	return nil, nil
}
