//! Agent records and the per-owner name index.

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{Store, StoreError, decode, encode, read_json, tables};
use crate::agents::{Agent, AgentStatus};

/// What [`Store::insert_agent_replacing_rejected`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Took the name of this rejected agent, which is deleted.
    Replaced(Uuid),
    NameTaken,
}

impl Store {
    /// Inserts a new agent. Returns `false` (and writes nothing) if the owner already has an
    /// agent with this name.
    pub async fn insert_agent(&self, agent: Agent) -> Result<bool, StoreError> {
        Ok(self.insert_agent_replacing_rejected(agent).await? != Inserted::NameTaken)
    }

    /// Inserts a new agent. If the owner has an agent with this name that was rejected, the new
    /// one replaces it (a rejected agent never ran, so nothing refers to it); any other agent
    /// of that name makes it [`Inserted::NameTaken`], and nothing is written.
    pub async fn insert_agent_replacing_rejected(
        &self,
        agent: Agent,
    ) -> Result<Inserted, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let inserted = {
                let owner = agent.owner_id.to_string();
                let id = agent.id.to_string();
                let mut names = txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
                let mut agents = txn.open_table(tables::AGENTS)?;
                let existing = names
                    .get((owner.as_str(), agent.name.as_str()))?
                    .map(|v| v.value().to_owned());
                let inserted = match existing {
                    None => Inserted::New,
                    Some(old) => match read_json::<Agent>(&agents, "agents", &old)? {
                        Some(a) if a.status == AgentStatus::Rejected => {
                            agents.remove(old.as_str())?;
                            Inserted::Replaced(a.id)
                        }
                        _ => return Ok(Inserted::NameTaken),
                    },
                };
                names.insert((owner.as_str(), agent.name.as_str()), id.as_str())?;
                agents.insert(id.as_str(), encode(&agent).as_slice())?;
                inserted
            };
            txn.commit()?;
            Ok(inserted)
        })
        .await
    }

    /// Applies `change` to the stored agent in one write transaction (so it cannot undo a
    /// statistics update made meanwhile) and returns the new record; `None` if it is gone.
    pub async fn update_agent(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Agent) + Send + 'static,
    ) -> Result<Option<Agent>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let key = id.to_string();
            let updated = {
                let mut table = txn.open_table(tables::AGENTS)?;
                let Some(mut agent) = read_json::<Agent>(&table, "agents", &key)? else {
                    return Ok(None);
                };
                change(&mut agent);
                table.insert(key.as_str(), encode(&agent).as_slice())?;
                agent
            };
            txn.commit()?;
            Ok(Some(updated))
        })
        .await
    }

    pub async fn agent(&self, id: Uuid) -> Result<Option<Agent>, StoreError> {
        self.get_json(tables::AGENTS, id.to_string()).await
    }

    pub async fn agent_by_owner_name(
        &self,
        owner: Uuid,
        name: String,
    ) -> Result<Option<Agent>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let owner = owner.to_string();
            let names = txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
            let Some(id) = names
                .get((owner.as_str(), name.as_str()))?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            read_json(&txn.open_table(tables::AGENTS)?, "agents", &id)
        })
        .await
    }

    /// Every agent, newest first.
    pub async fn all_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::AGENTS)?;
            let mut agents = table
                .iter()?
                .map(|entry| decode::<Agent>("agents", entry?.1.value()))
                .collect::<Result<Vec<_>, _>>()?;
            agents.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
            Ok(agents)
        })
        .await
    }

    /// The agents with these ids, in the given order; unknown ids are skipped.
    pub async fn agents_by_ids(&self, ids: Vec<Uuid>) -> Result<Vec<Agent>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::AGENTS)?;
            let mut agents = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(agent) = read_json(&table, "agents", &id.to_string())? {
                    agents.push(agent);
                }
            }
            Ok(agents)
        })
        .await
    }
}
