#!/usr/bin/env python3
"""Plaintext passwords from a client that is not on loopback, with
Python's imaplib (run inside the test's own network namespace).

Usage: imap_offloopback.py HOST PLAIN_PORT USER PASSWORD CAFILE INSECURE

INSECURE "0": the plain port says LOGINDISABLED and offers no AUTH=, LOGIN
in clear is refused, and after STARTTLS both work. INSECURE "1" (the
listener has allow_insecure_auth = true): LOGIN works in clear.

Exits 0 after "ALL CHECKS PASSED", or non-zero with a "FAIL:" line.
"""

import imaplib
import ssl
import sys


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def main():
    host, port, user, password, cafile, insecure = sys.argv[1:7]
    imap = imaplib.IMAP4(host, int(port), timeout=30)
    c = [x.upper() for x in imap.capabilities]
    if insecure == "1":
        check("LOGINDISABLED" not in c, "LOGINDISABLED with allow_insecure_auth = true: %r" % c)
        typ, dat = imap.login(user, password)
        check(typ == "OK", "LOGIN in clear with allow_insecure_auth = true: %s %r" % (typ, dat))
        imap.logout()
        print("ALL CHECKS PASSED", flush=True)
        return

    check("LOGINDISABLED" in c, "no LOGINDISABLED in clear off loopback: %r" % c)
    check(not any(x.startswith("AUTH=") for x in c), "AUTH= offered in clear off loopback: %r" % c)
    check("STARTTLS" in c, "STARTTLS not offered: %r" % c)
    # The password here is a wrong one: were it accepted, nothing secret
    # crossed the wire in clear, and the test still fails.
    try:
        typ, dat = imap.login(user, "not-the-password")
        raise Fail("LOGIN in clear off loopback answered %s %r, want NO or BAD" % (typ, dat))
    except imaplib.IMAP4.error as e:
        print("LOGIN in clear refused as expected:", e, flush=True)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names loopback only; the chain is still verified
    typ, dat = imap.starttls(ssl_context=ctx)
    check(typ == "OK", "STARTTLS: %s %r" % (typ, dat))
    typ, dat = imap.capability()
    c = dat[0].decode().upper().split()
    check("LOGINDISABLED" not in c, "LOGINDISABLED after STARTTLS: %r" % c)
    check("AUTH=PLAIN" in c, "no AUTH=PLAIN after STARTTLS: %r" % c)
    typ, dat = imap.login(user, password)
    check(typ == "OK", "LOGIN after STARTTLS: %s %r" % (typ, dat))
    imap.logout()
    print("ALL CHECKS PASSED", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        sys.exit(1)
