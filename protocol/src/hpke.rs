//! The HPKE `info` strings of the protocol: what binds a sealed message to its sender,
//! its recipient and its use, so that nothing sealed for one use opens for another.

use renkei_crypto::participant::ParticipantId;

/// The HPKE `info` of a key grant: `renkei key-grant v1`, the record id and the recipient,
/// each length-prefixed (made in `renkei_crypto::grant`, where grants are sealed and
/// opened).
pub use renkei_crypto::grant::grant_info;

/// Label opening the enrollment HPKE `info`.
pub const ENROLLMENT_LABEL: &[u8] = b"renkei enrollment v1";

/// The HPKE `info` of an enrollment request: `len ‖ "renkei enrollment v1" ‖ len ‖
/// source ‖ len ‖ requester`, each `len` a u16 big-endian byte count (participant ids
/// are at most 76 bytes). The AAD is empty.
pub fn enrollment_info(source: &ParticipantId, requester: &ParticipantId) -> Vec<u8> {
    let source = source.to_string();
    let requester = requester.to_string();
    let mut info = Vec::new();
    for part in [ENROLLMENT_LABEL, source.as_bytes(), requester.as_bytes()] {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        info.extend_from_slice(&len.to_be_bytes());
        info.extend_from_slice(part);
    }
    info
}
