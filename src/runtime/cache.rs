//! Compiled modules on disk, so a restart recompiles nothing.
//!
//! `<dir>/<module sha256>-<engine key>.cwasm` holds `Module::serialize` output behind a
//! header: the magic `ZSCWASM1`, then the sha256 of the rest. The engine key is a hash of
//! wasmtime's compatibility fingerprint (version, target, settings), so another build or
//! configuration never picks up a file it cannot run; opening deletes the files of other keys.
//!
//! Deserializing trusts the bytes to be wasmtime's own output (it maps them as machine code).
//! Only this module writes the directory, and a file is loaded only when its checksum holds,
//! so a torn write or a damaged disk block means a recompile, never a crash. A failure here
//! is logged and costs a compile; it never fails a task.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

const MAGIC: &[u8; 8] = b"ZSCWASM1";
const HEADER: usize = MAGIC.len() + 32;

pub struct ModuleCache {
    dir: PathBuf,
    /// Suffix of this engine's files.
    engine_key: String,
}

impl ModuleCache {
    /// Opens (or creates) the cache in `dir` for `engine`, deleting entries no engine like it
    /// can load. Blocking.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache = Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
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

    /// The compiled module of the wasm module with sha256 `hash`, if a sound entry exists.
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
        let sound = bytes.len() >= HEADER
            && &bytes[..MAGIC.len()] == MAGIC
            && Sha256::digest(&bytes[HEADER..])[..] == bytes[MAGIC.len()..HEADER];
        if !sound {
            tracing::warn!(path = %path.display(), "damaged compiled module deleted; compiling again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the bytes are `Module::serialize` output written by `store` for an engine
        // with this compatibility hash (the file name says so, and only this module writes
        // the directory), unchanged since (the checksum holds). wasmtime checks the version
        // and settings in the header again and refuses a mismatch.
        match unsafe { Module::deserialize(engine, &bytes[HEADER..]) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compiled module refused; compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves `module`, compiled from the wasm module with sha256 `hash`. Written to a
    /// temporary file and renamed, so a reader sees a whole entry or none.
    pub fn store(&self, hash: &str, module: &Module) {
        let path = self.path(hash);
        let written = module
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|code| {
                let tmp = path.with_extension("tmp");
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(MAGIC)?;
                file.write_all(&Sha256::digest(&code))?;
                file.write_all(&code)?;
                drop(file);
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not save a compiled module; the next start compiles it again");
        }
    }
}
