//! Analytics cells: finished tasks counted per owner, agent and time bucket.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::{Store, StoreError, decode, encode, tables};
use crate::records::{
    Cell, HOUR, HOUR_CELLS_KEPT, MINUTE, MINUTE_CELLS_KEPT, PlacedCell, Task, codec, finished_at,
};

/// A cell's key in [`tables::ANALYTICS`], owned.
type CellKey = (String, u32, u64, String);

/// Counts a finished task into `cells` (per owner and for everyone, per minute and per hour),
/// leaving out the cells that start before `kept_since` (minute, hour cutoffs).
fn add_task(cells: &mut HashMap<CellKey, Cell>, task: &Task, kept_since: (u64, u64)) {
    let at = finished_at(task);
    let agent = task.state.agent_id.to_string();
    for owner in [Some(task.owner_id), None].map(tables::owner_key) {
        for (width, since) in [(MINUTE, kept_since.0), (HOUR, kept_since.1)] {
            let start = at / u64::from(width) * u64::from(width);
            if start < since {
                continue;
            }
            cells
                .entry((owner.clone(), width, start, agent.clone()))
                .or_default()
                .count(task);
        }
    }
}

/// Adds `cells` to the stored ones: one read and write per cell.
fn write_cells(txn: &WriteTransaction, cells: HashMap<CellKey, Cell>) -> Result<(), StoreError> {
    let mut table = txn.open_table(tables::ANALYTICS)?;
    for ((owner, width, start, agent), delta) in cells {
        let key = (owner.as_str(), width, start, agent.as_str());
        let mut cell: Cell = match table.get(key)? {
            Some(row) => decode("analytics", row.value())?,
            None => Cell::default(),
        };
        cell.merge(&delta);
        table.insert(key, encode(&cell).as_slice())?;
    }
    Ok(())
}

/// Counts tasks that just reached a terminal state into their cells.
pub(super) fn count_finished(txn: &WriteTransaction, tasks: &[&Task]) -> Result<(), StoreError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut cells = HashMap::new();
    for task in tasks {
        add_task(&mut cells, task, (0, 0));
    }
    write_cells(txn, cells)
}

/// Fills the analytics table from the finished tasks of a file written before it existed,
/// as of `now`: only what retention would keep, one task in memory at a time.
pub(super) fn backfill(txn: &WriteTransaction, now: u64) -> Result<u64, StoreError> {
    let kept_since = (
        now.saturating_sub(MINUTE_CELLS_KEPT),
        now.saturating_sub(HOUR_CELLS_KEPT),
    );
    let mut cells = HashMap::new();
    let mut counted = 0;
    for row in txn.open_table(tables::TASKS)?.iter()? {
        let (_, value) = row?;
        let task = codec::decode_row(value.value())?;
        if !task.state.status.is_terminal() || finished_at(&task) < kept_since.1 {
            continue;
        }
        add_task(&mut cells, &task, kept_since);
        counted += 1;
        if cells.len() >= 100_000 {
            write_cells(txn, std::mem::take(&mut cells))?;
        }
    }
    write_cells(txn, cells)?;
    Ok(counted)
}

impl Store {
    /// The cells of `owner` (everyone's with `None`) of `width` that start in `from..to`:
    /// `(start, agent, cell)`.
    pub async fn analytics_cells(
        &self,
        owner: Option<Uuid>,
        width: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<PlacedCell>, StoreError> {
        let owner = tables::owner_key(owner);
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::ANALYTICS)?;
            let mut out = Vec::new();
            for row in
                table.range((owner.as_str(), width, from, "")..(owner.as_str(), width, to, ""))?
            {
                let (key, value) = row?;
                let (_, _, start, agent) = key.value();
                if let Ok(agent) = Uuid::parse_str(agent) {
                    out.push((start, agent, decode("analytics", value.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Deletes the cells past their keeping time at `now` (unix seconds); returns how many.
    pub async fn prune_analytics(&self, now: u64) -> Result<u64, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let mut deleted = 0;
            {
                let mut table = txn.open_table(tables::ANALYTICS)?;
                let mut owners = Vec::new();
                let mut next: Option<String> = None;
                loop {
                    // The first key after every cell of the previous owner.
                    let first = match &next {
                        None => table.first()?.map(|(k, _)| k.value().0.to_owned()),
                        Some(owner) => table
                            .range((owner.as_str(), u32::MAX, u64::MAX, "")..)?
                            .next()
                            .transpose()?
                            .map(|(k, _)| k.value().0.to_owned()),
                    };
                    let Some(owner) = first else { break };
                    owners.push(owner.clone());
                    next = Some(owner);
                }
                for owner in &owners {
                    for (width, kept) in [(MINUTE, MINUTE_CELLS_KEPT), (HOUR, HOUR_CELLS_KEPT)] {
                        let cutoff = now.saturating_sub(kept);
                        let range =
                            (owner.as_str(), width, 0, "")..(owner.as_str(), width, cutoff, "");
                        table.retain_in(range, |_, _| {
                            deleted += 1;
                            false
                        })?;
                    }
                }
            }
            txn.commit()?;
            Ok(deleted)
        })
        .await
    }
}
