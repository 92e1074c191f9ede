#!/usr/bin/env python3
"""Checks what the hub's transparency log produced with implementations not written for
Renkei: pymerkle (RFC 9162 trees and proofs) and pyca/cryptography (Ed25519).

Input (JSON file, argv[1]): the log's verifier key, a signed checkpoint at an old and a
new size, every leaf's data (hex) up to the new size, inclusion proofs and a consistency
proof as the hub computed them (RFC 9162 audit paths, base64, bottom-up).

Checks: both notes parse as C2SP checkpoints and carry a valid Ed25519 signature by the
key (key id per C2SP signed-note); pymerkle's root over the leaves equals each note's
root; each of the hub's proofs, laid out as pymerkle lays out the proof for the same
index and sizes, verifies with pymerkle against the roots from the notes. Exit 0 when
all hold, 1 otherwise (with the reason).
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pymerkle import InmemoryTree, MerkleProof, verify_consistency, verify_inclusion
# pymerkle's own layout of a consistency proof (the leaf range of each hash); pinned
# version 7.0.0 (.ci/run).
from pymerkle.core import _consistency_path_layout


def fail(msg):
    print(f"interop: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_vkey(vkey):
    name, key_id, key = vkey.split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 0x01 or len(raw) != 33:
        fail("vkey is not an Ed25519 signed-note key")
    want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if want.hex() != key_id:
        fail("vkey key id does not match its key")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, vkey):
    name, key_id, pub = parse_vkey(vkey)
    text, sep, sigs = note.rpartition("\n\n")
    if not sep:
        fail("note has no signature block")
    text += "\n"
    ok = False
    for line in sigs.strip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            fail(f"bad signature line {line!r}")
        signer, sig = line[2:].split(" ", 1)
        sig = base64.b64decode(sig)
        if signer == name and sig[:4] == key_id:
            pub.verify(sig[4:], text.encode())  # raises on a bad signature
            ok = True
    if not ok:
        fail("no signature by the log key")
    origin, size, root = text.rstrip("\n").split("\n")[:3]
    if origin != name:
        fail("origin is not the key name")
    return int(size), base64.b64decode(root)


def rfc9162_ranges(m, lo, hi, b):
    """The leaf ranges of the hashes of SUBPROOF(m, D[lo:hi], b), in RFC 9162 order."""
    n = hi - lo
    if m == n:
        return [] if b else [(lo, hi)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return rfc9162_ranges(m, lo, lo + k, b) + [(lo + k, hi)]
    return rfc9162_ranges(m - k, lo + k, hi, False) + [(lo, lo + k)]


def main():
    data = json.load(open(sys.argv[1]))
    old_size, old_root = open_note(data["old_note"], data["vkey"])
    new_size, new_root = open_note(data["new_note"], data["vkey"])
    leaves = [bytes.fromhex(h) for h in data["leaves"]]
    if len(leaves) != new_size:
        fail("leaf count is not the new size")
    tree = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        tree.append_entry(leaf)
    if tree.get_root(old_size) != old_root or tree.get_root(new_size) != new_root:
        fail("pymerkle's root differs from a signed checkpoint's root")

    for p in data["inclusion"]:
        index, size = p["index"] + 1, p["size"]  # pymerkle counts leaves from one
        ours = [base64.b64decode(h) for h in p["proof"]]
        theirs = tree.prove_inclusion(index, size).serialize()
        base = bytes.fromhex(theirs["path"][0])
        if len(theirs["path"]) != len(ours) + 1:
            fail(f"inclusion proof of {index} in {size} has {len(ours)} hashes")
        theirs["path"] = [base.hex()] + [h.hex() for h in ours]
        root = new_root if size == new_size else tree.get_root(size)
        try:
            verify_inclusion(base, root, MerkleProof.deserialize(theirs), index=index, size=size)
        except Exception as e:  # pymerkle.proof.InvalidProof
            fail(f"inclusion proof of {index} in {size}: {e}")

    c = data["consistency"]
    ours = [base64.b64decode(h) for h in c["proof"]]
    theirs = tree.prove_consistency(old_size, new_size).serialize()
    # The hub's hashes are in RFC 9162 order (SUBPROOF, section 2.1.4.1), which leaves
    # out the old root when the old tree is a complete left subtree; pymerkle orders the
    # same subtrees its own way. Match them by the leaf range each one covers.
    rfc = rfc9162_ranges(old_size, 0, new_size, True)
    if len(rfc) != len(ours):
        fail(f"consistency proof has {len(ours)} hashes, RFC 9162 lays out {len(rfc)}")
    by_range = dict(zip(rfc, ours))
    by_range.setdefault((0, old_size), old_root)
    _, _, ranges = _consistency_path_layout(old_size, new_size)
    if set(ranges) - set(by_range) or len(ranges) != len(theirs["path"]):
        fail("consistency proof does not cover pymerkle's subtrees")
    theirs["path"] = [by_range[r].hex() for r in ranges]
    try:
        verify_consistency(old_root, new_root, MerkleProof.deserialize(theirs),
                           prior_size=old_size, later_size=new_size)
    except Exception as e:
        fail(f"consistency proof {old_size} -> {new_size}: {e}")
    print(f"interop OK: notes {old_size} and {new_size}, {len(data['inclusion'])} inclusion "
          f"proofs and a consistency proof verified by pymerkle and pyca/cryptography")


if __name__ == "__main__":
    main()
