//! The write-ahead log: append-only segment files with group commit.
//!
//! A record is acknowledged only after the `fdatasync` that covers it. One writer thread owns
//! the open segment: while it syncs a batch, new appends queue in its channel and become the
//! next batch, so one sync covers every record that arrived during the previous one. With a
//! sync costing ≈2.4 ms on this class of disk, that is the difference between ≈400 and
//! hundreds of thousands of durable appends per second.
//!
//! A checkpoint records the position up to which the log has been applied elsewhere; segments
//! wholly before it are deleted, so the log stays bounded. Recovery returns every record after
//! the checkpoint. A torn or bad-CRC tail (a crash mid-batch; such records were never
//! acknowledged) is truncated with a warning; damage before the tail stops start-up with
//! [`WalError::Corrupt`], which names the file and offset.
//!
//! Records are written in the order their appends were called. Each append gets a number
//! (1, 2, … since open); the durable mark ([`Wal::durable`]) holds the position and the number
//! of the last synced record, only moves forward, and everything before it is on disk.
//!
//! Never call [`Wal::append_blocking`] on an async thread; [`Wal::append`] is the async form.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

// Segment file `<dir>/<id:020>.wal`:
//
//   offset  size  field
//   0       8     magic b"ZSWAL\0\0\x02" (format version 2)
//   8       8     segment id, u64 little-endian (equals the number in the file name)
//   16      …     records, back to back
//
// Record:
//
//   offset  size  field
//   0       4     payload length N, u32 little-endian
//   4       4     CRC32C over bytes 0..4, bytes 8..16 and the payload, u32 little-endian
//   8       8     batch start: offset in this segment of the first record of the group
//                 commit that wrote this record, u64 little-endian
//   16      N     payload (opaque to the log)
//
// The batch start tells a torn tail from corruption. Damage followed only by records of the
// same batch is a write that power loss cut short (the disk may persist a batch's pages in
// any order, and the batch was never acknowledged); a valid record of a *later* batch after
// the damage proves the damaged bytes had been synced, so that is corruption.
//
// Checkpoint file `<dir>/checkpoint` (replaced atomically via `checkpoint.tmp` + rename):
//
//   0       8     segment id, u64 LE
//   8       8     offset within that segment, u64 LE
//   16      4     CRC32C over bytes 0..16, u32 LE

const MAGIC: &[u8; 8] = b"ZSWAL\0\0\x02";
const SEGMENT_HEADER: u64 = 16;
const RECORD_HEADER: usize = 16;
const CHECKPOINT_FILE: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// Largest accepted payload; bounds what a corrupt length field can make recovery allocate.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Most bytes one group commit writes before syncing.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A record returned by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The position just after the record; checkpoint here once it is applied.
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// A position in the log: just after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn {
    pub segment: u64,
    pub offset: u64,
}

/// How far the log is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The position after the last synced record.
    pub lsn: Lsn,
    /// How many of the records appended since open are synced: record number `n` is on disk
    /// once `records >= n`.
    pub records: u64,
}

/// An append on its way to disk.
pub struct Pending {
    /// The record's number: 1 for the first append after open, then one more each time.
    pub number: u64,
    done: oneshot::Receiver<Result<Lsn, WalError>>,
}

impl Pending {
    /// Resolves once the record is on disk.
    pub async fn wait(self) -> Result<Lsn, WalError> {
        self.done.await.map_err(|_| WalError::Closed)?
    }

    /// [`Pending::wait`] on a thread that may block.
    pub fn wait_blocking(self) -> Result<Lsn, WalError> {
        self.done.blocking_recv().map_err(|_| WalError::Closed)?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "WAL is corrupt in {path} at byte offset {offset}: {reason}. Records from this point on \
         cannot be read. To discard them (tasks submitted after that point are lost), truncate \
         the file there (`truncate -s {offset} {path}`), delete any later segment files, and \
         start again"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "WAL checkpoint {path} is damaged. To start anyway, delete it: recovery then replays \
         every remaining segment (replay is idempotent; finished tasks that retention deleted \
         since may reappear)"
    )]
    BadCheckpoint { path: PathBuf },
    #[error("record of {0} bytes is over the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
    #[error("the WAL writer has stopped")]
    Closed,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

struct Append {
    payload: Vec<u8>,
    ack: oneshot::Sender<Result<Lsn, WalError>>,
}

/// The sending side of the writer's channel, with the count that numbers appends.
struct Appender {
    /// `None` once the log is closing.
    tx: Option<mpsc::Sender<Append>>,
    /// Records sent so far. Numbered under the same lock as the send, so number order is
    /// channel order is file order.
    appended: u64,
}

/// Handle to the log. Dropping it stops the writer after it has synced what it holds.
pub struct Wal {
    dir: PathBuf,
    /// A std Mutex: held for a counter bump and a channel send.
    appender: Mutex<Appender>,
    writer: Option<JoinHandle<()>>,
    /// How far the log is synced; moves forward only. Closed if the writer stops.
    durable: watch::Receiver<Synced>,
    /// The last checkpoint written. A std Mutex held across the checkpoint's file writes, so
    /// concurrent checkpoints run one at a time and never move it backwards.
    checkpointed: Mutex<Option<Lsn>>,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and returns it with every record after the
    /// checkpoint, in order, each with the position just after it. Blocking.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Self, Vec<Record>), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        remove_half_deleted(dir)?;
        let start = read_checkpoint(dir)?;
        let mut segments = list_segments(dir)?;
        segments.retain(|&id| start.is_none_or(|s| id >= s.segment));
        let mut records = Vec::new();
        let mut tail = None;
        for (i, &id) in segments.iter().enumerate() {
            let from = match start {
                Some(s) if s.segment == id => s.offset,
                _ => SEGMENT_HEADER,
            };
            let last = i + 1 == segments.len();
            let end = read_segment(dir, id, from, last, &mut records)?;
            tail = Some(Lsn {
                segment: id,
                offset: end,
            });
        }
        let tail = match tail {
            Some(tail) => tail,
            None => {
                let id = start.map_or(1, |s| s.segment.max(1));
                create_segment(dir, id)?;
                Lsn {
                    segment: id,
                    offset: SEGMENT_HEADER,
                }
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, tail.segment))
            .map_err(io(&segment_path(dir, tail.segment)))?;
        // Drops a torn tail found by `read_segment`; appends go right after the last good record.
        file.set_len(tail.offset)
            .map_err(io(&segment_path(dir, tail.segment)))?;
        let (durable_tx, durable) = watch::channel(Synced {
            lsn: tail,
            records: 0,
        });
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            position: tail,
            records: 0,
            options,
            durable: durable_tx,
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io(dir))?;
        Ok((
            Self {
                dir: dir.to_owned(),
                appender: Mutex::new(Appender {
                    tx: Some(tx),
                    appended: 0,
                }),
                writer: Some(handle),
                durable,
                checkpointed: Mutex::new(start),
            },
            records,
        ))
    }

    fn appender(&self) -> MutexGuard<'_, Appender> {
        self.appender.lock().expect("WAL appender lock")
    }

    /// Appends a record; resolves once it is on disk.
    pub async fn append(&self, payload: Vec<u8>) -> Result<Lsn, WalError> {
        self.append_nowait(payload)?.wait().await
    }

    /// Queues a record and returns at once; it goes to disk with the next group commit.
    /// Drop the returned [`Pending`] to not wait for that.
    pub fn append_nowait(&self, payload: Vec<u8>) -> Result<Pending, WalError> {
        if payload.len() > MAX_RECORD {
            return Err(WalError::TooLarge(payload.len()));
        }
        let (ack, done) = oneshot::channel();
        let mut appender = self.appender();
        appender
            .tx
            .as_ref()
            .ok_or(WalError::Closed)?
            .send(Append { payload, ack })
            .map_err(|_| WalError::Closed)?;
        appender.appended += 1;
        Ok(Pending {
            number: appender.appended,
            done,
        })
    }

    /// How many records have been appended since open (synced or not).
    pub fn appended(&self) -> u64 {
        self.appender().appended
    }

    /// Watches how far the log is on disk.
    pub fn durable(&self) -> watch::Receiver<Synced> {
        self.durable.clone()
    }

    /// Waits until record number `number` is on disk.
    pub async fn synced_through(&self, number: u64) -> Result<(), WalError> {
        let mut durable = self.durable();
        durable
            .wait_for(|s| s.records >= number)
            .await
            .map(drop)
            .map_err(|_| WalError::Closed)
    }

    /// Appends a record and waits for the sync on this thread.
    pub fn append_blocking(&self, payload: Vec<u8>) -> Result<Lsn, WalError> {
        self.append_nowait(payload)?.wait_blocking()
    }

    /// Records that everything up to `lsn` has been applied and deletes the segments wholly
    /// before it. Blocking (two syncs). A crash at any point leaves either the old or the new
    /// checkpoint in force; recovery from the old one replays records already applied, so
    /// whoever applies records must treat them idempotently.
    pub fn checkpoint(&self, lsn: Lsn) -> Result<(), WalError> {
        let mut last = self.checkpointed.lock().expect("checkpoint lock");
        if last.is_some_and(|last| last >= lsn) {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(20);
        bytes.extend_from_slice(&lsn.segment.to_le_bytes());
        bytes.extend_from_slice(&lsn.offset.to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let mut file = private_file().truncate(true).open(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        let target = self.dir.join(CHECKPOINT_FILE);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir)?;
        for id in list_segments(&self.dir)? {
            if id < lsn.segment {
                let path = segment_path(&self.dir, id);
                remove_segment(&self.dir, &path)?;
            }
        }
        *last = Some(lsn);
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.appender().tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    file: File,
    /// Where the next record goes.
    position: Lsn,
    /// Records synced since open.
    records: u64,
    options: WalOptions,
    durable: watch::Sender<Synced>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Append>) {
        let mut buf = Vec::with_capacity(1024 * 1024);
        crate::telemetry::metrics_handle();
        let sync_seconds = metrics::histogram!("zerostate_wal_sync_seconds");
        let batch_records = metrics::histogram!("zerostate_wal_batch_records");
        while let Ok(first) = rx.recv() {
            // Everything that queued while the previous batch synced joins this one.
            let mut batch = vec![first];
            let mut bytes = batch[0].payload.len();
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(next) => {
                        bytes += next.payload.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            buf.clear();
            let mut ends = Vec::with_capacity(batch.len());
            let mut offset = self.position.offset;
            let batch_start = offset;
            for append in &batch {
                encode_record(&append.payload, batch_start, &mut buf);
                offset += (RECORD_HEADER + append.payload.len()) as u64;
                ends.push(Lsn {
                    segment: self.position.segment,
                    offset,
                });
            }
            let started = std::time::Instant::now();
            let result = self.write_and_sync(&buf);
            sync_seconds.record(started.elapsed());
            batch_records.record(batch.len() as f64);
            crate::telemetry::histogram_recorded();
            match result {
                Ok(()) => {
                    self.position.offset = offset;
                    self.records += ends.len() as u64;
                    self.durable.send_replace(Synced {
                        lsn: self.position,
                        records: self.records,
                    });
                    for (append, lsn) in batch.into_iter().zip(ends) {
                        let _ = append.ack.send(Ok(lsn));
                    }
                    if self.position.offset >= self.options.segment_bytes
                        && let Err(e) = self.rotate()
                    {
                        tracing::error!(error = %e, "cannot start a new WAL segment; stopping the writer");
                        return;
                    }
                }
                Err(e) => {
                    // Nothing in this batch is acknowledged; a partial write is a torn tail
                    // that the next recovery truncates. Stop: later appends fail with Closed.
                    tracing::error!(error = %e, "WAL write failed; stopping the writer");
                    for append in batch {
                        let _ = append.ack.send(Err(WalError::Closed));
                    }
                    return;
                }
            }
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.position.segment);
        self.file.write_all(buf).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let id = self.position.segment + 1;
        self.file = create_segment(&self.dir, id)?;
        self.position = Lsn {
            segment: id,
            offset: SEGMENT_HEADER,
        };
        Ok(())
    }
}

fn record_crc(len: &[u8], batch_start: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc32c::crc32c(len), batch_start);
    crc32c::crc32c_append(crc, payload)
}

fn encode_record(payload: &[u8], batch_start: u64, out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let batch_start = batch_start.to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&record_crc(&len, &batch_start, payload).to_le_bytes());
    out.extend_from_slice(&batch_start);
    out.extend_from_slice(payload);
}

/// Why a record at some offset could not be read.
enum Bad {
    /// The record runs past the end of the file.
    Truncated,
    /// The length or checksum is wrong.
    Damaged(String),
}

/// A record read back from a segment.
struct Decoded<'a> {
    payload: &'a [u8],
    batch_start: u64,
    /// Offset of the next record.
    next: usize,
}

/// Decodes the record at `at`.
fn decode_record(data: &[u8], at: usize) -> Result<Decoded<'_>, Bad> {
    let Some(header) = data.get(at..at + RECORD_HEADER) else {
        return Err(Bad::Truncated);
    };
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err(Bad::Damaged(format!(
            "record length {len} is over the limit"
        )));
    }
    let Some(payload) = data.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
        return Err(Bad::Truncated);
    };
    if record_crc(&header[0..4], &header[8..16], payload) != crc {
        return Err(Bad::Damaged("checksum mismatch".into()));
    }
    Ok(Decoded {
        payload,
        batch_start: u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
        next: at + RECORD_HEADER + len,
    })
}

/// True if a valid record of a batch that started after `damaged` lies somewhere after it:
/// that batch was written after the damaged bytes had been synced, so the damage is not a
/// torn tail. (Records of the damaged spot's own batch may have reached the disk before it.)
fn later_batch_after(data: &[u8], damaged: usize) -> bool {
    (damaged + 1..data.len().saturating_sub(RECORD_HEADER)).any(|at| {
        matches!(decode_record(data, at),
            Ok(r) if !r.payload.is_empty() && r.batch_start > damaged as u64)
    })
}

/// Reads the records of one segment from `from`, appending them to `out`. Returns the offset
/// after the last good record. Damage in the last segment with nothing valid after it is a torn
/// tail and ends the read; anything else is corruption.
fn read_segment(
    dir: &Path,
    id: u64,
    from: u64,
    last: bool,
    out: &mut Vec<Record>,
) -> Result<u64, WalError> {
    let path = segment_path(dir, id);
    let mut data = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io(&path))?;
    let corrupt = |offset: u64, reason: String| WalError::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    if data.len() < SEGMENT_HEADER as usize || &data[0..8] != MAGIC {
        if last && data.len() < SEGMENT_HEADER as usize {
            // Crashed while creating the segment: rewrite its header.
            create_segment(dir, id)?;
            return Ok(SEGMENT_HEADER);
        }
        return Err(corrupt(0, "bad segment header".into()));
    }
    if u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")) != id {
        return Err(corrupt(8, "segment id does not match the file name".into()));
    }
    let mut at = from as usize;
    while at < data.len() {
        match decode_record(&data, at) {
            Ok(record) => {
                out.push(Record {
                    lsn: Lsn {
                        segment: id,
                        offset: record.next as u64,
                    },
                    payload: record.payload.to_vec(),
                });
                at = record.next;
            }
            Err(bad) => {
                // Even a record that seems to run past the end may be a damaged length field
                // with acknowledged records after it: only the unsynced last batch is a tail.
                let torn = last && !later_batch_after(&data, at);
                if !torn {
                    let reason = match bad {
                        Bad::Truncated => {
                            "record cut short in a segment that is not the last".into()
                        }
                        Bad::Damaged(reason) => reason,
                    };
                    return Err(corrupt(at as u64, reason));
                }
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = data.len() - at,
                    "truncating a torn WAL tail (a write interrupted by a crash; never acknowledged)"
                );
                return Ok(at as u64);
            }
        }
    }
    Ok(at as u64)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Options that create a file for writing, readable by the service user only (mode 0600):
/// the log holds every task's input and output.
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

fn create_segment(dir: &Path, id: u64) -> Result<File, WalError> {
    let path = segment_path(dir, id);
    let mut file = private_file()
        .truncate(true)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(MAGIC).map_err(io(&path))?;
    file.write_all(&id.to_le_bytes()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(file)
}

fn read_checkpoint(dir: &Path) -> Result<Option<Lsn>, WalError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let valid = bytes.len() == 20
        && crc32c::crc32c(&bytes[0..16])
            == u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if !valid {
        return Err(WalError::BadCheckpoint { path });
    }
    Ok(Some(Lsn {
        segment: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
        offset: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
    }))
}

/// Freed per step when a segment is deleted.
const DELETE_SLICE: u64 = 4 * 1024 * 1024;

/// Suffix of a checkpointed segment being deleted; [`list_segments`] does not list it.
const DELETING: &str = "deleting";

/// Deletes a checkpointed segment a slice at a time. A filesystem frees a file's blocks in
/// one journal transaction (ext4 with `discard` trims them there too), and the writer's next
/// `fdatasync` waits for it: unlinking a whole 64 MiB segment at once held submits 20-50 ms.
/// Truncated by [`DELETE_SLICE`], each step synced, the wait is a slice's (about 1 ms). The
/// segment is renamed out of the log first, so a crash midway leaves no shortened segment
/// for a replay to trip over (even one from scratch, with the checkpoint deleted); opening
/// deletes what is left.
fn remove_segment(dir: &Path, path: &Path) -> Result<(), WalError> {
    let doomed = path.with_extension(format!("wal.{DELETING}"));
    std::fs::rename(path, &doomed).map_err(io(path))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .write(true)
        .open(&doomed)
        .map_err(io(&doomed))?;
    let mut len = file.metadata().map_err(io(&doomed))?.len();
    while len > DELETE_SLICE {
        len -= DELETE_SLICE;
        file.set_len(len).map_err(io(&doomed))?;
        file.sync_data().map_err(io(&doomed))?;
    }
    drop(file);
    std::fs::remove_file(&doomed).map_err(io(&doomed))
}

/// Deletes segments a crash left half deleted (see [`remove_segment`]).
fn remove_half_deleted(dir: &Path) -> Result<(), WalError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == DELETING) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Wal, Vec<Vec<u8>>) {
        open_with(dir, WalOptions::default())
    }

    fn open_with(dir: &Path, options: WalOptions) -> (Wal, Vec<Vec<u8>>) {
        let (wal, records) = Wal::open(dir, options).unwrap();
        (wal, records.into_iter().map(|r| r.payload).collect())
    }

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    /// Appends `payloads(n)` and returns their positions.
    fn append(wal: &Wal, n: usize) -> Vec<Lsn> {
        payloads(n)
            .into_iter()
            .map(|p| wal.append_blocking(p).unwrap())
            .collect()
    }

    /// Writes `payloads(n)` to a fresh log in `dir` and closes it.
    fn append_and_close(dir: &Path, n: usize) {
        let (wal, _) = open(dir);
        append(&wal, n);
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let ids = list_segments(dir).unwrap();
        assert_eq!(ids.len(), 1);
        segment_path(dir, ids[0])
    }

    #[tokio::test]
    async fn acknowledged_records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, replay) = open(dir.path());
        assert!(replay.is_empty());
        let wal = std::sync::Arc::new(wal);
        // Concurrent appends share syncs and still come back in log order.
        let tasks: Vec<_> = payloads(200)
            .into_iter()
            .map(|p| {
                let wal = wal.clone();
                tokio::spawn(async move { (wal.append(p.clone()).await.unwrap(), p) })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        acked.sort_by_key(|(lsn, _)| *lsn);
        drop(wal);
        let (_wal, replay) = open(dir.path());
        assert_eq!(
            replay,
            acked.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        append_and_close(dir.path(), 3);
        // A crash in the middle of writing a fourth record.
        let path = only_segment(dir.path());
        let mut torn = Vec::new();
        let end = std::fs::metadata(&path).unwrap().len();
        encode_record(b"record 3", end, &mut torn);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(f);

        let (wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(3));
        wal.append_blocking(b"after".to_vec()).unwrap();
        drop(wal);
        let (_wal, replay) = open(dir.path());
        assert_eq!(replay.last().unwrap(), b"after");
        assert_eq!(replay.len(), 4);
    }

    #[test]
    fn a_bad_crc_at_the_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        append_and_close(dir.path(), 3);
        let path = only_segment(dir.path());
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        let (_wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(2));
    }

    #[test]
    fn power_loss_inside_the_last_batch_is_a_torn_tail_even_with_later_records_intact() {
        let dir = tempfile::tempdir().unwrap();
        append_and_close(dir.path(), 2);
        // One unsynced group commit of three records; the disk kept the last two pages but
        // not the first.
        let path = only_segment(dir.path());
        let end = std::fs::metadata(&path).unwrap().len();
        let mut batch = Vec::new();
        for p in [&b"lost 0"[..], b"lost 1", b"lost 2"] {
            encode_record(p, end, &mut batch);
        }
        batch[RECORD_HEADER] ^= 0xff;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&batch).unwrap();
        drop(f);

        let (wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(2));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        drop(wal);
    }

    #[tokio::test]
    async fn the_durable_position_follows_syncs_and_checkpoints_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        let durable = wal.durable();
        let lsn = wal.append(b"one".to_vec()).await.unwrap();
        assert!(durable.borrow().lsn >= lsn);
        let pending = wal.append_nowait(b"two".to_vec()).unwrap();
        assert_eq!((pending.number, wal.appended()), (2, 2));
        wal.synced_through(2).await.unwrap();
        assert_eq!(durable.borrow().records, 2);
        let later = pending.wait().await.unwrap();
        wal.checkpoint(later).unwrap();
        wal.checkpoint(lsn).unwrap();
        drop(wal);
        let (_wal, replay) = open(dir.path());
        assert!(replay.is_empty(), "the older checkpoint was ignored");
    }

    #[test]
    fn a_damaged_length_before_good_records_is_corruption_not_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        append_and_close(dir.path(), 3);
        let path = only_segment(dir.path());
        let mut data = std::fs::read(&path).unwrap();
        // The first record's length now points past the end of the file.
        data[SEGMENT_HEADER as usize + 2] = 0x01;
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(
            Wal::open(dir.path(), WalOptions::default()),
            Err(WalError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), data, "nothing was truncated");
    }

    #[test]
    fn corruption_before_the_tail_stops_recovery_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        append_and_close(dir.path(), 3);
        let path = only_segment(dir.path());
        let mut data = std::fs::read(&path).unwrap();
        // Flip a byte of the first record's payload; two good records follow it.
        let first_payload = SEGMENT_HEADER as usize + RECORD_HEADER;
        data[first_payload] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        match Wal::open(dir.path(), WalOptions::default()) {
            Err(WalError::Corrupt {
                path: p, offset, ..
            }) => {
                assert_eq!((p, offset), (path.clone(), SEGMENT_HEADER));
            }
            other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r.len())),
        }
        let message = Wal::open(dir.path(), WalOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("truncate -s 16"), "{message}");
    }

    #[test]
    fn records_appended_after_a_checkpoint_are_replayed_and_older_ones_are_not() {
        // Crash between fsync and apply: acknowledged but not checkpointed records come back.
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        let lsns = append(&wal, 4);
        wal.checkpoint(lsns[1]).unwrap();
        drop(wal);
        let (_wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(4)[2..].to_vec());
    }

    #[test]
    fn a_crash_during_checkpoint_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        let lsns = append(&wal, 4);
        wal.checkpoint(lsns[0]).unwrap();
        drop(wal);
        // The process died after writing half of the next checkpoint's temp file.
        std::fs::write(dir.path().join(CHECKPOINT_TMP), [1, 2, 3]).unwrap();
        let (_wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(4)[1..].to_vec());
    }

    #[test]
    fn a_damaged_checkpoint_stops_recovery_and_deleting_it_replays_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        let lsns = append(&wal, 3);
        wal.checkpoint(lsns[1]).unwrap();
        drop(wal);
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let message = match Wal::open(dir.path(), WalOptions::default()) {
            Err(e @ WalError::BadCheckpoint { .. }) => e.to_string(),
            other => panic!(
                "expected a bad checkpoint, got {:?}",
                other.map(|(_, r)| r.len())
            ),
        };
        assert!(message.contains(&path.display().to_string()), "{message}");
        std::fs::remove_file(&path).unwrap();
        let (_wal, replay) = open(dir.path());
        assert_eq!(replay, payloads(3));
    }

    #[test]
    fn segments_rotate_and_checkpoints_delete_the_applied_ones() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_bytes: 256 };
        let (wal, _) = open_with(dir.path(), options);
        let lsns = append(&wal, 100);
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() > 5, "{segments:?}");
        let keep_from = lsns[80];
        wal.checkpoint(keep_from).unwrap();
        assert!(
            list_segments(dir.path())
                .unwrap()
                .iter()
                .all(|&id| id >= keep_from.segment)
        );
        drop(wal);
        let (_wal, replay) = open_with(dir.path(), options);
        assert_eq!(replay, payloads(100)[81..].to_vec());
    }

    #[test]
    fn a_segment_deletion_cut_short_by_a_crash_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_bytes: 256 };
        let (wal, _) = open_with(dir.path(), options);
        let lsns = append(&wal, 100);
        let keep_from = lsns[80];
        // A segment bigger than one deletion slice goes in slices.
        let big = segment_path(dir.path(), 0);
        std::fs::write(&big, vec![7u8; DELETE_SLICE as usize * 2 + 5]).unwrap();
        wal.checkpoint(keep_from).unwrap();
        assert!(!big.exists());
        drop(wal);

        // The crash: a checkpointed segment left half truncated, mid-record.
        let half = segment_path(dir.path(), keep_from.segment - 1).with_extension("wal.deleting");
        std::fs::write(&half, &MAGIC[..5]).unwrap();
        let (_wal, replay) = open_with(dir.path(), options);
        assert_eq!(replay, payloads(100)[81..].to_vec());
        assert!(!half.exists());
    }
}
