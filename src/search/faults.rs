//! Injected write failures, for fault tests: the index's directory is the real on-disk one,
//! wrapped so that a test can make its next writes fail as a full disk or an exhausted
//! descriptor table would. Unarmed (always, outside tests) it only forwards.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};

/// How many of the index's next writes fail. Cheap to clone; every clone arms the same index.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<AtomicU32>);

impl Faults {
    /// Makes the next `writes` file writes of the index fail with an I/O error.
    pub fn fail_next_writes(&self, writes: u32) {
        self.0.store(writes, Ordering::SeqCst);
    }

    /// Takes one armed failure, if any.
    fn strike(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn error() -> io::Error {
        io::Error::other("injected search index write failure")
    }
}

/// The on-disk directory, with [`Faults`] in front of its writes.
#[derive(Debug, Clone)]
pub(super) struct FaultyDirectory {
    inner: MmapDirectory,
    faults: Faults,
}

impl FaultyDirectory {
    pub(super) fn open(dir: &Path, faults: Faults) -> Result<Self, super::SearchError> {
        Ok(Self {
            inner: MmapDirectory::open(dir)?,
            faults,
        })
    }
}

impl Directory for FaultyDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        if self.faults.strike() {
            return Err(OpenWriteError::wrap_io_error(
                Faults::error(),
                PathBuf::from(path),
            ));
        }
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.faults.strike() {
            return Err(Faults::error());
        }
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    /// The on-disk directory's own locks (advisory file locks, released with the process):
    /// the default would take a lock file's mere existence, left by a crash, as held.
    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
