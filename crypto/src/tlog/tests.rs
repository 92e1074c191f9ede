//! Known-answer tests: RFC 6962 roots (the Certificate Transparency test leaves), the
//! signed-note example of Go's `sumdb/note`, and proofs that fail when altered.

use super::note::{self, Checkpoint, NoteSigner, NoteVerifier};
use super::*;
use crate::keys::KeyVersion;
use crate::sign::SigningKey;

/// The eight leaves of RFC 6962's reference tests (certificate-transparency `merkle_tree_test`).
fn leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Appends `data` as the log does, fetching nothing: every hash is kept in memory.
fn build(data: &[Vec<u8>]) -> Hashes {
    let mut hashes = Hashes::new();
    for (n, d) in data.iter().enumerate() {
        let n = n as u64;
        let Step::Done(new) = hashes.append(n, leaf_hash(d)).unwrap() else {
            panic!("append of {n} needs hashes that are not stored");
        };
        for (i, h) in new.into_iter().enumerate() {
            hashes.insert(stored_index(0, n) + i as u64, h);
        }
    }
    hashes
}

fn done<T: std::fmt::Debug>(s: Result<Step<T>>) -> T {
    match s.unwrap() {
        Step::Done(v) => v,
        Step::Need(n) => panic!("needs {n:?}"),
    }
}

#[test]
fn roots_match_rfc6962_reference_vectors() {
    let hashes = build(&leaves());
    for (size, want) in ROOTS.iter().enumerate() {
        let root = done(hashes.root(size as u64 + 1));
        assert_eq!(hex::encode(root.0), *want, "size {}", size + 1);
    }
    assert_eq!(stored_count(8), 15);
}

#[test]
fn every_inclusion_and_consistency_proof_verifies_and_altered_ones_fail() {
    let data: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let hashes = build(&data);
    for size in [1u64, 2, 3, 7, 8, 255, 256, 257, 300] {
        let root = done(hashes.root(size));
        for index in [0, size / 2, size - 1] {
            let proof = done(hashes.inclusion(size, index));
            let leaf = leaf_hash(&data[index as usize]);
            check_inclusion(&proof, size, root, index, leaf).unwrap();
            assert!(check_inclusion(&proof, size, root, index, leaf_hash(b"x")).is_err());
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0] = node_hash(*first, *first);
                assert!(check_inclusion(&bad, size, root, index, leaf).is_err());
            }
        }
        for old in [1u64, 2, 5, size / 2 + 1, size] {
            if old > size {
                continue;
            }
            let old_root = done(hashes.root(old));
            let proof = done(hashes.consistency(size, old));
            check_consistency(&proof, size, root, old, old_root).unwrap();
            // Another old tree (a fork) does not extend to this one.
            let forked = node_hash(old_root, old_root);
            assert!(check_consistency(&proof, size, root, old, forked).is_err());
            // A shrink is refused outright.
            if old < size {
                assert!(check_consistency(&proof, old, old_root, size, root).is_err());
            }
        }
    }
}

#[test]
fn proofs_from_tiles_match_proofs_from_stored_hashes() {
    let data: Vec<Vec<u8>> = (0..70_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let hashes = build(&data);
    let (new, old) = (70_000u64, 65_537u64);
    let root = done(hashes.root(new));
    let mut tiles = Tiles::new();
    let mut rounds = 0;
    let proof = loop {
        rounds += 1;
        assert!(rounds < MAX_ROUNDS);
        match tiles.consistency(new, root, old).unwrap() {
            Step::Done(p) => break p,
            Step::Need(_) => {
                for t in tiles.take_missing() {
                    let data = done(hashes.tile(&t));
                    tiles.insert(&t, data);
                }
            }
        }
    };
    assert_eq!(proof, done(hashes.consistency(new, old)));
    check_consistency(&proof, new, root, old, done(hashes.root(old))).unwrap();

    // A tile that does not belong to the tree is refused, whatever proof it would give.
    let mut forged = Tiles::new();
    let t = tile_from_path("tile/0/273.p/112").unwrap();
    forged.insert(&t, vec![7u8; 112 * HASH_SIZE]);
    for t in ["tile/1/001.p/17", "tile/0/256", "tile/2/000.p/1"] {
        let t = tile_from_path(t).unwrap();
        forged.insert(&t, done(hashes.tile(&t)));
    }
    let mut outcome = forged.consistency(new, root, old);
    for _ in 0..MAX_ROUNDS {
        if !matches!(outcome, Ok(Step::Need(_))) {
            break;
        }
        for t in forged.take_missing() {
            if tile_path(&t) != "tile/0/273.p/112" {
                let data = done(hashes.tile(&t));
                forged.insert(&t, data);
            }
        }
        outcome = forged.consistency(new, root, old);
    }
    assert!(outcome.is_err(), "{outcome:?}");
}

#[test]
fn tile_paths_are_c2sp_paths() {
    for p in [
        "tile/0/000",
        "tile/0/x001/234.p/5",
        "tile/1/000.p/1",
        "tile/entries/x001/000",
        "tile/entries/007.p/255",
        "tile/0/x004/x294/x967/295",
        "tile/3/255",
    ] {
        assert_eq!(tile_path(&tile_from_path(p).unwrap()), p);
    }
    let t = tile_from_path("tile/entries/x001/002.p/3").unwrap();
    assert!(t.is_data());
    assert_eq!(tile_leaves(&t), (1002 * 256, 3));
    for bad in [
        "tile/8/0/000",
        "tile/0/1",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/data/000",
        "tile/0/../000",
        "tiles/0/000",
        "tile/0/x004/x294/x967/296",
        "tile/3/x001/000",
        "tile/7/001",
        "tile/entries/x018/x446/x744/x073/x709/x551/615",
    ] {
        assert!(tile_from_path(bad).is_err(), "{bad}");
    }
    let bundle = entry_bundle([&b"ab"[..], b"", b"xyz"]).unwrap();
    assert_eq!(bundle, b"\0\x02ab\0\0\0\x03xyz");
    assert_eq!(
        split_entry_bundle(&bundle).unwrap(),
        vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]
    );
    assert!(split_entry_bundle(b"\0\x05ab").is_err());
}

/// Go's `sumdb/note` example (also c2sp.org/signed-note): our key parsing, key id and
/// Ed25519 signing give the published note byte for byte.
#[test]
fn signed_note_known_answer() {
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let signed = "If you think cryptography is the answer to your problem,\n\
                  then you don't know what your problem is.\n\
                  \n\
                  — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    let verifier = NoteVerifier::parse(vkey).unwrap();
    assert_eq!(verifier.vkey(), vkey);
    let note = signed_note::Note::from_bytes(signed.as_bytes()).unwrap();
    note.verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .unwrap();

    let skey = data_encoding::BASE64
        .decode(b"AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    let key = SigningKey::from_seed(skey[1..].try_into().unwrap(), KeyVersion::V1);
    let signer = NoteSigner::log("PeterNeumann", &key).unwrap();
    assert_eq!(signer.vkey(), vkey);
    let text = note::note_text(signed).unwrap();
    let mut mine = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    mine.add_sigs(&[&signer]).unwrap();
    assert_eq!(String::from_utf8(mine.to_bytes()).unwrap(), signed);

    for bad in [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
    ] {
        assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn checkpoints_sign_open_and_refuse_other_keys_and_origins() {
    let hashes = build(&leaves());
    let key = SigningKey::generate(KeyVersion::V1);
    let other = SigningKey::generate(KeyVersion::V1);
    let cp = Checkpoint {
        origin: "renkei.example/audit".into(),
        size: 8,
        root: done(hashes.root(8)),
        ledger: None,
    };
    let log = NoteSigner::log(&cp.origin, &key).unwrap();
    let signed = note::sign_checkpoint(&cp, &log).unwrap();
    assert!(signed.starts_with(&format!(
        "renkei.example/audit\n8\n{}\n\n— renkei.example/audit ",
        cp.root_base64()
    )));
    let verifier = NoteVerifier::parse(&log.vkey()).unwrap();
    assert_eq!(note::open_checkpoint(&signed, &verifier).unwrap(), cp);

    let impostor = NoteSigner::log(&cp.origin, &other).unwrap();
    let forged = note::sign_checkpoint(&cp, &impostor).unwrap();
    assert!(note::open_checkpoint(&forged, &verifier).is_err());
    let edited = signed.replacen("\n8\n", "\n9\n", 1);
    assert!(note::open_checkpoint(&edited, &verifier).is_err());
    // A log that signs under another name is not the pinned log.
    let renamed = NoteSigner::log("other.example/audit", &key).unwrap();
    let moved = Checkpoint {
        origin: "other.example/audit".into(),
        ..cp.clone()
    };
    let signed_elsewhere = note::sign_checkpoint(&moved, &renamed).unwrap();
    assert!(note::open_checkpoint(&signed_elsewhere, &verifier).is_err());
}

#[test]
fn cosignatures_cover_the_checkpoint_and_the_time() {
    let key = SigningKey::generate(KeyVersion::V1);
    let witness_key = SigningKey::generate(KeyVersion::V1);
    let cp = Checkpoint {
        origin: "renkei.example/audit".into(),
        size: 3,
        root: leaf_hash(b"r"),
        ledger: Some(note::LedgerHead {
            seq: 2,
            hash: "ab".repeat(32),
        }),
    };
    let signed = note::sign_checkpoint(&cp, &NoteSigner::log(&cp.origin, &key).unwrap()).unwrap();
    let witness = NoteSigner::witness(
        "renkei.example/witness/source:city-a",
        &witness_key,
        1_700_000_000,
    )
    .unwrap();
    let line = note::cosign(&signed, &witness).unwrap();
    assert!(
        line.starts_with("— renkei.example/witness/source:city-a "),
        "{line}"
    );
    // What a witness keeps of a note the hub padded with cosignature lines: the log's
    // signature alone.
    let log_verifier =
        NoteVerifier::parse(&NoteSigner::log(&cp.origin, &key).unwrap().vkey()).unwrap();
    let padded = format!("{signed}{}", line.repeat(3));
    assert_eq!(
        note::log_signed_only(&padded, &log_verifier).unwrap(),
        signed
    );
    let verifier = NoteVerifier::parse(&witness.vkey()).unwrap();
    assert!(verifier.is_cosignature());
    assert_eq!(
        note::check_cosignature(&signed, &line, &verifier).unwrap(),
        1_700_000_000
    );

    // The signature bytes are key id, time, Ed25519 over `cosignature/v1\ntime T\n` + body.
    let sig = data_encoding::BASE64
        .decode(line.trim_end().rsplit(' ').next().unwrap().as_bytes())
        .unwrap();
    assert_eq!(sig.len(), 4 + 8 + 64);
    assert_eq!(&sig[4..12], &1_700_000_000u64.to_be_bytes());
    let message = format!("cosignature/v1\ntime 1700000000\n{}", cp.body().unwrap());
    witness_key
        .verifying_key()
        .verify(
            message.as_bytes(),
            &crate::sign::Signature::from_bytes(sig[12..].try_into().unwrap()),
        )
        .unwrap();

    // Over another checkpoint, or with the log's key type, it does not verify.
    let other = Checkpoint {
        size: 4,
        ..cp.clone()
    };
    let signed_other =
        note::sign_checkpoint(&other, &NoteSigner::log(&cp.origin, &key).unwrap()).unwrap();
    assert!(note::check_cosignature(&signed_other, &line, &verifier).is_err());
    let as_log = NoteVerifier::parse(
        &NoteSigner::log("renkei.example/witness/source:city-a", &witness_key)
            .unwrap()
            .vkey(),
    )
    .unwrap();
    assert!(note::check_cosignature(&signed, &line, &as_log).is_err());
}

#[test]
fn the_frontier_stores_and_roots_like_the_full_tree() {
    let data: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let full = build(&data);
    let mut f = Frontier::new();
    assert_eq!(f.root(), tlog_tiles::EMPTY_HASH);
    for (n, d) in data.iter().enumerate() {
        let n = n as u64;
        let stored = f.push(leaf_hash(d));
        let Step::Done(want) = full.append(n, leaf_hash(d)).unwrap() else {
            panic!()
        };
        assert_eq!(stored, want, "leaf {n}");
        assert_eq!(f.root(), done(full.root(n + 1)), "size {}", n + 1);
        // Reloaded from its stored hashes, it goes on the same way.
        let size = n + 1;
        let roots = Frontier::indexes(size)
            .iter()
            .map(|i| {
                done(full.compute(|h| tlog_tiles::HashReader::read_hashes(h, &[*i]))).remove(0)
            })
            .collect();
        assert_eq!(Frontier::from_hashes(size, roots).unwrap(), f);
    }
    assert_eq!(
        hex::encode(
            build(&leaves())
                .root(8)
                .map(|s| match s {
                    Step::Done(h) => h.0,
                    _ => panic!(),
                })
                .unwrap()
        ),
        ROOTS[7]
    );
    assert!(Frontier::from_hashes(3, vec![]).is_err());
}

#[test]
fn the_ledger_head_is_a_signed_extension_line() {
    let key = SigningKey::generate(KeyVersion::V1);
    let head = note::LedgerHead {
        seq: 17,
        hash: "0f".repeat(32),
    };
    let cp = Checkpoint {
        origin: "renkei.example/audit".into(),
        size: 5,
        root: leaf_hash(b"r"),
        ledger: Some(head.clone()),
    };
    let log = NoteSigner::log(&cp.origin, &key).unwrap();
    let signed = note::sign_checkpoint(&cp, &log).unwrap();
    assert!(signed.contains(&format!("\nrenkei-consent-ledger 17 {}\n\n", head.hash)));
    let verifier = NoteVerifier::parse(&log.vkey()).unwrap();
    assert_eq!(note::open_checkpoint(&signed, &verifier).unwrap(), cp);
    // The line is signed: another head breaks the signature.
    let edited = signed.replace("renkei-consent-ledger 17", "renkei-consent-ledger 16");
    assert!(note::open_checkpoint(&edited, &verifier).is_err());
    // A malformed head is refused, on signing and on reading.
    let bad = Checkpoint {
        ledger: Some(note::LedgerHead {
            seq: 1,
            hash: "xyz".into(),
        }),
        ..cp.clone()
    };
    assert!(note::sign_checkpoint(&bad, &log).is_err());
    assert!(
        Checkpoint::parse(
            b"o\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nrenkei-consent-ledger x y\n"
        )
        .is_err()
    );
    // One spelling only, and one line.
    let root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let h = "0f".repeat(32);
    for bad in [
        format!("o\n5\n{root}\nrenkei-consent-ledger +17 {h}\n"),
        format!("o\n5\n{root}\nrenkei-consent-ledger 017 {h}\n"),
        format!("o\n5\n{root}\nrenkei-consent-ledger 17 {h} x\n"),
        format!("o\n5\n{root}\nrenkei-consent-ledger 17 {h}\nrenkei-consent-ledger 18 {h}\n"),
    ] {
        assert!(Checkpoint::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    // Other extension lines are ignored.
    let other =
        Checkpoint::parse(b"o\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nsomething else\n")
            .unwrap();
    assert_eq!(other.ledger, None);
}
