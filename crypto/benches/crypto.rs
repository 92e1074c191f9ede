//! Benchmarks of the crypto core: tokenization, envelope seal/open, key grants.
//!
//! `cargo bench -p renkei-crypto`; results and the comparison with `openssl
//! speed` are in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, reason = "a benchmark aborts if its set-up fails")]
#![allow(
    missing_docs,
    reason = "criterion macros generate undocumented functions"
)]

use std::hint::black_box;
use std::time::Duration;

use chrono::NaiveDate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use renkei_crypto::envelope::{EnvelopeHeader, derive_dek, open, seal};
use renkei_crypto::grant::{GrantOpener, GrantSealer, RecipientSecretKey, open_grant, seal_grant};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};
use renkei_crypto::token::{record_id, subject_binding, subject_token};

fn identity() -> Identity {
    Identity {
        insurer_number: "０１３８００５７".into(),
        symbol: "１２－３".into(),
        number: "４５６７８".into(),
        birth_date: "1980-04-01".into(),
        sex: Sex::Female,
        branch: None,
    }
}

fn tokens(c: &mut Criterion) {
    let key = TokenKey::generate(KeyVersion::V1);
    let canonical = identity().canonical().unwrap();
    let mut group = c.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("subject_token", |b| {
        b.iter(|| subject_token(&key, black_box(&canonical)))
    });
    group.bench_function("canonicalize+subject_token", |b| {
        let typed = identity();
        b.iter(|| subject_token(&key, &black_box(&typed).canonical().unwrap()))
    });
    let record_key = RecordKey::generate(KeyVersion::V1);
    group.bench_function("record_id", |b| {
        b.iter(|| {
            record_id(
                &record_key,
                black_box("kenshin-2024-000123"),
                "checkup.lipids",
            )
        })
    });
    group.finish();
}

fn envelopes(c: &mut Criterion) {
    let key = RecordKey::generate(KeyVersion::V1);
    let token_key = TokenKey::generate(KeyVersion::V1);
    let header = EnvelopeHeader {
        record_id: record_id(&key, "kenshin-2024-000123", "checkup.lipids"),
        subject_binding: subject_binding(
            &key,
            &record_id(&key, "kenshin-2024-000123", "checkup.lipids"),
            subject_token(&token_key, &identity().canonical().unwrap()).as_str(),
        ),
        category: "checkup.lipids".into(),
        source: "source:hachioji".into(),
        effective_date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    let mut group = c.benchmark_group("envelope");
    for size in [1024usize, 8192] {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("seal/{size}"), |b| {
            b.iter(|| seal(&key, header.clone(), black_box(&payload)).unwrap())
        });
        let sealed = seal(&key, header.clone(), &payload).unwrap();
        let dek = derive_dek(&key, &header.record_id);
        group.bench_function(format!("open/{size}"), |b| {
            b.iter(|| open(&dek, black_box(&sealed)).unwrap())
        });
    }
    group.finish();
}

fn grants(c: &mut Criterion) {
    let key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&key, "kenshin-2024-000123", "checkup.lipids");
    let dek = derive_dek(&key, &id);
    let recipient = RecipientSecretKey::generate(KeyVersion::V1);
    let public = recipient.public_key();
    let mut group = c.benchmark_group("grant");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal", |b| {
        b.iter(|| seal_grant(&public, black_box(&id), "phr:asmile", &dek).unwrap())
    });
    let grant = seal_grant(&public, &id, "phr:asmile", &dek).unwrap();
    group.bench_function("open", |b| {
        b.iter(|| open_grant(&recipient, black_box(&id), "phr:asmile", &grant).unwrap())
    });
    // Within a batch (v2): the HPKE setup is paid once per round and per recipient.
    let sealer = GrantSealer::new(&public, "phr:asmile").unwrap();
    group.bench_function("seal_in_batch", |b| {
        b.iter(|| sealer.seal(black_box(&id), &dek).unwrap())
    });
    let opener = GrantOpener::new(&recipient, "phr:asmile");
    let in_batch = sealer.seal(&id, &dek).unwrap();
    group.bench_function("open_in_batch", |b| {
        b.iter(|| opener.open(black_box(&id), &in_batch).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = tokens, envelopes, grants
}
criterion_main!(benches);
