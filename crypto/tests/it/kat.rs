//! Known-answer tests for every primitive the crate builds on, typed in from
//! the RFCs: RFC 4231 (HMAC-SHA256), RFC 5869 (HKDF-SHA256), the GCM spec's
//! test case 16 (AES-256-GCM with AAD), RFC 9180 A.1 (HPKE).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use hpke::aead::{AesGcm128, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{CryptoRng, Error as RngError, RngCore};
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as RingNonce, UnboundKey};
use sha2::Sha256;

fn h(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn rfc4231_hmac_sha256() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than \
              block-size data. The key needs to be hashed before being used by the \
              HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (i, (key, data, expected)) in cases.iter().enumerate() {
        assert_eq!(
            hex::encode(hmac_sha256(key, data)),
            *expected,
            "case index {i}"
        );
    }
}

#[test]
fn rfc5869_hkdf_sha256() {
    let seq = |from: u8, to: u8| (from..=to).collect::<Vec<u8>>();
    let cases = [
        (
            vec![0x0b; 22],
            Some(seq(0x00, 0x0c)),
            seq(0xf0, 0xf9),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
             34007208d5b887185865",
        ),
        (
            seq(0x00, 0x4f),
            Some(seq(0x60, 0xaf)),
            seq(0xb0, 0xff),
            "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
             59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
             cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            vec![0x0b; 22],
            None,
            vec![],
            "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d\
             9d201395faa4b61a96c8",
        ),
    ];
    for (i, (ikm, salt, info, prk, okm)) in cases.iter().enumerate() {
        let (got_prk, kdf) = Hkdf::<Sha256>::extract(salt.as_deref(), ikm);
        assert_eq!(hex::encode(got_prk), *prk, "prk, case {}", i + 1);
        let mut out = vec![0; okm.len() / 2];
        kdf.expand(info, &mut out).unwrap();
        assert_eq!(hex::encode(&out), *okm, "okm, case {}", i + 1);
    }
}

/// Test case 16 of McGrew and Viega, "The Galois/Counter Mode of Operation":
/// 256-bit key, 96-bit IV, 60-byte plaintext, 20-byte AAD.
#[test]
fn gcm_spec_test_case_16_aes_256_gcm() {
    let key = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    let iv = h("cafebabefacedbaddecaf888");
    let plaintext = h(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let expected = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                    8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
                    76fc6ece0f4e1768cddf8853bb2d551b";
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(hex::encode(&sealed), expected);
    let opened = cipher
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(opened, plaintext);

    // The same vector through ring, the AEAD of record envelopes.
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let mut buffer = plaintext.clone();
    let nonce = RingNonce::try_assume_unique_for_key(&iv).unwrap();
    ring_key
        .seal_in_place_append_tag(nonce, Aad::from(&aad), &mut buffer)
        .unwrap();
    assert_eq!(hex::encode(&buffer), expected);
    let nonce = RingNonce::try_assume_unique_for_key(&iv).unwrap();
    let opened = ring_key
        .open_in_place(nonce, Aad::from(&aad), &mut buffer)
        .unwrap();
    assert_eq!(opened, plaintext.as_slice());
}

/// An RNG that returns fixed bytes, so HPKE's ephemeral key is the RFC's `ikmE`.
struct FixedRng(Vec<u8>);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("hpke only calls fill_bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("hpke only calls fill_bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "fixed rng exhausted");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

/// One RFC 9180 base-mode vector: key pair derivation, encapsulation, and the
/// first three encryptions of the sequence (the nonce advances per message).
struct Vector {
    ikm_e: &'static str,
    ikm_r: &'static str,
    pk_rm: &'static str,
    enc: &'static str,
    cts: [&'static str; 3],
}

const INFO: &str = "4f6465206f6e2061204772656369616e2055726e"; // "Ode on a Grecian Urn"
const PT: &str = "4265617574792069732074727574682c20747275746820626561757479"; // "Beauty is truth, truth beauty"
const AADS: [&str; 3] = ["436f756e742d30", "436f756e742d31", "436f756e742d32"]; // "Count-0".."Count-2"

fn check_vector<A: hpke::aead::Aead>(v: &Vector) {
    type K = X25519HkdfSha256;
    let (sk_r, pk_r) = K::derive_keypair(&h(v.ikm_r));
    assert_eq!(hex::encode(pk_r.to_bytes()), v.pk_rm);
    let mut rng = FixedRng(h(v.ikm_e));
    let (enc, mut sender) =
        hpke::setup_sender::<A, HkdfSha256, K, _>(&OpModeS::Base, &pk_r, &h(INFO), &mut rng)
            .unwrap();
    assert_eq!(hex::encode(enc.to_bytes()), v.enc);
    let enc = <K as Kem>::EncappedKey::from_bytes(&h(v.enc)).unwrap();
    let mut receiver =
        hpke::setup_receiver::<A, HkdfSha256, K>(&OpModeR::Base, &sk_r, &enc, &h(INFO)).unwrap();
    for (aad, ct) in AADS.iter().zip(v.cts) {
        assert_eq!(hex::encode(sender.seal(&h(PT), &h(aad)).unwrap()), ct);
        assert_eq!(receiver.open(&h(ct), &h(aad)).unwrap(), h(PT));
    }
}

/// RFC 9180 A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
#[test]
fn rfc9180_a1_base_x25519_aes128gcm() {
    check_vector::<AesGcm128>(&Vector {
        ikm_e: "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234",
        ikm_r: "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
        pk_rm: "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
        enc: "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
        cts: [
            "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9\
             6d8770ac83d07bea87e13c512a",
            "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab25\
             1c03d0c22a56b8ca42c2063b84",
            "498dfcabd92e8acedc281e85af1cb4e3e31c7dc394a1ca20e173cb7251649158\
             8d96a19ad4a683518973dcc180",
        ],
    });
}

/// The same suite with AES-256-GCM, the one key grants use. RFC 9180 does not
/// print it; this vector is from the CFRG test-vectors file that accompanies
/// the RFC (mode 0, kem 0x0020, kdf 0x0001, aead 0x0002).
#[test]
fn cfrg_base_x25519_aes256gcm() {
    check_vector::<AesGcm256>(&Vector {
        ikm_e: "2cd7c601cefb3d42a62b04b7a9041494c06c7843818e0ce28a8f704ae7ab20f9",
        ikm_r: "dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee",
        pk_rm: "430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c",
        enc: "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256",
        cts: [
            "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be99319\
             80a41de125a925cdad859d5b7a",
            "2c43aff25343fdbff864506f0818b9d87df84ea01b1a2144d23b4d40c26bf655\
             fdf197fe40297a8aebeed5cc2d",
            "e0a8f2cf92ff61215edbb8c55dc31fe9e2eb42a5685867bb6854211542099f9e\
             940c4b41c192bc390835b1a5f7",
        ],
    });
}
