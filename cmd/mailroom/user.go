package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"mailroom/account"
	"mailroom/internal/ctl"
)

type userArgs struct {
	Address  string `json:"address"`
	Password string `json:"password,omitempty"`
}

type userInfo struct {
	Address string    `json:"address"`
	Created time.Time `json:"created"`
}

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("user", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return withExit(exitUsage, errors.New("say add, passwd, del or list"))
	}
	sub, pos := pos[0], pos[1:]
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		return withExit(exitUsage, fmt.Errorf("%s takes %d address argument(s), got %d", sub, want, len(pos)))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch sub {
	case "add", "passwd":
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		if err := call(ctx, cfg, "user."+sub, userArgs{Address: pos[0], Password: pw}, nil, nil); err != nil {
			return err
		}
		verb := map[string]string{"add": "added", "passwd": "password changed"}[sub]
		fmt.Fprintf(stdout, "%s: %s\n", pos[0], verb)
	case "del":
		if err := call(ctx, cfg, "user.del", userArgs{Address: pos[0]}, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: deleted (its mail home is kept)\n", pos[0])
	case "list":
		var users []userInfo
		if err := call(ctx, cfg, "user.list", nil, nil, &users); err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintf(stdout, "%s\t%s\n", u.Address, u.Created.Format(time.DateOnly))
		}
	default:
		return withExit(exitUsage, fmt.Errorf("unknown user command %q: say add, passwd, del or list", sub))
	}
	return nil
}

// readPassword reads one line from stdin when it is not a terminal (for
// scripts), or prompts twice without echo when it is.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", withExit(exitDataErr, errors.New("the passwords differ"))
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", withExit(exitDataErr, errors.New("no password on standard input: pipe one line, e.g. echo secret | mailroom user add ADDRESS"))
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func decodeArgs[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return v, &ctl.Error{Exit: exitUsage, Msg: "bad arguments: " + err.Error()}
		}
	}
	return v, nil
}

// userError gives account errors the exit status a script can act on.
func userError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, account.ErrNotFound):
		return &ctl.Error{Exit: exitNoUser, Msg: err.Error()}
	case errors.Is(err, account.ErrExists), errors.Is(err, account.ErrForeignDomain),
		errors.Is(err, account.ErrBadPassword):
		return &ctl.Error{Exit: exitDataErr, Msg: err.Error()}
	}
	return err
}

func opUserAdd(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[userArgs](raw)
	if err != nil {
		return nil, err
	}
	acct, err := a.accounts.Add(args.Address, args.Password)
	if err != nil {
		return nil, userError(err)
	}
	a.log.Info("account added", "user", acct.Address.String())
	return nil, nil
}

func opUserPasswd(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[userArgs](raw)
	if err != nil {
		return nil, err
	}
	if err := a.accounts.SetPassword(args.Address, args.Password); err != nil {
		return nil, userError(err)
	}
	a.log.Info("password changed", "user", args.Address)
	return nil, nil
}

func opUserDel(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[userArgs](raw)
	if err != nil {
		return nil, err
	}
	if err := a.accounts.Delete(args.Address); err != nil {
		return nil, userError(err)
	}
	a.log.Info("account deleted", "user", args.Address)
	return nil, nil
}

func opUserList(ctx context.Context, a *app, _ json.RawMessage, _ io.Reader) (any, error) {
	accts, err := a.accounts.List()
	if err != nil {
		return nil, err
	}
	out := make([]userInfo, len(accts))
	for i, acct := range accts {
		out[i] = userInfo{Address: acct.Address.String(), Created: acct.Created}
	}
	return out, nil
}
