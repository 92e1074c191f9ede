//! Consent coverage: the consent crate's one definition (`renkei_consent::coverage`), run
//! inside the caller's transaction.

pub use renkei_consent::coverage::{
    Cover, SubjectCover, covering_for, covering_subjects, in_force, in_period,
};
