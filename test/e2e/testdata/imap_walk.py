#!/usr/bin/env python3
"""Walk mailroom's IMAP server with Python's imaplib, a real third-party
client, and check every answer against what the Go test delivered.

Usage: imap_walk.py HOST PORT USER PASSWORD SPEC.json

SPEC.json (written by TestIMAPPythonWalk) describes the three messages the
test delivered to INBOX over LMTP, as stored (the bytes IMAP must serve),
and the parts of the multipart one. For IDLE the script prints "IDLING"
on stdout once the server said "+ idling"; the test then delivers one more
message and writes "DELIVERED <unix time of the 250>" on stdin. The script
checks that the EXISTS came within 1 second of that 250.

It exits 0 after printing "ALL CHECKS PASSED", and non-zero with a line
starting "FAIL:" at the first mismatch. Written for Python 3.11 (Debian
bookworm), so IDLE is sent by hand: imaplib has idle() only from 3.14.
"""

import datetime
import email.header
import imaplib
import json
import re
import select
import socket
import sys
import time


class Fail(Exception):
    pass


def fail(msg):
    raise Fail(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def eq(got, want, what):
    if got != want:
        fail("%s: got %r, want %r" % (what, got, want))


def step(name):
    print("step:", name, flush=True)


def ok(typ_dat, what):
    typ, dat = typ_dat
    if typ != "OK":
        fail("%s: %s %r" % (what, typ, dat))
    return dat


# --- a small parser for IMAP response data -------------------------------
#
# imaplib hands back FETCH, LIST, STATUS... data as a list mixing bytes and
# (bytes ending in "{n}", literal bytes) tuples. parse_pieces turns that into
# Python values: lists for parenthesised lists, bytes for strings, atoms and
# literals, None for NIL.

class Atom(bytes):
    """An unquoted atom (flags, keys such as BODY[HEADER])."""


def flatten(pieces):
    text = b""
    literals = []
    for p in pieces:
        if p is None:
            continue
        text += b" "
        if isinstance(p, tuple):
            head, lit = p
            m = re.search(rb"~?\{(\d+)\+?\}$", head)
            if not m:
                fail("literal without {n} marker: %r" % (head,))
            if int(m.group(1)) != len(lit):
                fail("literal announced %s bytes, got %d" % (m.group(1), len(lit)))
            text += head[: m.start()] + b"\x00%d\x00" % len(literals)
            literals.append(bytes(lit))
        else:
            text += p
    return text, literals


def parse_pieces(pieces):
    text, literals = flatten(pieces)
    pos = 0
    n = len(text)

    def skip_sp():
        nonlocal pos
        while pos < n and text[pos : pos + 1] == b" ":
            pos += 1

    def value():
        nonlocal pos
        skip_sp()
        c = text[pos : pos + 1]
        if c == b"(":
            pos += 1
            out = []
            while True:
                skip_sp()
                if pos >= n:
                    fail("unterminated list in %r" % text)
                if text[pos : pos + 1] == b")":
                    pos += 1
                    return out
                out.append(value())
        if c == b'"':
            pos += 1
            buf = b""
            while True:
                ch = text[pos : pos + 1]
                if ch == b"":
                    fail("unterminated quoted string in %r" % text)
                pos += 1
                if ch == b"\\":
                    buf += text[pos : pos + 1]
                    pos += 1
                elif ch == b'"':
                    return buf
                else:
                    buf += ch
        if c == b"\x00":
            end = text.index(b"\x00", pos + 1)
            lit = literals[int(text[pos + 1 : end])]
            pos = end + 1
            return lit
        start = pos
        depth = 0
        while pos < n:
            ch = text[pos : pos + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b"(", b")"):
                break
            pos += 1
        tok = text[start:pos]
        if tok == b"":
            fail("cannot parse %r at offset %d" % (text, start))
        if tok.upper() == b"NIL":
            return None
        return Atom(tok)

    out = []
    while True:
        skip_sp()
        if pos >= n:
            return out
        out.append(value())


def norm_key(k):
    # Header field names in a section may come as atoms or quoted strings
    # (header-fld-name is an astring): BODY[HEADER.FIELDS ("SUBJECT")].
    return re.sub(rb"\s+", b" ", bytes(k).upper().replace(b'"', b"")).decode()


class FetchItems(dict):
    """The items of one FETCH response; a missing one fails clearly."""

    def __missing__(self, key):
        fail("no %s in the FETCH response; it has %s" % (key, sorted(self)))


def fetch(imap, seq, items, uid=False):
    """FETCH and return {seq: {ITEM: value}} from the untagged responses."""
    if uid:
        dat = ok(imap.uid("FETCH", seq, items), "UID FETCH %s %s" % (seq, items))
    else:
        dat = ok(imap.fetch(seq, items), "FETCH %s %s" % (seq, items))
    vals = parse_pieces(dat)
    out = {}
    i = 0
    while i < len(vals):
        num, lst = vals[i], vals[i + 1]
        i += 2
        check(isinstance(lst, list), "FETCH response is not a list: %r" % (lst,))
        d = FetchItems()
        for j in range(0, len(lst), 2):
            d[norm_key(lst[j])] = lst[j + 1]
        out.setdefault(int(num), FetchItems()).update(d)
    return out


def fetch_one(imap, seq, items, uid=False):
    res = fetch(imap, seq, items, uid)
    if uid:
        for v in res.values():
            if int(v.get("UID", 0)) == int(seq):
                return v
        fail("UID FETCH %s %s: no response for that UID: %r" % (seq, items, res))
    check(len(res) == 1 and int(seq) in res, "FETCH %s %s: responses for %r" % (seq, items, list(res)))
    return res[int(seq)]


def search(imap, *criteria, uid=False, charset=None, literal=None):
    if literal is not None:
        imap.literal = literal
    if uid:
        args = (("CHARSET", charset) if charset else ()) + criteria
        dat = ok(imap.uid("SEARCH", *args), "UID SEARCH %r" % (criteria,))
    else:
        dat = ok(imap.search(charset, *criteria), "SEARCH %r" % (criteria,))
    return sorted(int(x) for x in b" ".join(d for d in dat if d).split())


def flags_of(v):
    # \Recent is IMAP4rev1's per-session flag, not state to compare.
    return sorted(bytes(f).decode() for f in v["FLAGS"] if bytes(f).lower() != b"\\recent")


def resp_code(text, name):
    """Returns the arguments of a [NAME ...] response code in text."""
    if isinstance(text, list):
        text = b" ".join(t for t in text if t)
    m = re.search(rb"\[" + name.encode() + rb" ([^\]]*)\]", text)
    if not m:
        fail("no [%s] response code in %r" % (name, text))
    return m.group(1).decode().split()


def uid_set(s):
    """Expands "1:3,7" into [1, 2, 3, 7]."""
    out = []
    for r in s.split(","):
        a, _, b = r.partition(":")
        a, b = int(a), int(b or a)
        out.extend(range(min(a, b), max(a, b) + 1))
    return sorted(out)


def parse_internaldate(v):
    return datetime.datetime.strptime(v.decode(), "%d-%b-%Y %H:%M:%S %z")


def list_folders(imap, pattern="*", cmd="LIST"):
    if cmd == "LIST":
        dat = ok(imap.list('""', pattern), "LIST")
    else:
        dat = ok(imap.lsub('""', pattern), "LSUB")
    out = {}
    for line in dat:
        if line is None:
            continue
        vals = parse_pieces([line] if not isinstance(line, tuple) else [line])
        attrs, delim, name = vals[0], vals[1], vals[2]
        out[bytes(name).decode()] = (sorted(bytes(a).decode().lower() for a in attrs), delim)
    return out


def status(imap, name, items):
    dat = ok(imap.status(name, "(%s)" % items), "STATUS %s" % name)
    vals = parse_pieces(dat)
    lst = vals[-1]
    return {bytes(lst[i]).decode().upper(): int(lst[i + 1]) for i in range(0, len(lst), 2)}


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RawSession:
    """An IMAP connection driven by hand, for IDLE: every byte the server
    sends is seen, with a deadline, without imaplib's buffering."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""
        self.n = 0
        greeting = self.line(time.time() + 10)
        check(greeting is not None and greeting.startswith(b"* OK"), "greeting of the second session: %r" % greeting)

    def send(self, data):
        self.sock.sendall(data)

    def line(self, deadline):
        """Returns the next line without CRLF, or None at the deadline."""
        while b"\r\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("the server closed the second session")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, cmd, want=b"OK"):
        """Sends a command (no literals) and returns its untagged lines."""
        self.n += 1
        tag = b"r%d" % self.n
        self.send(tag + b" " + cmd.encode() + b"\r\n")
        out = []
        while True:
            line = self.line(time.time() + 30)
            if line is None:
                fail("no reply to %s within 30 s" % cmd.split()[0])
            if line.startswith(tag + b" "):
                check(line[len(tag) + 1 :].startswith(want), "%s: %r" % (cmd.split()[0], line))
                return out
            out.append(line)

    def close(self):
        self.sock.close()


# --- the walk -----------------------------------------------------------


def main():
    host, port, user, password, spec_path = sys.argv[1:6]
    with open(spec_path) as f:
        spec = json.load(f)
    msgs = spec["messages"]  # plain, multi, big, in delivery order
    for m in msgs:
        m["stored_b"] = m["stored"].encode("utf-8")
        m["header_b"], sep, m["text_b"] = m["stored_b"].partition(b"\r\n\r\n")
        m["header_b"] += sep
    plain, multi, big = msgs
    mp = spec["multipart"]

    imap = imaplib.IMAP4(host, int(port), timeout=30)

    step("greeting and LOGIN")
    caps_pre = [c.upper() for c in imap.capabilities]
    check("LOGINDISABLED" not in caps_pre, "LOGINDISABLED offered on loopback: %r" % caps_pre)
    ok(imap.login(user, password), "LOGIN")
    check(imap.state == "AUTH", "state after LOGIN: %s" % imap.state)

    step("CAPABILITY")
    caps = ok(imap.capability(), "CAPABILITY")[0].decode().upper().split()
    for c in ("IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "NAMESPACE", "UNSELECT",
              "ENABLE", "LITERAL+", "SASL-IR", "CHILDREN", "LIST-STATUS", "STATUS=SIZE"):
        check(c in caps, "CAPABILITY lacks %s: %r" % (c, caps))
    check(any(c.startswith("APPENDLIMIT") for c in caps), "CAPABILITY lacks APPENDLIMIT: %r" % caps)
    binary = "BINARY" in caps or "IMAP4REV2" in caps

    step("LIST")
    folders = list_folders(imap)
    want_special = {"Sent": "\\sent", "Drafts": "\\drafts", "Trash": "\\trash",
                    "Junk": "\\junk", "Archive": "\\archive"}
    check("INBOX" in folders, "LIST lacks INBOX: %r" % folders)
    for name, attr in want_special.items():
        check(name in folders, "LIST lacks %s: %r" % (name, folders))
        check(attr in folders[name][0], "LIST: %s has %r, want %s" % (name, folders[name][0], attr))
    delim = folders["INBOX"][1]
    delim = bytes(delim).decode() if delim else None
    check(delim == "/", "hierarchy delimiter %r, want /" % delim)
    for name, (attrs, _) in folders.items():
        check(not any(a in attrs for a in want_special.values()) or name in want_special,
              "LIST: %s has a special-use attribute: %r" % (name, attrs))
    sel = list_folders(imap, "%")
    check(set(sel) == set(folders), "LIST %% %r differs from LIST * %r (no subfolders yet)" % (list(sel), list(folders)))
    only_inbox = list_folders(imap, "INB*")
    eq(list(only_inbox), ["INBOX"], "LIST \"\" INB*")

    step("SELECT")
    dat = ok(imap.select("INBOX"), "SELECT INBOX")
    eq(int(dat[0]), 3, "EXISTS after SELECT INBOX")
    uidvalidity = int(imap.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
    check(uidvalidity > 0, "no UIDVALIDITY in SELECT's responses")
    uidnext = int(imap.untagged_responses.get("UIDNEXT", [b"0"])[-1])
    check(uidnext > 0, "no UIDNEXT in SELECT's responses")

    step("FETCH UID, FLAGS, INTERNALDATE, RFC822.SIZE")
    all_ = fetch(imap, "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
    eq(sorted(all_), [1, 2, 3], "sequence numbers of FETCH 1:*")
    uids = [int(all_[i]["UID"]) for i in (1, 2, 3)]
    check(uids == sorted(uids) and len(set(uids)) == 3, "UIDs not ascending: %r" % uids)
    check(uidnext > uids[-1], "UIDNEXT %d not above the last UID %d" % (uidnext, uids[-1]))
    for i, m in enumerate(msgs, 1):
        v = all_[i]
        eq(flags_of(v), [], "FLAGS of the new message %d" % i)
        eq(int(v["RFC822.SIZE"]), len(m["stored_b"]), "RFC822.SIZE of message %d (%s)" % (i, m["name"]))
        idate = parse_internaldate(v["INTERNALDATE"])
        delivered = datetime.datetime.fromtimestamp(m["delivered"], datetime.timezone.utc)
        check(abs((idate - delivered).total_seconds()) < 120,
              "INTERNALDATE of message %d is %s, delivered at %s" % (i, idate, delivered))

    step("FETCH ENVELOPE")
    env = fetch_one(imap, "1", "ENVELOPE")["ENVELOPE"]
    eq(env[1], b"Plain hello", "ENVELOPE subject of message 1")
    eq(env[2], [[b"Carol", None, b"carol", b"example.net"]], "ENVELOPE from of message 1")
    eq(env[5], [[b"Alice", None, b"alice", b"example.org"]], "ENVELOPE to of message 1")
    eq(env[9], plain["message_id"].encode(), "ENVELOPE message-id of message 1")
    check(env[0] is not None and b"2024" in env[0], "ENVELOPE date of message 1: %r" % (env[0],))
    env2 = fetch_one(imap, "2", "ENVELOPE")["ENVELOPE"]
    subj = env2[1]
    check(all(b < 0x80 for b in subj), "ENVELOPE subject of message 2 is not 7-bit in a session "
          "without UTF8=ACCEPT: %r" % subj)
    decoded = str(email.header.make_header(email.header.decode_header(subj.decode())))
    eq(decoded, "Ärger im Büro", "ENVELOPE subject of message 2, RFC 2047-decoded")
    eq(env2[2], [[b"Dave", None, b"dave", b"example.com"]], "ENVELOPE from of message 2")

    step("FETCH BODYSTRUCTURE")
    bs = fetch_one(imap, "1", "BODYSTRUCTURE")["BODYSTRUCTURE"]
    eq([bytes(x).lower() if x is not None else None for x in bs[:2]], [b"text", b"plain"], "BODYSTRUCTURE type of message 1")
    eq(int(bs[6]), len(plain["text_b"]), "BODYSTRUCTURE size of message 1's body")
    bs = fetch_one(imap, "2", "BODYSTRUCTURE")["BODYSTRUCTURE"]
    check(isinstance(bs[0], list) and isinstance(bs[1], list), "BODYSTRUCTURE of message 2 is not multipart: %r" % (bs,))
    eq(bytes(bs[2]).lower(), b"mixed", "BODYSTRUCTURE subtype of message 2")
    p1, p2 = bs[0], bs[1]
    eq([bytes(p1[0]).lower(), bytes(p1[1]).lower()], [b"text", b"plain"], "BODYSTRUCTURE part 1 type")
    eq([bytes(x).lower() for x in p1[2]], [b"charset", b"utf-8"], "BODYSTRUCTURE part 1 parameters")
    eq(bytes(p1[5]).lower(), b"quoted-printable", "BODYSTRUCTURE part 1 encoding")
    eq(int(p1[6]), len(mp["part1_body"].encode()), "BODYSTRUCTURE part 1 size")
    eq([bytes(p2[0]).lower(), bytes(p2[1]).lower()], [b"application", b"octet-stream"], "BODYSTRUCTURE part 2 type")
    eq(bytes(p2[5]).lower(), b"base64", "BODYSTRUCTURE part 2 encoding")
    eq(int(p2[6]), len(mp["part2_body"].encode()), "BODYSTRUCTURE part 2 size")

    step("FETCH body sections")
    for i, m in enumerate(msgs, 1):
        v = fetch_one(imap, str(i), "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        eq(v["BODY[]"], m["stored_b"], "BODY[] of message %d (%s)" % (i, m["name"]))
        eq(v["BODY[HEADER]"], m["header_b"], "BODY[HEADER] of message %d" % i)
        eq(v["BODY[TEXT]"], m["text_b"], "BODY[TEXT] of message %d" % i)
    v = fetch_one(imap, "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])")
    eq(v["BODY[HEADER.FIELDS (SUBJECT FROM)]"], b"From: Carol <carol@example.net>\r\nSubject: Plain hello\r\n\r\n",
       "BODY[HEADER.FIELDS (SUBJECT FROM)] of message 1")
    want_not = b"".join(l + b"\r\n" for l in plain["header_b"].split(b"\r\n")[:-2] if not l.startswith(b"Subject:")) + b"\r\n"
    eq(v["BODY[HEADER.FIELDS.NOT (SUBJECT)]"], want_not, "BODY[HEADER.FIELDS.NOT (SUBJECT)] of message 1")
    v = fetch_one(imap, "1", "(BODY.PEEK[1] BODY.PEEK[]<0.10>)")
    eq(v["BODY[1]"], plain["text_b"], "BODY[1] of the single-part message 1")
    eq(v["BODY[]<0>"], plain["stored_b"][:10], "BODY[]<0.10> of message 1")
    v = fetch_one(imap, "1", "(BODY.PEEK[]<20.30>)")
    eq(v["BODY[]<20>"], plain["stored_b"][20:50], "BODY[]<20.30> of message 1")
    v = fetch_one(imap, "2", "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME])")
    eq(v["BODY[1]"], mp["part1_body"].encode(), "BODY[1] of message 2")
    eq(v["BODY[1.MIME]"], mp["part1_mime"].encode(), "BODY[1.MIME] of message 2")
    eq(v["BODY[2]"], mp["part2_body"].encode(), "BODY[2] of message 2")
    eq(v["BODY[2.MIME]"], mp["part2_mime"].encode(), "BODY[2.MIME] of message 2")
    if binary:
        v = fetch_one(imap, "2", "(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])")
        eq(v["BINARY[1]"], mp["part1_decoded"].encode(), "BINARY[1] of message 2 (QP decoded)")
        eq(v["BINARY[2]"], bytes.fromhex(mp["part2_decoded_hex"]), "BINARY[2] of message 2 (base64 decoded, with NUL)")
        eq(int(v["BINARY.SIZE[2]"]), len(bytes.fromhex(mp["part2_decoded_hex"])), "BINARY.SIZE[2] of message 2")
    eq(flags_of(fetch_one(imap, "2", "FLAGS")), [], "FLAGS of message 2 after BODY.PEEK (must not set \\Seen)")
    v = fetch_one(imap, "1", "BODY[TEXT]")
    eq(v["BODY[TEXT]"], plain["text_b"], "BODY[TEXT] (not PEEK) of message 1")
    v = fetch_one(imap, "1", "FLAGS")
    eq(flags_of(v), ["\\Seen"], "FLAGS of message 1 after a non-PEEK BODY[] fetch")

    step("UID FETCH")
    v = fetch_one(imap, str(uids[2]), "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", uid=True)
    eq(int(v["RFC822.SIZE"]), len(big["stored_b"]), "UID FETCH RFC822.SIZE of message 3")
    eq(v["BODY[HEADER.FIELDS (MESSAGE-ID)]"], b"Message-ID: " + big["message_id"].encode() + b"\r\n\r\n",
       "UID FETCH Message-ID of message 3")

    step("SEARCH")
    today = datetime.date.today()
    imapdate = lambda d: d.strftime("%d-%b-%Y")
    cases = [
        (("ALL",), [1, 2, 3]),
        (("SEEN",), [1]),
        (("UNSEEN",), [2, 3]),
        (("SUBJECT", '"HELLO"'), [1]),
        (("FROM", "dave"), [2]),
        (("TO", "alice@example.org"), [1, 2, 3]),
        (("BODY", "zebracrossing"), [3]),
        (("TEXT", "carol"), [1]),
        (("HEADER", "Message-ID", '"<multi-2@"'), [2]),
        (("LARGER", "5000"), [3]),
        (("SMALLER", "5000"), [1, 2]),
        (("SINCE", imapdate(today - datetime.timedelta(days=1))), [1, 2, 3]),
        (("SINCE", imapdate(today + datetime.timedelta(days=2))), []),
        (("BEFORE", imapdate(today + datetime.timedelta(days=2))), [1, 2, 3]),
        (("SENTBEFORE", "1-Jan-2022"), [3]),
        (("SENTSINCE", "1-Jan-2022"), [1, 2]),
        (("2:3",), [2, 3]),
        (("UID", "%d:*" % uids[1]), [2, 3]),
        (("OR", "SUBJECT", "hello", "FROM", "bob"), [1, 3]),
        (("NOT", "FROM", "dave"), [1, 3]),
        (("UNSEEN", "NOT", "LARGER", "5000"), [2]),
    ]
    for crit, want in cases:
        eq(search(imap, *crit), want, "SEARCH %s" % " ".join(crit))
    eq(search(imap, "FROM", "bob", uid=True), [uids[2]], "UID SEARCH FROM bob")
    eq(search(imap, "SUBJECT", charset="UTF-8", literal="bÜRO".encode()), [2],
       "SEARCH CHARSET UTF-8 SUBJECT bÜRO (RFC 2047 subject, case-insensitive non-ASCII)")
    eq(search(imap, "BODY", charset="UTF-8", literal="KÖLN".encode()), [2],
       "SEARCH CHARSET UTF-8 BODY KÖLN (quoted-printable body, case-insensitive non-ASCII)")
    eq(search(imap, "TEXT", charset="UTF-8", literal="Ärger".encode()), [2],
       "SEARCH CHARSET UTF-8 TEXT Ärger")

    step("STORE")
    dat = ok(imap.store("1", "+FLAGS", "(\\Flagged)"), "STORE 1 +FLAGS (\\Flagged)")
    res = parse_pieces(dat)
    check(len(res) == 2 and int(res[0]) == 1, "STORE +FLAGS: untagged FETCH %r" % (res,))
    eq(flags_of({"FLAGS": res[1][res[1].index(Atom(b"FLAGS")) + 1]}), ["\\Flagged", "\\Seen"],
       "FLAGS in STORE +FLAGS's response")
    dat = ok(imap.store("1", "-FLAGS.SILENT", "(\\Seen)"), "STORE 1 -FLAGS.SILENT (\\Seen)")
    check(dat == [None], "STORE -FLAGS.SILENT answered with FETCH data: %r" % dat)
    ok(imap.store("1,3", "+FLAGS.SILENT", "($Work)"), "STORE +FLAGS.SILENT ($Work)")
    eq(flags_of(fetch_one(imap, "1", "FLAGS")), ["$Work", "\\Flagged"], "FLAGS of message 1 after STOREs")
    eq(flags_of(fetch_one(imap, "3", "FLAGS")), ["$Work"], "FLAGS of message 3 after STORE")
    eq(search(imap, "KEYWORD", "$Work"), [1, 3], "SEARCH KEYWORD $Work")
    eq(search(imap, "FLAGGED"), [1], "SEARCH FLAGGED")
    eq(search(imap, "UNKEYWORD", "$Work"), [2], "SEARCH UNKEYWORD $Work")
    ok(imap.uid("STORE", str(uids[2]), "FLAGS", "(\\Answered $Work)"), "UID STORE FLAGS")
    eq(flags_of(fetch_one(imap, "3", "FLAGS")), ["$Work", "\\Answered"], "FLAGS of message 3 after UID STORE FLAGS")
    eq(search(imap, "ANSWERED"), [3], "SEARCH ANSWERED")
    # PERMANENTFLAGS must allow keywords (\*).
    st = ok(imap.select("INBOX"), "SELECT INBOX again")
    perm = imap.untagged_responses.get("PERMANENTFLAGS", [b""])[-1]
    check(b"\\*" in perm, "PERMANENTFLAGS %r does not allow new keywords (\\*)" % perm)

    step("COPY")
    st_arch = status(imap, "Archive", "MESSAGES UIDNEXT UIDVALIDITY")
    eq(st_arch["MESSAGES"], 0, "STATUS Archive MESSAGES before COPY")
    typ, dat = imap.copy("1:2", "Archive")
    eq(typ, "OK", "COPY 1:2 Archive: %r" % dat)
    cu = resp_code(dat, "COPYUID")
    eq(int(cu[0]), st_arch["UIDVALIDITY"], "COPYUID's UIDVALIDITY")
    eq(uid_set(cu[1]), [uids[0], uids[1]], "COPYUID source UIDs")
    eq(len(uid_set(cu[2])), 2, "COPYUID destination UIDs")
    st_arch2 = status(imap, "Archive", "MESSAGES UIDNEXT UIDVALIDITY")
    eq(st_arch2["MESSAGES"], 2, "STATUS Archive MESSAGES after COPY")
    eq(status(imap, "INBOX", "MESSAGES")["MESSAGES"], 3, "STATUS INBOX MESSAGES after COPY")
    typ, dat = imap.copy("1", "NoSuchFolder")
    eq(typ, "NO", "COPY to a folder that does not exist")
    check(b"TRYCREATE" in b" ".join(d for d in dat if d), "COPY to a missing folder: no [TRYCREATE]: %r" % dat)

    step("MOVE")
    imap.untagged_responses.pop("EXPUNGE", None)
    imap.untagged_responses.pop("COPYUID", None)
    dat = ok(imap.uid("MOVE", str(uids[1]), "Trash"), "UID MOVE to Trash")
    eq(imap.untagged_responses.pop("EXPUNGE", None), [b"2"], "EXPUNGE responses to UID MOVE of message 2")
    cu = imap.untagged_responses.pop("COPYUID", [b""])[-1].decode().split()
    check(len(cu) == 3 and cu[1] == str(uids[1]), "UID MOVE: COPYUID %r does not name the moved UID %d" % (cu, uids[1]))
    eq(status(imap, "Trash", "MESSAGES")["MESSAGES"], 1, "STATUS Trash MESSAGES after MOVE")
    res = fetch(imap, "1:*", "(UID)")
    eq([int(res[i]["UID"]) for i in sorted(res)], [uids[0], uids[2]], "UIDs in INBOX after MOVE")
    ok(imap.select("Trash"), "SELECT Trash")
    v = fetch_one(imap, "1", "(UID BODY.PEEK[] FLAGS)")
    eq(v["BODY[]"], multi["stored_b"], "BODY[] of the message moved to Trash")
    eq(int(v["UID"]), int(cu[2]), "UID in Trash versus COPYUID")
    ok(imap.select("INBOX"), "SELECT INBOX")

    step("EXPUNGE and UID EXPUNGE")
    # Two more messages to expunge: copies of message 1 from Archive.
    ok(imap.select("Archive"), "SELECT Archive")
    typ, dat = imap.copy("1:2", "INBOX")
    eq(typ, "OK", "COPY Archive 1:2 INBOX")
    ok(imap.select("INBOX"), "SELECT INBOX")
    res = fetch(imap, "1:*", "(UID)")
    inbox_uids = [int(res[i]["UID"]) for i in sorted(res)]
    eq(len(inbox_uids), 4, "messages in INBOX after copying 2 back: %r" % inbox_uids)
    ok(imap.store("3:4", "+FLAGS.SILENT", "(\\Deleted)"), "STORE 3:4 +FLAGS (\\Deleted)")
    imap.untagged_responses.pop("EXPUNGE", None)
    dat = ok(imap.uid("EXPUNGE", str(inbox_uids[3])), "UID EXPUNGE")
    eq(imap.untagged_responses.pop("EXPUNGE", None), [b"4"], "EXPUNGE responses to UID EXPUNGE of the 4th")
    eq(search(imap, "DELETED"), [3], "SEARCH DELETED after UID EXPUNGE (the other one stays)")
    typ, dat = imap.expunge()
    eq(typ, "OK", "EXPUNGE")
    eq(dat, [b"3"], "EXPUNGE responses to EXPUNGE")
    res = fetch(imap, "1:*", "(UID)")
    eq([int(res[i]["UID"]) for i in sorted(res)], [uids[0], uids[2]], "UIDs in INBOX after EXPUNGE")

    step("APPEND")
    appended = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n"
                b"Subject: draft via APPEND\r\nMessage-ID: <append-1@example.org>\r\n"
                b"Date: Wed, 01 Feb 2023 10:00:00 +0100\r\n\r\nA draft.\r\nSecond line.\r\n")
    st_dr = status(imap, "Drafts", "MESSAGES UIDNEXT UIDVALIDITY")
    when = '"01-Feb-2023 10:00:00 +0100"'
    typ, dat = imap.append("Drafts", "(\\Draft \\Seen $Todo)", when, appended)
    eq(typ, "OK", "APPEND to Drafts: %r" % dat)
    au = resp_code(dat, "APPENDUID")
    eq(int(au[0]), st_dr["UIDVALIDITY"], "APPENDUID's UIDVALIDITY")
    check(int(au[1]) >= st_dr["UIDNEXT"], "APPENDUID UID %s below UIDNEXT %d" % (au[1], st_dr["UIDNEXT"]))
    ok(imap.select("Drafts", readonly=True), "EXAMINE Drafts")
    v = fetch_one(imap, au[1], "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", uid=True)
    eq(flags_of(v), ["$Todo", "\\Draft", "\\Seen"], "FLAGS of the APPENDed message")
    eq(parse_internaldate(v["INTERNALDATE"]), parse_internaldate(when.strip('"').encode()),
       "INTERNALDATE of the APPENDed message")
    eq(int(v["RFC822.SIZE"]), len(appended), "RFC822.SIZE of the APPENDed message")
    eq(v["BODY[]"], appended, "BODY[] of the APPENDed message")
    eq(search(imap, "ON", "1-Feb-2023"), [1], "SEARCH ON the APPEND date")
    typ, dat = imap.append("NoSuchFolder", None, None, appended)
    eq(typ, "NO", "APPEND to a folder that does not exist")
    check(b"TRYCREATE" in b" ".join(d for d in dat if d), "APPEND to a missing folder: no [TRYCREATE]: %r" % dat)
    ok(imap.close(), "CLOSE")

    step("CREATE, RENAME with a child, DELETE")
    ok(imap.create("Projects"), "CREATE Projects")
    ok(imap.create("Projects/Alpha"), "CREATE Projects/Alpha")
    typ, dat = imap.create("Projects")
    eq(typ, "NO", "CREATE of an existing folder")
    typ, dat = imap.append("Projects/Alpha", None, None, appended)
    eq(typ, "OK", "APPEND to Projects/Alpha: %r" % dat)
    f = list_folders(imap)
    check("Projects" in f and "Projects/Alpha" in f, "LIST after CREATE: %r" % list(f))
    check("\\haschildren" in f["Projects"][0], "Projects has no \\HasChildren: %r" % (f["Projects"][0],))
    check("\\hasnochildren" in f["Projects/Alpha"][0], "Projects/Alpha has no \\HasNoChildren: %r" % (f["Projects/Alpha"][0],))
    eq(sorted(list_folders(imap, "Projects/%")), ["Projects/Alpha"], "LIST \"\" Projects/%")
    ok(imap.rename("Projects", "Work"), "RENAME Projects Work")
    f = list_folders(imap)
    check("Work" in f and "Work/Alpha" in f, "LIST after RENAME lacks Work or Work/Alpha: %r" % list(f))
    check("Projects" not in f and "Projects/Alpha" not in f, "LIST after RENAME still has Projects: %r" % list(f))
    eq(status(imap, "Work/Alpha", "MESSAGES")["MESSAGES"], 1, "STATUS Work/Alpha MESSAGES (the child's message moved with it)")
    typ, dat = imap.rename("Work", "Archive")
    eq(typ, "NO", "RENAME onto an existing folder")
    typ, dat = imap.rename("Work", "Work/Alpha/Deeper")
    eq(typ, "NO", "RENAME of a folder into its own child")

    step("SUBSCRIBE, LSUB, UNSUBSCRIBE")
    ok(imap.subscribe("Work"), "SUBSCRIBE Work")
    ls = list_folders(imap, "*", cmd="LSUB")
    check("Work" in ls and "Work/Alpha" not in ls, "LSUB after SUBSCRIBE Work: %r" % list(ls))
    ok(imap.unsubscribe("Work"), "UNSUBSCRIBE Work")
    ls = list_folders(imap, "*", cmd="LSUB")
    check("Work" not in ls, "LSUB after UNSUBSCRIBE Work: %r" % list(ls))

    ok(imap.delete("Work/Alpha"), "DELETE Work/Alpha")
    ok(imap.delete("Work"), "DELETE Work")
    f = list_folders(imap)
    check(not any(n.startswith("Work") for n in f), "LIST after DELETE still has Work: %r" % list(f))
    typ, dat = imap.delete("Work")
    eq(typ, "NO", "DELETE of a folder that no longer exists")
    typ, dat = imap.delete("INBOX")
    eq(typ, "NO", "DELETE INBOX")
    typ, dat = imap.select("Work")
    eq(typ, "NO", "SELECT of a deleted folder")

    step("STATUS")
    st = status(imap, "INBOX", "MESSAGES UIDNEXT UIDVALIDITY UNSEEN")
    eq(st["MESSAGES"], 2, "STATUS INBOX MESSAGES")
    eq(st["UIDVALIDITY"], uidvalidity, "STATUS INBOX UIDVALIDITY")
    check(st["UIDNEXT"] > inbox_uids[3], "STATUS INBOX UIDNEXT %d not above the last UID given %d" % (st["UIDNEXT"], inbox_uids[3]))
    eq(st["UNSEEN"], 2, "STATUS INBOX UNSEEN")
    st = status(imap, "INBOX", "SIZE")
    eq(st["SIZE"], len(plain["stored_b"]) + len(big["stored_b"]), "STATUS INBOX (SIZE)")

    step("IDLE")
    # A second session idles on INBOX; this one must see the new message
    # at its next NOOP.
    exists = int(ok(imap.select("INBOX"), "SELECT INBOX before IDLE")[0])
    raw = RawSession(host, int(port))
    raw.command("LOGIN %s %s" % (quote(user), quote(password)))
    selected = raw.command("SELECT INBOX")
    raw_exists = [int(m.group(1)) for m in (re.match(rb"\* (\d+) EXISTS$", l) for l in selected) if m]
    eq(raw_exists, [exists], "EXISTS in the idling session's SELECT")
    raw.send(b"i1 IDLE\r\n")
    while True:
        line = raw.line(time.time() + 10)
        if line is None:
            fail("no continuation request for IDLE within 10 s")
        if line.startswith(b"+"):
            break
        if line.startswith(b"i1 "):
            fail("IDLE refused: %r" % line)
    print("IDLING", flush=True)
    got_exists = new_exists = None
    deadline = time.time() + 20
    while got_exists is None:
        line = raw.line(deadline)
        if line is None:
            break
        m = re.match(rb"\* (\d+) EXISTS$", line)
        if m:
            got_exists, new_exists = time.time(), int(m.group(1))
    stdin_line = sys.stdin.readline().split()
    if len(stdin_line) != 2 or stdin_line[0] != "DELIVERED":
        fail("the test did not say when it delivered: %r" % stdin_line)
    delivered = float(stdin_line[1])
    if got_exists is None:
        fail("no EXISTS during IDLE within 20 s; the delivery's 250 came %.3f s before the wait ended"
             % (deadline - delivered))
    lag = got_exists - delivered
    print("EXISTS %.3f s after the 250" % lag, flush=True)
    check(lag < 1.0, "EXISTS came %.3f s after the delivery's 250, want < 1 s" % lag)
    eq(new_exists, exists + 1, "EXISTS count after the delivery")
    raw.send(b"DONE\r\n")
    while True:
        line = raw.line(time.time() + 10)
        if line is None:
            fail("no reply to DONE within 10 s")
        if line.startswith(b"i1 "):
            check(line.startswith(b"i1 OK"), "IDLE ended with %r" % line)
            break
    raw.command("LOGOUT", want=b"OK")
    raw.close()

    ok(imap.noop(), "NOOP in the first session")
    eq(imap.untagged_responses.get("EXISTS", [b"0"])[-1], str(new_exists).encode(),
       "EXISTS seen by the first session's NOOP")
    v = fetch_one(imap, str(new_exists), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)")
    eq(v["BODY[HEADER.FIELDS (SUBJECT)]"], ("Subject: %s\r\n\r\n" % spec["idle_subject"]).encode(),
       "Subject of the message delivered during IDLE")
    step("NOOP and LOGOUT")
    ok(imap.noop(), "NOOP")
    typ, dat = imap.logout()
    eq(typ, "BYE", "LOGOUT")
    print("ALL CHECKS PASSED", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    except (imaplib.IMAP4.error, OSError) as e:
        print("FAIL: imaplib: %s: %s" % (type(e).__name__, e), flush=True)
        sys.exit(1)
