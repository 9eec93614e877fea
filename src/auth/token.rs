//! Session tokens: HS256 JWTs signed with a 64-byte secret generated on first start and kept in
//! `<data_dir>/jwt_secret` (mode 0600). Deleting the file signs everyone out.

use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// File name of the signing secret inside the data dir.
pub const SECRET_FILE: &str = "jwt_secret";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub iat: u64,
    pub exp: u64,
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

/// Signing and verification keys. The secret itself is never kept in a `Debug`-able field.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
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
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue(&self, user_id: Uuid) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "secret is shorter than 32 bytes; delete it to generate a new one",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = vec![0u8; 64];
    rand::rng().fill_bytes(&mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_with_mode_0600_and_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path(), 60).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(keys.verify(&keys.issue(id)).unwrap().sub, id);
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
        assert_eq!(again.verify(&keys.issue(id)).unwrap().sub, id);
        // Another install's secret does not verify our tokens.
        let other = TokenKeys::load_or_create(tempfile::tempdir().unwrap().path(), 60).unwrap();
        assert!(other.verify(&keys.issue(id)).is_err());
        assert!(keys.verify("not.a.jwt").is_err());
    }
}
