//! Upload bodies go to disk as they arrive, not to memory: a module is read into memory only
//! once its whole body is in, and only [`IN_MEMORY`] at a time (validation and storing need
//! the bytes; the rest wait for a place with theirs on disk). Six 100 MiB uploads at once hold
//! at most two modules in memory, not six.
//!
//! Files live in `<data_dir>/uploads`, are removed when dropped, and any left by a crash are
//! removed at start.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Uploads whose module is in memory at once.
pub const IN_MEMORY: usize = 2;
/// Uploads on disk at once. Each holds a descriptor, which the connection cap keeps free
/// ([`super::server`]); an upload beyond them is answered 503 `too_many_uploads`.
pub const MAX_FILES: usize = 64;
/// Uploads of one user on disk at once: one account's slow uploads cannot take every place.
pub const MAX_FILES_PER_USER: usize = 4;

/// Where upload bodies wait.
pub struct Spool {
    dir: PathBuf,
    /// Places for modules in memory.
    in_memory: Arc<Semaphore>,
    /// Places for files on disk.
    files: Arc<Semaphore>,
    /// Files on disk by user; a user leaves the map with their last file. A std Mutex, held
    /// for one map update.
    per_user: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// Why no spool file was made.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{MAX_FILES} uploads are already arriving; retry in a moment")]
    Busy,
    #[error("{MAX_FILES_PER_USER} of your uploads are already arriving; retry when one is in")]
    BusyForYou,
    #[error("upload spool: {0}")]
    Io(#[from] io::Error),
}

impl Spool {
    /// Empties `dir` (which exists) of files a crash left.
    pub fn open(dir: &Path) -> io::Result<Self> {
        for entry in std::fs::read_dir(dir)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            in_memory: Arc::new(Semaphore::new(IN_MEMORY)),
            files: Arc::new(Semaphore::new(MAX_FILES)),
            per_user: Arc::default(),
        })
    }

    /// A new, empty spool file of `user`'s, if a place for one is free.
    pub async fn file(&self, user: Uuid) -> Result<SpoolFile, SpoolError> {
        let user_place = UserPlace::take(&self.per_user, user)?;
        let place = self
            .files
            .clone()
            .try_acquire_owned()
            .map_err(|_| SpoolError::Busy)?;
        let path = self.dir.join(format!("{}.part", Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(SpoolFile {
            path,
            file: Some(file),
            len: 0,
            in_memory: self.in_memory.clone(),
            _place: place,
            _user_place: user_place,
        })
    }
}

/// One upload's body on disk; removed when dropped.
pub struct SpoolFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    len: u64,
    in_memory: Arc<Semaphore>,
    /// This file's place among [`MAX_FILES`].
    _place: OwnedSemaphorePermit,
    /// Its place among its user's [`MAX_FILES_PER_USER`].
    _user_place: UserPlace,
}

/// A user's place for a spool file; given back when dropped.
struct UserPlace {
    user: Uuid,
    per_user: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl UserPlace {
    fn take(per_user: &Arc<Mutex<HashMap<Uuid, usize>>>, user: Uuid) -> Result<Self, SpoolError> {
        let mut files = per_user.lock().unwrap_or_else(|p| p.into_inner());
        let held = files.entry(user).or_insert(0);
        if *held >= MAX_FILES_PER_USER {
            return Err(SpoolError::BusyForYou);
        }
        *held += 1;
        Ok(Self {
            user,
            per_user: per_user.clone(),
        })
    }
}

impl Drop for UserPlace {
    fn drop(&mut self) {
        let mut files = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = files.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                files.remove(&self.user);
            }
        }
    }
}

/// A module read back into memory, with its place; the place is freed when this is dropped.
pub struct Loaded {
    /// The module.
    pub bytes: Bytes,
    _place: OwnedSemaphorePermit,
}

impl SpoolFile {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool file closed"))?;
        file.write_all(chunk).await?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Waits for a place in memory, then reads the whole body into it.
    pub async fn load(mut self) -> io::Result<Loaded> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        let place = self
            .in_memory
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let bytes = tokio::fs::read(&self.path).await?;
        Ok(Loaded {
            bytes: Bytes::from(bytes),
            _place: place,
        })
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
