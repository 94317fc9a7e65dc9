package managesieve

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

// The commands of the authenticated state (RFC 5804 §2.3-§2.12).

// storeError maps the store's errors to responses (RFC 5804 §1.3); what
// it does not know stays an error, answered TRYLATER and logged.
func storeError(err error) error {
	var qe *sievestore.QuotaError
	var se *sieve.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sievestore.ErrNoScript):
		return no("NONEXISTENT", "There is no script of that name")
	case errors.Is(err, sievestore.ErrExists):
		return no("ALREADYEXISTS", "A script of that name exists")
	case errors.Is(err, sievestore.ErrActive):
		return no("ACTIVE", "The script is active: make another one active first")
	case errors.Is(err, sievestore.ErrBadName):
		return no("", "Invalid script name: "+err.Error())
	case errors.As(err, &qe):
		return no("QUOTA/"+qe.What, qe.Msg)
	case errors.As(err, &se):
		// RFC 5804 §2.6: the reason a script is refused, for a human.
		return no("", se.Error())
	}
	return err
}

// scriptName checks a name argument: UTF-8 without controls (RFC 5804
// §1.6), which the store checks further; names are compared in NFC.
func scriptName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", no("", "A script name must be UTF-8")
	}
	return norm.NFC.String(s), nil
}

func (c *conn) cmdHaveSpace(args []arg) error {
	name, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	if err := storeError(c.srv.opts.Scripts.HaveSpace(c.home, name, int64(args[1].n))); err != nil {
		return err
	}
	c.enc.response("OK", "", "Putscript would succeed")
	return nil
}

// cmdPutScript stores a script, which must compile first (RFC 5804
// §2.6); the error says where it does not.
func (c *conn) cmdPutScript(args []arg) error {
	name, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	if err := storeError(c.srv.opts.Scripts.Put(c.home, name, []byte(args[1].s))); err != nil {
		return err
	}
	c.log.Info("script stored", "event", "sieve_put", "script", name, "size", len(args[1].s))
	c.enc.response("OK", "", "Putscript completed")
	return nil
}

func (c *conn) cmdCheckScript(args []arg) error {
	if err := storeError(c.srv.opts.Scripts.Check(c.home, "", []byte(args[0].s))); err != nil {
		return err
	}
	c.enc.response("OK", "", "Script is valid")
	return nil
}

// cmdListScripts lists the scripts, the active one marked (RFC 5804
// §2.7).
func (c *conn) cmdListScripts(_ []arg) error {
	list, err := c.srv.opts.Scripts.List(c.home)
	if err != nil {
		return storeError(err)
	}
	for _, s := range list {
		c.enc.str(s.Name)
		if s.Active {
			c.enc.raw(" ACTIVE")
		}
		c.enc.raw("\r\n")
	}
	c.enc.response("OK", "", "Listscripts completed")
	return nil
}

// cmdSetActive makes a script active; "" leaves none active (RFC 5804
// §2.8).
func (c *conn) cmdSetActive(args []arg) error {
	name, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	if err := storeError(c.srv.opts.Scripts.SetActive(c.home, name)); err != nil {
		return err
	}
	c.log.Info("active script set", "event", "sieve_activate", "script", name)
	c.enc.response("OK", "", "Setactive completed")
	return nil
}

// cmdGetScript sends a script as a literal (RFC 5804 §2.9).
func (c *conn) cmdGetScript(args []arg) error {
	name, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	src, err := c.srv.opts.Scripts.Get(c.home, name)
	if err != nil {
		return storeError(err)
	}
	c.enc.raw("{" + strconv.Itoa(len(src)) + "}\r\n").raw(string(src)).raw("\r\n")
	c.enc.response("OK", "", "Getscript completed")
	return nil
}

func (c *conn) cmdDeleteScript(args []arg) error {
	name, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	if err := storeError(c.srv.opts.Scripts.Delete(c.home, name)); err != nil {
		return err
	}
	c.log.Info("script deleted", "event", "sieve_delete", "script", name)
	c.enc.response("OK", "", "Deletescript completed")
	return nil
}

func (c *conn) cmdRenameScript(args []arg) error {
	oldName, err := scriptName(args[0].s)
	if err != nil {
		return err
	}
	newName, err := scriptName(args[1].s)
	if err != nil {
		return err
	}
	if err := storeError(c.srv.opts.Scripts.Rename(c.home, oldName, newName)); err != nil {
		return err
	}
	c.log.Info("script renamed", "event", "sieve_rename", "script", oldName, "to", newName)
	c.enc.response("OK", "", "Renamescript completed")
	return nil
}
