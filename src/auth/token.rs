//! Session tokens: HS256 JWTs signed with a 64-byte secret generated on first start and kept in
//! `<data_dir>/jwt_secret` (mode 0600). Deleting the file signs everyone out.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::read_or_create_secret;

/// File name of the signing secret inside the data dir.
pub const SECRET_FILE: &str = "jwt_secret";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub iat: u64,
    pub exp: u64,
    /// The user's session generation when issued (see `tables::SESSION_GENERATIONS`): a
    /// password change moves the account to the next one, and older tokens stop working.
    /// Tokens from before generations existed read as 0.
    #[serde(default)]
    pub generation: u64,
    /// The session's id: signing out records it as ended (see `tables::ENDED_SESSIONS`), and
    /// the token stops working. Tokens from before sessions had ids carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid or expired token")]
    Invalid,
    #[error("cannot read or create the signing secret {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
}

/// How many verified tokens [`TokenKeys`] remembers before it starts over.
const VERIFIED_CAP: usize = 10_000;

/// Signing and verification keys. The secret itself is never kept in a `Debug`-able field.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    /// Tokens that verified, with their claims. A client sends the same token with every
    /// request, and checking its signature and parsing its claims each time was 4 % of the
    /// server's CPU under a submit load (3.1 µs per check; 0.19 µs from here, `cargo bench
    /// --bench engine -- token`). Keyed by the whole token, signature included, so only
    /// a token that verified is ever found here; expiry is checked at every use. A std Mutex:
    /// held for one map lookup or insert. Cleared when it reaches [`VERIFIED_CAP`].
    verified: Mutex<HashMap<String, Claims>>,
}

impl TokenKeys {
    /// Loads the secret from the data dir, creating it on first start. Blocking (file I/O).
    pub fn load_or_create(data_dir: &Path, ttl_secs: u64) -> Result<Self, TokenError> {
        let path = data_dir.join(SECRET_FILE);
        let secret = read_or_create_secret(&path).map_err(|source| TokenError::Secret {
            path: path.display().to_string(),
            source,
        })?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            ttl_secs,
            verified: Mutex::default(),
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A session token for `user_id` at session generation `generation`.
    pub fn issue(&self, user_id: Uuid, generation: u64) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + self.ttl_secs,
            generation,
            jti: Some(Uuid::new_v4()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, now_secs())
    }

    /// [`TokenKeys::verify`] at time `now` (seconds since the epoch).
    fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let known = self.verified().get(token).copied();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims =
                    jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
                        .map_err(|_| TokenError::Invalid)?
                        .claims;
                let mut verified = self.verified();
                if verified.len() >= VERIFIED_CAP {
                    verified.clear();
                }
                verified.insert(token.to_owned(), claims);
                claims
            }
        };
        // The same rule as the decoder's (no leeway): valid through the second `exp`.
        if claims.exp < now {
            self.verified().remove(token);
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        self.verified.lock().expect("verified tokens lock")
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_with_mode_0600_and_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path(), 60).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(keys.verify(&keys.issue(id, 0)).unwrap().sub, id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A restart reads the same secret, so old tokens stay valid.
        let again = TokenKeys::load_or_create(dir.path(), 60).unwrap();
        assert_eq!(again.verify(&keys.issue(id, 0)).unwrap().sub, id);
        // Another install's secret does not verify our tokens.
        let other = TokenKeys::load_or_create(tempfile::tempdir().unwrap().path(), 60).unwrap();
        assert!(other.verify(&keys.issue(id, 0)).is_err());
        assert!(keys.verify("not.a.jwt").is_err());
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_one_is_never_taken_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path(), 60).unwrap();
        let id = Uuid::new_v4();
        let token = keys.issue(id, 0);
        let now = now_secs();
        let claims = keys.verify_at(&token, now).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(
            keys.verify_at(&token, now).unwrap().sub,
            id,
            "answered from memory"
        );
        // One character inside the signature changed: another key, checked in full.
        let mut tampered = token.clone().into_bytes();
        let inside = tampered.len() - 10;
        tampered[inside] = if tampered[inside] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(keys.verify_at(&tampered, now).is_err());
        // Valid through its `exp` second, not after, remembered or not.
        assert!(keys.verify_at(&token, claims.exp).is_ok());
        assert!(keys.verify_at(&token, claims.exp + 1).is_err());
        assert!(
            keys.verify_at(&token, claims.exp + 1).is_err(),
            "forgotten once expired"
        );
    }
}
