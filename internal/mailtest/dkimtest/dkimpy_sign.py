"""Sign the message on stdin with dkimpy (relaxed/relaxed, rsa-sha256) and
write the signed message to stdout. Arguments: domain selector keyfile."""
import sys

import dkim

domain, selector, keyfile = sys.argv[1], sys.argv[2], sys.argv[3]
msg = sys.stdin.buffer.read()
with open(keyfile, "rb") as f:
    key = f.read()
sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date"])
sys.stdout.buffer.write(sig + msg)
