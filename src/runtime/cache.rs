//! Compiled modules on disk, so a restart recompiles nothing.
//!
//! `<dir>/<module sha256>-<engine key>.cwasm` holds `Module::serialize` output behind a
//! header. The engine key is a hash of wasmtime's compatibility fingerprint (version, target,
//! settings), so another build or configuration never picks up a file it cannot run; opening
//! deletes the files of other keys.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "ZSCWASM2"
//! 8       32    HMAC-SHA256, under this install's cache key, of
//!               "<module sha256>-<engine key>\n" followed by the code
//! 40      ..    the code (`Module::serialize` output)
//! ```
//!
//! Deserializing trusts the bytes to be wasmtime's own output: it maps them as machine code.
//! So a file is loaded only when its MAC holds under the per-install key (a secret file of
//! the data dir, see [`KEY_FILE`]), which proves this server wrote it, for this module and
//! engine, and nobody changed it since: a planted, swapped or tampered file, or a torn write,
//! is deleted and the module compiled again (the first such file is logged as a warning,
//! later ones at debug). A failure here costs a compile; it never fails a task.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::{Engine, Module};

/// File name, inside the data dir, of the secret key that authenticates cache entries.
pub const KEY_FILE: &str = "module_cache_key";

const MAGIC: &[u8; 8] = b"ZSCWASM2";
/// Magic of the format before entries were authenticated (a bare sha256): never loaded now.
const UNAUTHENTICATED_MAGIC: &[u8; 8] = b"ZSCWASM1";
const HEADER: usize = MAGIC.len() + 32;

pub struct ModuleCache {
    dir: PathBuf,
    /// Suffix of this engine's files.
    engine_key: String,
    /// HMAC key of this install's entries. Never in a `Debug`-able field.
    key: Vec<u8>,
    /// Whether an entry was already refused and said so at `warn`: a directory of planted
    /// files would otherwise log one line per module.
    warned: AtomicBool,
}

impl ModuleCache {
    /// Opens (or creates) the cache in `dir` for `engine`, its entries authenticated under
    /// `key`, deleting entries no engine like it can load. Blocking.
    pub fn open(dir: &Path, engine: &Engine, key: &[u8]) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache = Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
            key: key.to_owned(),
            warned: AtomicBool::new(false),
        };
        let suffix = format!("-{}.cwasm", cache.engine_key);
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(&suffix)
                && let Err(e) = std::fs::remove_file(&path)
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a stale compiled module");
            }
        }
        Ok(cache)
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The MAC of an entry for the module with sha256 `hash`, holding `code`.
    fn mac(&self, hash: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{hash}-{}\n", self.engine_key).as_bytes());
        mac.update(code);
        mac
    }

    /// The compiled module of the wasm module with sha256 `hash`, if an authentic entry
    /// exists.
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Module> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read a compiled module; compiling again");
                return None;
            }
        };
        let authentic = bytes.len() >= HEADER
            && &bytes[..MAGIC.len()] == MAGIC
            && self
                .mac(hash, &bytes[HEADER..])
                .verify_slice(&bytes[MAGIC.len()..HEADER])
                .is_ok();
        if !authentic && bytes.starts_with(UNAUTHENTICATED_MAGIC) {
            tracing::debug!(path = %path.display(), "compiled module of the unauthenticated format deleted; compiling again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        if !authentic {
            self.refused(&path);
            return None;
        }
        // SAFETY: the MAC under this install's secret key proves the bytes are
        // `Module::serialize` output that `store` wrote for this module and an engine with this
        // compatibility hash, unchanged since. wasmtime checks the version and settings in the
        // header again and refuses a mismatch.
        match unsafe { Module::deserialize(engine, &bytes[HEADER..]) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compiled module refused; compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Deletes an entry that is not authentic; says so at `warn` the first time.
    fn refused(&self, path: &Path) {
        let message = "compiled module not written by this server (planted, tampered with or torn) deleted; compiling again";
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(path = %path.display(), "{message}");
        } else {
            tracing::warn!(path = %path.display(), "{message}; later ones are logged at debug");
        }
        let _ = std::fs::remove_file(path);
    }

    /// Saves `module`, compiled from the wasm module with sha256 `hash`. Written to a
    /// temporary file (mode 0600) and renamed, so a reader sees a whole entry or none.
    pub fn store(&self, hash: &str, module: &Module) {
        let path = self.path(hash);
        let written = module
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|code| {
                let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp)?;
                file.write_all(MAGIC)?;
                file.write_all(&self.mac(hash, &code).finalize().into_bytes())?;
                file.write_all(&code)?;
                drop(file);
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not save a compiled module; the next start compiles it again");
        }
    }
}
