//! Signed download links for agent binaries, like S3 presigned URLs: the link names the
//! agent, the version and an expiry time, and carries an HMAC-SHA256 of them under a secret
//! kept in `<data_dir>/link_secret` (created on first start, mode 0600). Anyone holding the
//! link may download that version until it expires, without a session; changing any part of
//! it, or deleting the secret, invalidates it.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::records::hex;

/// File name of the link secret inside the data dir.
pub const SECRET_FILE: &str = "link_secret";

/// How long a link stays valid.
pub const LINK_TTL_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the download link's signature does not match; ask for a new link")]
    BadSignature,
    #[error("the download link expired; ask for a new link")]
    Expired,
}

/// Signs and checks links. The secret is never in a `Debug`-able field.
pub struct LinkSigner {
    key: Vec<u8>,
}

impl LinkSigner {
    /// Loads the secret from the data dir, creating it on first start. Blocking (file I/O).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            key: crate::config::read_or_create_secret(&data_dir.join(SECRET_FILE))?,
        })
    }

    fn mac(&self, agent: Uuid, version: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{agent}\n{version}\n{expires}").as_bytes());
        mac
    }

    /// The signature (lowercase hex) of a link to `version` of `agent` valid until
    /// `expires` (Unix seconds).
    pub fn sign(&self, agent: Uuid, version: &str, expires: u64) -> String {
        let tag = self.mac(agent, version, expires).finalize().into_bytes();
        hex(&tag)
    }

    /// Checks a link's signature (in constant time), then its expiry against `now`.
    pub fn verify(
        &self,
        agent: Uuid,
        version: &str,
        expires: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), LinkError> {
        let tag = decode_hex(signature).ok_or(LinkError::BadSignature)?;
        self.mac(agent, version, expires)
            .verify_slice(&tag)
            .map_err(|_| LinkError::BadSignature)?;
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_not_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LinkSigner::load_or_create(dir.path()).unwrap();
        let agent = Uuid::new_v4();
        let sig = signer.sign(agent, "1.0.0", 1_000);
        assert_eq!(signer.verify(agent, "1.0.0", 1_000, &sig, 999), Ok(()));
        assert_eq!(
            signer.verify(agent, "1.0.0", 1_000, &sig, 1_000),
            Err(LinkError::Expired)
        );
        // Any change to what was signed, or to the signature, breaks it.
        let bad = Err(LinkError::BadSignature);
        assert_eq!(signer.verify(agent, "1.0.1", 1_000, &sig, 0), bad);
        assert_eq!(signer.verify(agent, "1.0.0", 2_000, &sig, 0), bad);
        assert_eq!(signer.verify(Uuid::new_v4(), "1.0.0", 1_000, &sig, 0), bad);
        assert_eq!(signer.verify(agent, "1.0.0", 1_000, "zz", 0), bad);
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(signer.verify(agent, "1.0.0", 1_000, &flipped, 0), bad);
        // The same secret after a restart signs the same way.
        let again = LinkSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(again.sign(agent, "1.0.0", 1_000), sig);
    }
}
