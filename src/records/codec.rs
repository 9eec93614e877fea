//! The binary encoding of tasks: rows of the `tasks` table and the task WAL's records.
//!
//! A task is written once per change to the WAL and once more to the store, on the path every
//! submit takes; as JSON that was 7 % of the server's CPU and ~1 KB a task. This encoding is
//! a third of the size and does no formatting. The API still speaks JSON.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! task      = u8 format (= 1) · submission · uuid id · state
//! submission= uuid owner_id · str query · json? input · u32 n · str capability × n
//!             · u8 priority · f64 budget · u64 timeout_secs · json? constraints
//!             · u32 n · bid × n · time? deadline · u8 pinned · u64 seq · time created_at
//! state     = u64 version · u8 status · uuid agent_id · str agent_name · f64 price
//!             · u32 n · (u32 m · bid × m) × n  failover_bids
//!             · json? result · str? error · u8? error_code · str? stderr · i32? exit_code
//!             · u32 n · attempt × n · u32 starts · time? started_at · time? completed_at
//!             · u64? duration_ms
//! bid       = uuid agent_id · str agent_name · f64 price
//!             · f64 price_score · f64 quality · f64 speed · f64 reputation · f64 total
//! attempt   = uuid agent_id · str agent_name · str outcome · str? error · u8? error_code
//!             · u64 duration_ms · time started_at
//! uuid      = 16 bytes          str  = u32 length · UTF-8 bytes
//! json      = str (JSON text)   time = i64 unix seconds · u32 nanoseconds (UTC)
//! x?        = u8 0 (none) | u8 1 · x
//! ```
//!
//! `priority`, `status` and `error_code` are the enums' discriminants, which are their
//! positions in [`Priority::ALL`], [`TaskStatus::ALL`] and [`FailureCode::ALL`] (a test checks).
//! A JSON row starts with `{`, never with a format byte, so readers take both (rows written
//! before this encoding stay readable). A new field means a new format number.

use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::bid::{Bid, BidScores};
use super::task::{Attempt, FailureCode, Priority, Task, TaskState, TaskStatus};

/// The format byte of this layout.
pub const FORMAT: u8 = 1;

/// Why bytes do not decode.
#[derive(Debug, thiserror::Error)]
#[error("undecodable task encoding at byte {at}: {reason}")]
pub struct CodecError {
    pub at: usize,
    pub reason: String,
}

/// Appends `task` (format byte included) to `out`.
pub fn put_task(out: &mut Vec<u8>, task: &Task) {
    let mut w = Writer(out);
    w.u8(FORMAT);
    w.uuid(task.owner_id);
    w.str(&task.query);
    w.opt(task.input.as_deref(), Writer::json);
    w.u32(task.capabilities.len() as u32);
    for c in task.capabilities.iter() {
        w.str(c);
    }
    w.u8(task.priority as u8);
    w.f64(task.budget);
    w.u64(task.timeout_secs);
    w.opt(task.constraints.as_deref(), Writer::json);
    w.bids(&task.bids);
    w.opt(task.deadline, Writer::time);
    w.u8(task.pinned as u8);
    w.u64(task.seq);
    w.time(task.created_at);
    w.uuid(task.id);
    w.state(&task.state);
}

/// Task `id`'s changing fields, appended to `out`: `uuid id · state`, the tail of [`put_task`].
pub fn put_state(out: &mut Vec<u8>, id: Uuid, state: &TaskState) {
    let mut w = Writer(out);
    w.uuid(id);
    w.state(state);
}

/// The task at the start of `r`, as [`put_task`] wrote it.
pub fn read_task(r: &mut Reader<'_>) -> Result<Task, CodecError> {
    let format = r.u8()?;
    if format != FORMAT {
        return Err(r.error(format!("unknown task format {format}")));
    }
    let owner_id = r.uuid()?;
    let query: Arc<str> = r.str()?.into();
    let input = r.opt(Reader::json)?.map(Arc::new);
    let n = r.len(4)?;
    let capabilities = (0..n).map(|_| r.str()).collect::<Result<Vec<_>, _>>()?;
    let priority = r.pick(&Priority::ALL, "priority")?;
    let budget = r.f64()?;
    let timeout_secs = r.u64()?;
    let constraints = r.opt(Reader::json)?.map(Arc::new);
    let bids = r.bids()?;
    let deadline = r.opt(Reader::time)?;
    let pinned = r.bool()?;
    let seq = r.u64()?;
    let created_at = r.time()?;
    let (id, state) = read_state(r)?;
    Ok(Task {
        id,
        owner_id,
        query,
        input,
        capabilities: capabilities.into(),
        priority,
        budget,
        timeout_secs,
        constraints,
        bids: bids.into(),
        deadline,
        pinned,
        seq,
        created_at,
        state,
    })
}

/// The task id and state at the start of `r`, as [`put_state`] wrote them.
pub fn read_state(r: &mut Reader<'_>) -> Result<(Uuid, TaskState), CodecError> {
    let id = r.uuid()?;
    Ok((id, r.state()?))
}

/// A whole `tasks` row: this encoding, or JSON (rows written before it).
pub fn decode_row(bytes: &[u8]) -> Result<Task, CodecError> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| CodecError {
            at: e.column(),
            reason: e.to_string(),
        });
    }
    let mut r = Reader::new(bytes);
    let task = read_task(&mut r)?;
    r.finish()?;
    Ok(task)
}

/// The status of a whole `tasks` row, without decoding the rest: what the store's counters
/// move a task from when its row is replaced.
pub fn row_status(bytes: &[u8]) -> Result<TaskStatus, CodecError> {
    if bytes.first() == Some(&b'{') {
        return decode_row(bytes).map(|task| task.state.status);
    }
    let mut r = Reader::new(bytes);
    let format = r.u8()?;
    if format != FORMAT {
        return Err(r.error(format!("unknown task format {format}")));
    }
    r.skip_submission()?;
    // uuid id · u64 version, then the status.
    r.take(16 + 8)?;
    r.pick(&TaskStatus::ALL, "status")
}

/// A `tasks` row for `task`.
pub fn encode_row(task: &Task) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + task.query.len());
    put_task(&mut out, task);
    out
}

/// Appends the encoding's primitives to a buffer (the counterpart of [`Reader`]).
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn uuid(&mut self, v: Uuid) {
        self.0.extend_from_slice(v.as_bytes());
    }

    pub fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }

    fn json(&mut self, v: &Value) {
        let at = self.0.len();
        self.u32(0);
        serde_json::to_writer(&mut *self.0, v).expect("JSON values serialise");
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn time(&mut self, v: OffsetDateTime) {
        self.0.extend_from_slice(&v.unix_timestamp().to_le_bytes());
        self.u32(v.nanosecond());
    }

    pub fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }

    fn bids(&mut self, bids: &[Bid]) {
        self.u32(bids.len() as u32);
        for b in bids {
            self.uuid(b.agent_id);
            self.str(&b.agent_name);
            self.f64(b.price);
            self.f64(b.scores.price);
            self.f64(b.scores.quality);
            self.f64(b.scores.speed);
            self.f64(b.scores.reputation);
            self.f64(b.total);
        }
    }

    fn state(&mut self, s: &TaskState) {
        self.u64(s.version);
        self.u8(s.status as u8);
        self.uuid(s.agent_id);
        self.str(&s.agent_name);
        self.f64(s.price);
        self.u32(s.failover_bids.len() as u32);
        for bids in &s.failover_bids {
            self.bids(bids);
        }
        self.opt(s.result.as_ref(), Self::json);
        self.opt(s.error.as_deref(), Self::str);
        self.opt(s.error_code, |w, c| w.u8(c as u8));
        self.opt(s.stderr.as_deref(), Self::str);
        self.opt(s.exit_code, |w, c| w.u32(c as u32));
        self.u32(s.attempts.len() as u32);
        for a in &s.attempts {
            self.uuid(a.agent_id);
            self.str(&a.agent_name);
            self.str(&a.outcome);
            self.opt(a.error.as_deref(), Self::str);
            self.opt(a.error_code, |w, c| w.u8(c as u8));
            self.u64(a.duration_ms);
            self.time(a.started_at);
        }
        self.u32(s.starts);
        self.opt(s.started_at, Self::time);
        self.opt(s.completed_at, Self::time);
        self.opt(s.duration_ms, Self::u64);
    }
}

/// Reads the encoding; every read checks the bounds, so damaged bytes are an error, never a
/// panic or a huge allocation.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn error(&self, reason: impl Into<String>) -> CodecError {
        CodecError {
            at: self.at,
            reason: reason.into(),
        }
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(format!("{} bytes left over", self.bytes.len() - self.at)))
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error(format!("{n} bytes needed, the record ends first")))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error(format!("flag {b} is neither 0 nor 1"))),
        }
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn uuid(&mut self) -> Result<Uuid, CodecError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    /// A count of items of at least `min_size` bytes each, checked against what is left.
    fn len(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.bytes.len() - self.at {
            return Err(self.error(format!("{n} items cannot fit in the record")));
        }
        Ok(n)
    }

    pub fn str(&mut self) -> Result<String, CodecError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.error(e.to_string()))
    }

    fn json(&mut self) -> Result<Value, CodecError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        serde_json::from_slice(bytes).map_err(|e| self.error(e.to_string()))
    }

    fn time(&mut self) -> Result<OffsetDateTime, CodecError> {
        let secs = i64::from_le_bytes(self.array()?);
        let nanos = self.u32()?;
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.replace_nanosecond(nanos).ok())
            .ok_or_else(|| self.error(format!("{secs} s {nanos} ns is not a valid time")))
    }

    pub fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        match self.bool()? {
            false => Ok(None),
            true => read(self).map(Some),
        }
    }

    /// The entry of `all` at the index in the next byte (`what` names it in an error).
    fn pick<T: Copy>(&mut self, all: &[T], what: &str) -> Result<T, CodecError> {
        let i = self.u8()?;
        all.get(i as usize)
            .copied()
            .ok_or_else(|| self.error(format!("unknown {what} {i}")))
    }

    /// Steps over a submission (see the layout above) without decoding it.
    fn skip_submission(&mut self) -> Result<(), CodecError> {
        self.take(16)?;
        self.skip_str()?;
        self.opt(Self::skip_str)?;
        for _ in 0..self.len(4)? {
            self.skip_str()?;
        }
        // priority · budget · timeout_secs
        self.take(1 + 8 + 8)?;
        self.opt(Self::skip_str)?;
        for _ in 0..self.len(16 + 4 + 6 * 8)? {
            self.take(16)?;
            self.skip_str()?;
            self.take(6 * 8)?;
        }
        self.opt(|r| r.take(12).map(drop))?;
        // pinned · seq · created_at
        self.take(1 + 8 + 12)?;
        Ok(())
    }

    /// Steps over a `str` (or a `json`, framed the same way).
    fn skip_str(&mut self) -> Result<(), CodecError> {
        let n = self.u32()? as usize;
        self.take(n).map(drop)
    }

    fn bids(&mut self) -> Result<Vec<Bid>, CodecError> {
        // uuid, name length and six figures at least.
        let n = self.len(16 + 4 + 6 * 8)?;
        (0..n)
            .map(|_| {
                Ok(Bid {
                    agent_id: self.uuid()?,
                    agent_name: self.str()?,
                    price: self.f64()?,
                    scores: BidScores {
                        price: self.f64()?,
                        quality: self.f64()?,
                        speed: self.f64()?,
                        reputation: self.f64()?,
                    },
                    total: self.f64()?,
                })
            })
            .collect()
    }

    fn state(&mut self) -> Result<TaskState, CodecError> {
        let version = self.u64()?;
        let status = self.pick(&TaskStatus::ALL, "status")?;
        let agent_id = self.uuid()?;
        let agent_name = self.str()?;
        let price = self.f64()?;
        let n = self.len(4)?;
        let failover_bids = (0..n).map(|_| self.bids()).collect::<Result<_, _>>()?;
        let result = self.opt(Self::json)?;
        let error = self.opt(Self::str)?;
        let error_code = self.opt(|r| r.pick(&FailureCode::ALL, "failure code"))?;
        let stderr = self.opt(Self::str)?;
        let exit_code = self.opt(|r| r.u32().map(|c| c as i32))?;
        // uuid, two string lengths, two flags, the duration and a time at least.
        let n = self.len(16 + 4 + 4 + 2 + 8 + 12)?;
        let attempts = (0..n)
            .map(|_| {
                Ok(Attempt {
                    agent_id: self.uuid()?,
                    agent_name: self.str()?,
                    outcome: self.str()?,
                    error: self.opt(Self::str)?,
                    error_code: self.opt(|r| r.pick(&FailureCode::ALL, "failure code"))?,
                    duration_ms: self.u64()?,
                    started_at: self.time()?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TaskState {
            version,
            status,
            agent_id,
            agent_name,
            price,
            failover_bids,
            result,
            error,
            error_code,
            stderr,
            exit_code,
            attempts,
            starts: self.u32()?,
            started_at: self.opt(Self::time)?,
            completed_at: self.opt(Self::time)?,
            duration_ms: self.opt(Self::u64)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task with every field set, optional ones included.
    fn full_task() -> Task {
        let bid = |name: &str| Bid {
            agent_id: Uuid::now_v7(),
            agent_name: name.into(),
            price: 0.25,
            scores: BidScores {
                price: 0.1,
                quality: 0.2,
                speed: 0.3,
                reputation: 0.4,
            },
            total: 0.31,
        };
        let now = OffsetDateTime::now_utc();
        Task {
            query: "résumé ✓".into(),
            input: Some(Arc::new(serde_json::json!({"rows": [1, 2.5, null, "x"]}))),
            capabilities: Arc::new(["text".into(), "csv".into()]),
            priority: Priority::Critical,
            budget: 12.5,
            timeout_secs: 300,
            constraints: Some(Arc::new(serde_json::json!({"region": "eu"}))),
            bids: Arc::new([bid("A"), bid("B")]),
            deadline: Some(now + time::Duration::hours(1)),
            pinned: true,
            seq: 99,
            state: TaskState {
                version: 6,
                status: TaskStatus::Failed,
                agent_id: Uuid::now_v7(),
                agent_name: "B".into(),
                price: 0.25,
                failover_bids: vec![vec![bid("B")], vec![]],
                result: Some(serde_json::json!("plain text")),
                error: Some("exit code 3".into()),
                error_code: Some(FailureCode::ExitCode),
                stderr: Some("boom\n".into()),
                exit_code: Some(-3),
                attempts: vec![Attempt {
                    agent_id: Uuid::now_v7(),
                    agent_name: "A".into(),
                    outcome: "failed".into(),
                    error: Some("trap".into()),
                    error_code: Some(FailureCode::StackOverflow),
                    duration_ms: 17,
                    started_at: now,
                }],
                starts: 2,
                started_at: Some(now),
                completed_at: Some(now + time::Duration::milliseconds(17)),
                duration_ms: Some(17),
            },
            ..Task::blank(Uuid::now_v7())
        }
    }

    fn json(task: &Task) -> Value {
        serde_json::to_value(task).unwrap()
    }

    #[test]
    fn tasks_round_trip_with_every_field_set_or_empty() {
        for task in [full_task(), Task::blank(Uuid::now_v7())] {
            let row = encode_row(&task);
            assert_eq!(json(&decode_row(&row).unwrap()), json(&task));
        }
    }

    #[test]
    fn json_rows_written_before_the_binary_encoding_still_read() {
        let task = full_task();
        let row = serde_json::to_vec(&task).unwrap();
        assert_eq!(json(&decode_row(&row).unwrap()), json(&task));
    }

    #[test]
    fn a_state_round_trips_and_brings_a_copy_up_to_date() {
        let task = full_task();
        let mut out = Vec::new();
        put_state(&mut out, task.id, &task.state);
        let mut r = Reader::new(&out);
        let (id, state) = read_state(&mut r).unwrap();
        r.finish().unwrap();
        let mut copy = task.clone();
        copy.state = state;
        assert_eq!(id, task.id);
        assert_eq!(json(&copy), json(&task));
    }

    #[test]
    fn a_state_is_the_tail_of_its_task() {
        // The change record and the row share the state's bytes: one layout, written once.
        let task = full_task();
        let mut state = Vec::new();
        put_state(&mut state, task.id, &task.state);
        assert!(encode_row(&task).ends_with(&state));
    }

    #[test]
    fn a_rows_status_reads_without_decoding_the_rest() {
        for task in [full_task(), Task::blank(Uuid::now_v7())] {
            let status = task.state.status;
            assert_eq!(row_status(&encode_row(&task)).unwrap(), status);
            let json = serde_json::to_vec(&task).unwrap();
            assert_eq!(row_status(&json).unwrap(), status);
        }
        let row = encode_row(&full_task());
        for len in 0..row.len() - 1 {
            let _ = row_status(&row[..len]);
        }
    }

    #[test]
    fn enums_are_written_as_their_position_in_all() {
        assert!(
            Priority::ALL
                .iter()
                .enumerate()
                .all(|(i, p)| *p as usize == i)
        );
        assert!(
            TaskStatus::ALL
                .iter()
                .enumerate()
                .all(|(i, s)| *s as usize == i)
        );
        assert!(
            FailureCode::ALL
                .iter()
                .enumerate()
                .all(|(i, c)| *c as usize == i)
        );
    }

    #[test]
    fn damaged_rows_are_errors_never_panics() {
        let row = encode_row(&full_task());
        // Every truncation, and every single-byte change, either fails cleanly or decodes.
        for len in 0..row.len() {
            assert!(decode_row(&row[..len]).is_err(), "truncated at {len}");
        }
        for i in 0..row.len() {
            let mut damaged = row.clone();
            damaged[i] ^= 0xff;
            let _ = decode_row(&damaged);
        }
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode_row(&longer).is_err(), "trailing bytes");
        let mut huge_count = encode_row(&Task::blank(Uuid::now_v7()));
        // The capability count sits after the format, owner, query and input flag.
        let at = 1 + 16 + 4 + 1 + 1;
        huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_row(&huge_count).is_err());
    }

    #[test]
    fn the_binary_row_is_a_fraction_of_the_json_one() {
        let task = full_task();
        let (binary, json) = (
            encode_row(&task).len(),
            serde_json::to_vec(&task).unwrap().len(),
        );
        assert!(binary * 2 < json, "{binary} vs {json} bytes");
    }
}
