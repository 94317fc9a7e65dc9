#!/usr/bin/env python3
"""Log in to mailroom's IMAP server over TLS with Python's imaplib,
verifying the server's certificate against the test's own.

Usage: imap_tls.py HOST TLS_PORT PLAIN_PORT USER PASSWORD WRONG_PASSWORD CAFILE

1. Implicit TLS (IMAP4_SSL) on TLS_PORT: LOGIN, SELECT INBOX, LOGOUT.
2. The plain port offers STARTTLS; after it, LOGIN and AUTHENTICATE PLAIN
   work, and STARTTLS is no longer offered.

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


def caps(imap):
    typ, dat = imap.capability()
    check(typ == "OK", "CAPABILITY: %s %r" % (typ, dat))
    return dat[0].decode().upper().split()


def main():
    host, tls_port, plain_port, user, password, wrong, cafile = sys.argv[1:8]
    ctx = ssl.create_default_context(cafile=cafile)  # verifies the chain and the host name

    print("step: implicit TLS", flush=True)
    imap = imaplib.IMAP4_SSL(host, int(tls_port), ssl_context=ctx, timeout=30)
    c = caps(imap)
    check("STARTTLS" not in c, "STARTTLS offered inside implicit TLS: %r" % c)
    check("LOGINDISABLED" not in c, "LOGINDISABLED over TLS: %r" % c)
    check("AUTH=PLAIN" in c, "AUTH=PLAIN not offered over TLS: %r" % c)
    typ, dat = imap.login(user, password)
    check(typ == "OK", "LOGIN over implicit TLS: %s %r" % (typ, dat))
    typ, dat = imap.select("INBOX")
    check(typ == "OK", "SELECT INBOX over implicit TLS: %s %r" % (typ, dat))
    check(imap.logout()[0] == "BYE", "LOGOUT")

    print("step: STARTTLS, then LOGIN", flush=True)
    imap = imaplib.IMAP4(host, int(plain_port), timeout=30)
    c = [x.upper() for x in imap.capabilities]
    check("STARTTLS" in c, "STARTTLS not offered on the plain port with [tls] configured: %r" % c)
    typ, dat = imap.starttls(ssl_context=ctx)
    check(typ == "OK", "STARTTLS: %s %r" % (typ, dat))
    c = caps(imap)
    check("STARTTLS" not in c, "STARTTLS still offered after STARTTLS: %r" % c)
    typ, dat = imap.login(user, password)
    check(typ == "OK", "LOGIN after STARTTLS: %s %r" % (typ, dat))
    check(imap.logout()[0] == "BYE", "LOGOUT")

    print("step: STARTTLS, then AUTHENTICATE PLAIN", flush=True)
    imap = imaplib.IMAP4(host, int(plain_port), timeout=30)
    typ, dat = imap.starttls(ssl_context=ctx)
    check(typ == "OK", "STARTTLS: %s %r" % (typ, dat))
    plain = ("\0%s\0%s" % (user, password)).encode()
    typ, dat = imap.authenticate("PLAIN", lambda _: plain)
    check(typ == "OK", "AUTHENTICATE PLAIN after STARTTLS: %s %r" % (typ, dat))
    typ, dat = imap.select("INBOX")
    check(typ == "OK", "SELECT INBOX after AUTHENTICATE: %s %r" % (typ, dat))
    check(imap.logout()[0] == "BYE", "LOGOUT")

    print("step: a wrong password over TLS", flush=True)
    imap = imaplib.IMAP4_SSL(host, int(tls_port), ssl_context=ctx, timeout=30)
    try:
        imap.login(user, wrong)
        raise Fail("LOGIN with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        print("refused as expected:", e, flush=True)
    # One mistyped password may be corrected at once.
    typ, dat = imap.login(user, password)
    check(typ == "OK", "LOGIN right after one failed one: %s %r" % (typ, dat))
    imap.logout()

    print("step: two wrong passwords over TLS", flush=True)
    imap = imaplib.IMAP4_SSL(host, int(tls_port), ssl_context=ctx, timeout=30)
    try:
        imap.login(user, wrong)
        raise Fail("LOGIN with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        print("refused as expected:", e, flush=True)
    # After a second failure the address is held back for that user,
    # right password or not: a temporary refusal, not a verdict.
    try:
        imap.login(user, password)
        raise Fail("LOGIN right after a second failed one was let through")
    except imaplib.IMAP4.error as e:
        check("UNAVAILABLE" in str(e), "LOGIN right after a second failed one: %s, want NO [UNAVAILABLE]" % e)
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
