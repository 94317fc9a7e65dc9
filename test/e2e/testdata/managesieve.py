#!/usr/bin/env python3
"""Drive mailroom's ManageSieve server (RFC 5804) from Python, as a
webmail's filter editor would: STARTTLS verifying the server's
certificate, AUTHENTICATE PLAIN, then every script command.

Usage: managesieve.py HOST PORT USER PASSWORD CAFILE SCRIPTFILE

SCRIPTFILE is uploaded as "filter" and left active. Exits 0 after
"ALL CHECKS PASSED", or non-zero with a "FAIL:" line.
"""

import base64
import re
import socket
import ssl
import sys


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        l = self.f.readline()
        check(l.endswith(b"\r\n"), "line without CRLF or connection closed: %r" % l)
        return l[:-2]

    def response(self):
        """Lines up to OK/NO/BYE; returns (lines, final line). A line
        announcing a literal {n} is followed by its n octets."""
        lines = []
        while True:
            l = self.line()
            m = re.match(rb"^\{(\d+)\}$", l)
            if m:
                data = self.f.read(int(m.group(1)))
                check(self.line() == b"", "literal not followed by CRLF")
                lines.append(data)
                continue
            if re.match(rb"^(OK|NO|BYE)( |$)", l):
                return lines, l.decode()
            lines.append(l)

    def cmd(self, s):
        self.send(s + "\r\n")
        return self.response()


def literal(s):
    b = s.encode()
    return b"{%d+}\r\n" % len(b) + b


def caps(lines):
    out = {}
    for l in lines:
        parts = re.findall(rb'"((?:[^"\\]|\\.)*)"', l)
        check(parts, "capability line %r" % l)
        out[parts[0].decode().upper()] = parts[1].decode() if len(parts) > 1 else ""
    return out


def main():
    host, port, user, password, cafile, scriptfile = sys.argv[1:7]
    script = open(scriptfile).read()
    ctx = ssl.create_default_context(cafile=cafile)

    print("step: greeting", flush=True)
    sock = socket.create_connection((host, int(port)), timeout=30)
    c = Conn(sock)
    lines, final = c.response()
    check(final.startswith("OK"), "greeting %r" % final)
    cp = caps(lines)
    for k in ("IMPLEMENTATION", "SASL", "SIEVE", "STARTTLS", "VERSION"):
        check(k in cp, "no %s capability: %r" % (k, cp))
    check(cp["VERSION"] == "1.0", "VERSION %r" % cp["VERSION"])
    for ext in ("fileinto", "vacation", "imap4flags", "reject", "variables", "include", "mailbox"):
        check(ext in cp["SIEVE"].split(), "SIEVE lacks %s: %r" % (ext, cp["SIEVE"]))

    print("step: STARTTLS", flush=True)
    lines, final = c.cmd("STARTTLS")
    check(final.startswith("OK"), "STARTTLS: %r" % final)
    tls = ctx.wrap_socket(sock, server_hostname=host)
    c = Conn(tls)
    lines, final = c.response()
    check(final.startswith("OK"), "after STARTTLS: %r" % final)
    cp = caps(lines)
    check("STARTTLS" not in cp, "STARTTLS offered again under TLS: %r" % cp)
    check("PLAIN" in cp.get("SASL", "").split(), "no PLAIN under TLS: %r" % cp)

    print("step: AUTHENTICATE", flush=True)
    good = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
    # PLAIN without an initial response: the server's empty challenge first.
    c.send('AUTHENTICATE "PLAIN"\r\n')
    check(c.line() == b'""', "PLAIN challenge")
    c.send('"%s"\r\n' % good)
    lines, final = c.response()
    check(final.startswith("OK"), "AUTHENTICATE: %r" % final)

    print("step: scripts", flush=True)
    lines, final = c.cmd("LISTSCRIPTS")
    check(final.startswith("OK") and lines == [], "LISTSCRIPTS of a new user: %r %r" % (lines, final))
    lines, final = c.cmd('HAVESPACE "filter" %d' % len(script.encode()))
    check(final.startswith("OK"), "HAVESPACE: %r" % final)
    lines, final = c.cmd('HAVESPACE "filter" 100000000')
    check(final.startswith("NO (QUOTA/MAXSIZE)"), "HAVESPACE too big: %r" % final)
    c.send(b'PUTSCRIPT "broken" ' + literal('require "fileinto";\r\nif true {\r\n  fileinto;\r\n}\r\n') + b"\r\n")
    lines, final = c.response()
    check(final.startswith("NO") and "broken:3:" in final, "a bad script: %r" % final)
    c.send(b'CHECKSCRIPT ' + literal(script) + b"\r\n")
    lines, final = c.response()
    check(final.startswith("OK"), "CHECKSCRIPT: %r" % final)
    c.send(b'PUTSCRIPT "draft" ' + literal(script) + b"\r\n")
    lines, final = c.response()
    check(final.startswith("OK"), "PUTSCRIPT: %r" % final)
    lines, final = c.cmd('RENAMESCRIPT "draft" "filter"')
    check(final.startswith("OK"), "RENAMESCRIPT: %r" % final)
    lines, final = c.cmd('SETACTIVE "filter"')
    check(final.startswith("OK"), "SETACTIVE: %r" % final)
    lines, final = c.cmd('GETSCRIPT "filter"')
    check(final.startswith("OK") and lines == [script.encode()], "GETSCRIPT: %r %r" % (lines, final))
    lines, final = c.cmd("LISTSCRIPTS")
    check(lines == [b'"filter" ACTIVE'], "LISTSCRIPTS: %r" % lines)
    lines, final = c.cmd('DELETESCRIPT "filter"')
    check(final.startswith("NO (ACTIVE)"), "DELETESCRIPT of the active one: %r" % final)
    lines, final = c.cmd('GETSCRIPT "broken"')
    check(final.startswith("NO (NONEXISTENT)"), "the bad script was stored: %r" % final)
    lines, final = c.cmd('NOOP "py"')
    check(final.startswith('OK (TAG "py")'), "NOOP: %r" % final)
    lines, final = c.cmd("LOGOUT")
    check(final.startswith("OK"), "LOGOUT: %r" % final)
    print("ALL CHECKS PASSED", flush=True)


try:
    main()
except Fail as e:
    print("FAIL:", e, flush=True)
    sys.exit(1)
