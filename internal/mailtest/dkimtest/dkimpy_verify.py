"""Verify every DKIM signature of the message on stdin with dkimpy, the
public keys coming from the DNS server given as host and port (the test's
fake server), never the system's resolvers.

Prints one line per signature, "d=DOMAIN s=SELECTOR a=ALGO pass|fail", and
exits 0 only if there was at least one signature and all passed.
"""
import sys

import dkim
import dns.message
import dns.query
import dns.rdatatype

host, port = sys.argv[1], int(sys.argv[2])


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    q = dns.message.make_query(name, dns.rdatatype.TXT)
    r = dns.query.udp(q, host, port=port, timeout=timeout)
    for rrset in r.answer:
        for rd in rrset:
            return b"".join(rd.strings)
    return None


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
ok = len(sigs) > 0
for i, v in enumerate(sigs):
    tags = dkim.util.parse_tag_value(b"".join(v.split()))
    try:
        good = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print("error:", e, file=sys.stderr)
        good = False
    ok = ok and good
    print("d=%s s=%s a=%s %s" % (tags[b"d"].decode(), tags[b"s"].decode(), tags[b"a"].decode(),
                                 "pass" if good else "fail"))
sys.exit(0 if ok else 1)
