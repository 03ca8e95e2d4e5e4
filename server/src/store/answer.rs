//! The stored admission as its caller is answered: with the hash of the entry that recorded
//! it, so a retry returns exactly the original answer. The writer stores the admission as the
//! decision gave it; the hash is placed here, in the reading caller's task.

use admission_contract::pb;
use prost::Message;

use super::Appended;

/// A writer reply as the caller sees it: a duplicate's admission with its entry hash.
pub(super) fn placed((appended, entry_hash): (Appended, Option<String>)) -> Appended {
    match appended {
        Appended::Duplicate { admission } => Appended::Duplicate {
            admission: with_entry_hash(admission, entry_hash.as_deref()),
        },
        other => other,
    }
}

/// `encoded` with `audit_entry_hash` set to `entry_hash`; kept as given when it is not an
/// admission (whoever decodes it reports that) or the entry is unknown.
pub(super) fn with_entry_hash(encoded: Vec<u8>, entry_hash: Option<&str>) -> Vec<u8> {
    let Some(entry_hash) = entry_hash else {
        return encoded;
    };
    match pb::Admission::decode(encoded.as_slice()) {
        Ok(mut admission) => {
            admission.audit_entry_hash = entry_hash.to_owned();
            admission.encode_to_vec()
        }
        Err(_) => encoded,
    }
}
