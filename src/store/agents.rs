//! Agent records, their versions and reviews, the per-owner name index and blob reference
//! counts. Every change that adds or drops a version adjusts [`tables::BLOB_REFS`] in the same
//! transaction and returns the blobs no version uses any more, for the caller to delete.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, decode, encode, read_json, tables};
use crate::records::{Agent, AgentStatus, AgentVersion, Review, semver_cmp};

/// What [`Store::insert_agent_replacing_rejected`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Took the name of this rejected agent, which is deleted; `released` are the blobs only
    /// it used.
    Replaced {
        old: Uuid,
        released: Vec<String>,
    },
    NameTaken,
}

/// What one owner's agents hold, for the quotas on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    pub agents: u64,
    /// Sum of the sizes of every version of every agent.
    pub module_bytes: u64,
}

/// Why a change to an agent was refused (nothing was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AgentNotFound,
    VersionNotFound,
    /// The agent already has a version with this string.
    VersionTaken,
    /// The current version cannot be deleted.
    VersionIsCurrent,
    /// Only a ready version can become current.
    VersionNotReady,
    /// The owner has another agent with this name.
    NameTaken,
    /// The reviewer has no completed task on the agent.
    NotEligible,
}

type Refused<T> = Result<Result<T, Refusal>, StoreError>;

type RefTable<'t> = redb::Table<'t, &'static str, u64>;

fn add_ref(refs: &mut RefTable, hash: &str) -> Result<(), StoreError> {
    let n = refs.get(hash)?.map_or(0, |v| v.value());
    refs.insert(hash, n + 1)?;
    Ok(())
}

/// Drops one reference; a blob left without any is pushed to `released`.
fn drop_ref(refs: &mut RefTable, hash: &str, released: &mut Vec<String>) -> Result<(), StoreError> {
    let n = refs.get(hash)?.map_or(0, |v| v.value());
    if n <= 1 {
        refs.remove(hash)?;
        released.push(hash.to_owned());
    } else {
        refs.insert(hash, n - 1)?;
    }
    Ok(())
}

/// Makes `v` the agent's current version.
fn make_current(agent: &mut Agent, v: &AgentVersion) {
    agent.version = v.version.clone();
    agent.binary_hash = v.sha256.clone();
    agent.binary_size = v.size;
    mirror(agent, v);
}

/// Copies the build state of the current version into the agent record.
fn mirror(agent: &mut Agent, v: &AgentVersion) {
    agent.status = v.status;
    agent.rejection = v.rejection.clone();
    agent.build = v.build.clone();
}

fn version_of(agent: &Agent) -> AgentVersion {
    AgentVersion {
        version: agent.version.clone(),
        sha256: agent.binary_hash.clone(),
        size: agent.binary_size,
        created_at: agent.created_at,
        status: agent.status,
        rejection: agent.rejection.clone(),
        build: agent.build.clone(),
    }
}

/// Every version row of `agent`.
fn versions_in(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    agent: &str,
) -> Result<Vec<AgentVersion>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((agent, "")..)? {
        let (key, value) = entry?;
        if key.value().0 != agent {
            break;
        }
        out.push(decode("agent_versions", value.value())?);
    }
    Ok(out)
}

/// Deletes an agent's record, name, versions and reviews inside `txn`; returns the record and
/// the blobs released.
fn remove_agent(
    txn: &WriteTransaction,
    id: &str,
) -> Result<Option<(Agent, Vec<String>)>, StoreError> {
    let mut agents = txn.open_table(tables::AGENTS)?;
    let Some(agent) = read_json::<Agent>(&agents, "agents", id)? else {
        return Ok(None);
    };
    agents.remove(id)?;
    let owner = agent.owner_id.to_string();
    let mut names = txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
    if names
        .get((owner.as_str(), agent.name.as_str()))?
        .is_some_and(|v| v.value() == id)
    {
        names.remove((owner.as_str(), agent.name.as_str()))?;
    }
    let mut versions = txn.open_table(tables::AGENT_VERSIONS)?;
    let mut refs = txn.open_table(tables::BLOB_REFS)?;
    let mut released = Vec::new();
    for v in versions_in(&versions, id)? {
        versions.remove((id, v.version.as_str()))?;
        drop_ref(&mut refs, &v.sha256, &mut released)?;
    }
    let mut reviews = txn.open_table(tables::REVIEWS)?;
    let mut users = Vec::new();
    for entry in reviews.range((id, "")..)? {
        let (key, _) = entry?;
        let (agent, user) = key.value();
        if agent != id {
            break;
        }
        users.push(user.to_owned());
    }
    for user in users {
        reviews.remove((id, user.as_str()))?;
    }
    Ok(Some((agent, released)))
}

/// Fills the tables schema 3 added from an older file: one version per agent (its current
/// binary), the blob reference counts, and the completed runs of the stored tasks.
pub(super) fn migrate_to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let agents: Vec<Agent> = txn
        .open_table(tables::AGENTS)?
        .iter()?
        .map(|e| decode("agents", e?.1.value()))
        .collect::<Result<_, _>>()?;
    let mut versions = txn.open_table(tables::AGENT_VERSIONS)?;
    let mut refs = txn.open_table(tables::BLOB_REFS)?;
    for agent in &agents {
        let id = agent.id.to_string();
        if versions_in(&versions, &id)?.is_empty() && !agent.binary_hash.is_empty() {
            let v = version_of(agent);
            versions.insert((id.as_str(), v.version.as_str()), encode(&v).as_slice())?;
            add_ref(&mut refs, &v.sha256)?;
        }
    }
    let tasks = txn.open_table(tables::TASKS)?;
    let mut completed = txn.open_table(tables::COMPLETED_RUNS)?;
    for entry in tasks.iter()? {
        let (key, _) = entry?;
        if let Some(task) = super::tasks::read_task(&tasks, key.value())?
            && task.state.status == crate::records::TaskStatus::Completed
        {
            super::tasks::count_completed_run(&mut completed, &task)?;
        }
    }
    if !agents.is_empty() {
        tracing::info!(agents = agents.len(), "data file upgraded to schema 3");
    }
    Ok(())
}

impl Store {
    /// Inserts a new agent. Returns `false` (and writes nothing) if the owner already has an
    /// agent with this name.
    pub async fn insert_agent(&self, agent: Agent) -> Result<bool, StoreError> {
        Ok(self.insert_agent_replacing_rejected(agent).await? != Inserted::NameTaken)
    }

    /// Inserts a new agent with its first version (its current binary). If the owner has an
    /// agent with this name that was rejected, the new one replaces it (a rejected agent never
    /// ran, so nothing refers to it); any other agent of that name makes it
    /// [`Inserted::NameTaken`], and nothing is written.
    pub async fn insert_agent_replacing_rejected(
        &self,
        agent: Agent,
    ) -> Result<Inserted, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let owner = agent.owner_id.to_string();
            let existing = txn
                .open_table(tables::AGENTS_BY_OWNER_NAME)?
                .get((owner.as_str(), agent.name.as_str()))?
                .map(|v| v.value().to_owned());
            let inserted = match existing {
                None => Inserted::New,
                Some(old) => {
                    let agents = txn.open_table(tables::AGENTS)?;
                    match read_json::<Agent>(&agents, "agents", &old)? {
                        Some(a) if a.status == AgentStatus::Rejected => {
                            drop(agents);
                            let (_, released) = remove_agent(&txn, &old)?.expect("read above");
                            Inserted::Replaced {
                                old: a.id,
                                released,
                            }
                        }
                        _ => return Ok(Inserted::NameTaken),
                    }
                }
            };
            {
                let id = agent.id.to_string();
                txn.open_table(tables::AGENTS_BY_OWNER_NAME)?
                    .insert((owner.as_str(), agent.name.as_str()), id.as_str())?;
                txn.open_table(tables::AGENTS)?
                    .insert(id.as_str(), encode(&agent).as_slice())?;
                if !agent.binary_hash.is_empty() {
                    let v = version_of(&agent);
                    txn.open_table(tables::AGENT_VERSIONS)?
                        .insert((id.as_str(), v.version.as_str()), encode(&v).as_slice())?;
                    add_ref(&mut txn.open_table(tables::BLOB_REFS)?, &v.sha256)?;
                }
            }
            txn.commit()?;
            Ok(inserted)
        })
        .await
    }

    /// Applies `change` to the stored agent `id` in one write transaction and writes the agent
    /// back, unless the agent is missing or `change` refuses: then nothing is written. `change`
    /// may open every table but [`tables::AGENTS`]. One transaction per change, so it cannot
    /// undo a statistics update made meanwhile.
    async fn change_agent<T: Send + 'static>(
        &self,
        id: Uuid,
        change: impl FnOnce(&WriteTransaction, &mut Agent) -> Refused<T> + Send + 'static,
    ) -> Refused<(Agent, T)> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let key = id.to_string();
            let Some(mut agent) =
                read_json::<Agent>(&txn.open_table(tables::AGENTS)?, "agents", &key)?
            else {
                return Ok(Err(Refusal::AgentNotFound));
            };
            let out = match change(&txn, &mut agent)? {
                Ok(out) => out,
                Err(refusal) => return Ok(Err(refusal)),
            };
            txn.open_table(tables::AGENTS)?
                .insert(key.as_str(), encode(&agent).as_slice())?;
            txn.commit()?;
            Ok(Ok((agent, out)))
        })
        .await
    }

    /// [`Store::change_agent`] for an owner's edit: also stamps `updated_at`.
    async fn edit<T: Send + 'static>(
        &self,
        id: Uuid,
        change: impl FnOnce(&WriteTransaction, &mut Agent) -> Refused<T> + Send + 'static,
    ) -> Refused<(Agent, T)> {
        self.change_agent(id, move |txn, agent| {
            let out = change(txn, agent)?;
            agent.updated_at = Some(OffsetDateTime::now_utc());
            Ok(out)
        })
        .await
    }

    /// Applies `change` to the stored agent and returns the new record; `None` if it is gone.
    /// The name and versions must not change here: see [`Store::edit_agent`].
    pub async fn update_agent(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Agent) + Send + 'static,
    ) -> Result<Option<Agent>, StoreError> {
        let changed = self
            .change_agent(id, move |_, agent| {
                change(agent);
                Ok(Ok(()))
            })
            .await?;
        Ok(changed.ok().map(|(agent, ())| agent))
    }

    /// An owner's edit of an agent's description fields, which may rename it: the name index
    /// follows, and a name the owner already uses refuses the edit.
    pub async fn edit_agent(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Agent) + Send + 'static,
    ) -> Refused<Agent> {
        let edited = self
            .edit(id, move |txn, agent| {
                let old_name = agent.name.clone();
                change(agent);
                if agent.name != old_name {
                    let (owner, key) = (agent.owner_id.to_string(), agent.id.to_string());
                    let mut names = txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
                    if names.get((owner.as_str(), agent.name.as_str()))?.is_some() {
                        return Ok(Err(Refusal::NameTaken));
                    }
                    names.remove((owner.as_str(), old_name.as_str()))?;
                    names.insert((owner.as_str(), agent.name.as_str()), key.as_str())?;
                }
                Ok(Ok(()))
            })
            .await?;
        Ok(edited.map(|(agent, ())| agent))
    }

    /// Adds a version. If the agent's current version is ready, the new one builds beside it
    /// and becomes current when ready (`next_version`); otherwise it is current at once.
    pub async fn add_version(&self, id: Uuid, v: AgentVersion) -> Refused<Agent> {
        let added = self
            .edit(id, move |txn, agent| {
                let key = id.to_string();
                let mut versions = txn.open_table(tables::AGENT_VERSIONS)?;
                if versions.get((key.as_str(), v.version.as_str()))?.is_some() {
                    return Ok(Err(Refusal::VersionTaken));
                }
                versions.insert((key.as_str(), v.version.as_str()), encode(&v).as_slice())?;
                add_ref(&mut txn.open_table(tables::BLOB_REFS)?, &v.sha256)?;
                if agent.status == AgentStatus::Ready {
                    agent.next_version = Some(v.version.clone());
                } else {
                    make_current(agent, &v);
                    agent.next_version = None;
                }
                Ok(Ok(()))
            })
            .await?;
        Ok(added.map(|(agent, ())| agent))
    }

    /// Replaces the bytes of the current version in place: it builds again, and the agent
    /// is not ready until it has. Returns the agent and the blobs released.
    pub async fn replace_current_binary(
        &self,
        id: Uuid,
        sha256: String,
        size: u64,
    ) -> Refused<(Agent, Vec<String>)> {
        self.edit(id, move |txn, agent| {
            let key = id.to_string();
            let mut versions = txn.open_table(tables::AGENT_VERSIONS)?;
            let vkey = (key.as_str(), agent.version.as_str());
            let mut v: AgentVersion = match versions.get(vkey)? {
                Some(row) => decode("agent_versions", row.value())?,
                None => version_of(agent),
            };
            let mut released = Vec::new();
            let mut refs = txn.open_table(tables::BLOB_REFS)?;
            add_ref(&mut refs, &sha256)?;
            drop_ref(&mut refs, &v.sha256, &mut released)?;
            v.sha256 = sha256;
            v.size = size;
            v.status = AgentStatus::Validating;
            v.rejection = None;
            v.build = None;
            versions.insert(vkey, encode(&v).as_slice())?;
            make_current(agent, &v);
            Ok(Ok(released))
        })
        .await
    }

    /// Stores a build step of version `version` (with bytes `sha256`; a build of bytes since
    /// replaced changes nothing). The agent mirrors it if it is current; a ready
    /// `next_version` becomes current, a rejected one stops being next. `None` if the agent
    /// or version is gone.
    pub async fn record_build(
        &self,
        id: Uuid,
        version: String,
        sha256: String,
        change: impl FnOnce(&mut AgentVersion) + Send + 'static,
    ) -> Result<Option<Agent>, StoreError> {
        let recorded = self
            .change_agent(id, move |txn, agent| {
                let key = id.to_string();
                let mut versions = txn.open_table(tables::AGENT_VERSIONS)?;
                let vkey = (key.as_str(), version.as_str());
                let Some(mut v) = versions
                    .get(vkey)?
                    .map(|row| decode::<AgentVersion>("agent_versions", row.value()))
                    .transpose()?
                    .filter(|v| v.sha256 == sha256)
                else {
                    return Ok(Err(Refusal::VersionNotFound));
                };
                change(&mut v);
                versions.insert(vkey, encode(&v).as_slice())?;
                if agent.version == version {
                    mirror(agent, &v);
                } else if agent.next_version.as_deref() == Some(version.as_str()) {
                    match v.status {
                        AgentStatus::Ready => {
                            make_current(agent, &v);
                            agent.next_version = None;
                        }
                        AgentStatus::Rejected => agent.next_version = None,
                        _ => {}
                    }
                }
                Ok(Ok(()))
            })
            .await?;
        Ok(recorded.ok().map(|(agent, ())| agent))
    }

    /// Deletes a version that is not current; returns the agent and the blobs released.
    pub async fn delete_version(&self, id: Uuid, version: String) -> Refused<(Agent, Vec<String>)> {
        self.edit(id, move |txn, agent| {
            if agent.version == version {
                return Ok(Err(Refusal::VersionIsCurrent));
            }
            let key = id.to_string();
            let Some(v) = txn
                .open_table(tables::AGENT_VERSIONS)?
                .remove((key.as_str(), version.as_str()))?
                .map(|row| decode::<AgentVersion>("agent_versions", row.value()))
                .transpose()?
            else {
                return Ok(Err(Refusal::VersionNotFound));
            };
            let mut released = Vec::new();
            drop_ref(
                &mut txn.open_table(tables::BLOB_REFS)?,
                &v.sha256,
                &mut released,
            )?;
            if agent.next_version.as_deref() == Some(version.as_str()) {
                agent.next_version = None;
            }
            Ok(Ok(released))
        })
        .await
    }

    /// Makes a ready version current again (and forgets a pending `next_version`).
    pub async fn rollback(&self, id: Uuid, version: String) -> Refused<Agent> {
        let rolled = self
            .edit(id, move |txn, agent| {
                let key = id.to_string();
                let Some(v) = txn
                    .open_table(tables::AGENT_VERSIONS)?
                    .get((key.as_str(), version.as_str()))?
                    .map(|row| decode::<AgentVersion>("agent_versions", row.value()))
                    .transpose()?
                else {
                    return Ok(Err(Refusal::VersionNotFound));
                };
                if v.status != AgentStatus::Ready {
                    return Ok(Err(Refusal::VersionNotReady));
                }
                make_current(agent, &v);
                agent.next_version = None;
                Ok(Ok(()))
            })
            .await?;
        Ok(rolled.map(|(agent, ())| agent))
    }

    /// Deletes an agent with its versions and reviews (its tasks stay). Returns the record
    /// and the blobs released; `None` if it did not exist.
    pub async fn delete_agent(&self, id: Uuid) -> Result<Option<(Agent, Vec<String>)>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let removed = remove_agent(&txn, &id.to_string())?;
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    /// The agent's versions, newest (by semver) first.
    pub async fn versions(&self, id: Uuid) -> Result<Vec<AgentVersion>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let mut versions =
                versions_in(&txn.open_table(tables::AGENT_VERSIONS)?, &id.to_string())?;
            versions.sort_by(|a, b| semver_cmp(&b.version, &a.version));
            Ok(versions)
        })
        .await
    }

    pub async fn version(
        &self,
        id: Uuid,
        version: String,
    ) -> Result<Option<AgentVersion>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            txn.open_table(tables::AGENT_VERSIONS)?
                .get((id.to_string().as_str(), version.as_str()))?
                .map(|row| decode("agent_versions", row.value()))
                .transpose()
        })
        .await
    }

    /// How many versions use the blob `hash`.
    pub async fn blob_refs(&self, hash: String) -> Result<u64, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            Ok(txn
                .open_table(tables::BLOB_REFS)?
                .get(hash.as_str())?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    /// Blobs stored without any version using them (left by a crash between storing the bytes
    /// and the version, or by a collection that did not finish).
    pub async fn unreferenced_blobs(&self) -> Result<Vec<String>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let refs = txn.open_table(tables::BLOB_REFS)?;
            let mut orphans = Vec::new();
            for entry in txn.open_table(tables::BLOBS)?.iter()? {
                let hash = entry?.0.value().to_owned();
                if refs.get(hash.as_str())?.is_none() {
                    orphans.push(hash);
                }
            }
            Ok(orphans)
        })
        .await
    }

    /// Adds or replaces `review` if its author had a task completed by the agent (or the
    /// caller knows of one the task log has not applied here yet: `completed`), updating the
    /// agent's rating in the same transaction.
    pub async fn put_review(&self, review: Review, completed: bool) -> Refused<(Agent, Review)> {
        self.change_agent(review.agent_id, move |txn, agent| {
            let (agent_key, user_key) = (review.agent_id.to_string(), review.user_id.to_string());
            let runs = txn
                .open_table(tables::COMPLETED_RUNS)?
                .get((user_key.as_str(), agent_key.as_str()))?
                .map_or(0, |v| v.value());
            if runs == 0 && !completed {
                return Ok(Err(Refusal::NotEligible));
            }
            let mut reviews = txn.open_table(tables::REVIEWS)?;
            let key = (agent_key.as_str(), user_key.as_str());
            let previous = reviews
                .get(key)?
                .map(|row| decode::<Review>("reviews", row.value()))
                .transpose()?;
            let mut review = review;
            if let Some(p) = &previous {
                review.created_at = p.created_at;
            }
            agent
                .rating
                .apply(review.rating, previous.map(|p| p.rating));
            reviews.insert(key, encode(&review).as_slice())?;
            Ok(Ok(review))
        })
        .await
    }

    /// Every review of an agent, newest first.
    pub async fn reviews(&self, id: Uuid) -> Result<Vec<Review>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::REVIEWS)?;
            let agent = id.to_string();
            let mut reviews = Vec::new();
            for entry in table.range((agent.as_str(), "")..)? {
                let (key, value) = entry?;
                if key.value().0 != agent {
                    break;
                }
                reviews.push(decode::<Review>("reviews", value.value())?);
            }
            reviews.sort_by(|a, b| {
                b.updated_at
                    .cmp(&a.updated_at)
                    .then(a.user_id.cmp(&b.user_id))
            });
            Ok(reviews)
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

    /// What `owner`'s agents hold: a range of the name index and of each agent's versions.
    pub async fn holdings(&self, owner: Uuid) -> Result<Holdings, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let owner = owner.to_string();
            let names = txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
            let versions = txn.open_table(tables::AGENT_VERSIONS)?;
            let mut held = Holdings::default();
            for entry in names.range((owner.as_str(), "")..)? {
                let (key, id) = entry?;
                if key.value().0 != owner {
                    break;
                }
                held.agents += 1;
                for v in versions_in(&versions, id.value())? {
                    held.module_bytes += v.size;
                }
            }
            Ok(held)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_with_blob(name: &str, hash: &str) -> Agent {
        Agent {
            binary_hash: hash.into(),
            binary_size: 10,
            ..Agent::fixture(name, 0.0, &["x"])
        }
    }

    #[tokio::test]
    async fn a_schema_2_file_gets_one_version_per_agent_and_its_blob_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let (a, b) = (agent_with_blob("a", "h1"), agent_with_blob("b", "h1"));
        {
            // What a schema 2 file holds: agents, no versions or counts.
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut agents = txn.open_table(tables::AGENTS).unwrap();
                for agent in [&a, &b] {
                    agents
                        .insert(agent.id.to_string().as_str(), encode(agent).as_slice())
                        .unwrap();
                }
                txn.open_table(tables::META)
                    .unwrap()
                    .insert(tables::SCHEMA_VERSION, 2)
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let versions = store.versions(a.id).await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(
            (versions[0].version.as_str(), versions[0].sha256.as_str()),
            ("1.0.0", "h1")
        );
        assert_eq!(store.blob_refs("h1".into()).await.unwrap(), 2);
        drop(store);
        // Opening again changes nothing.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.blob_refs("h1".into()).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn versions_count_blob_references_and_release_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let mut a = agent_with_blob("a", "h1");
        a.status = AgentStatus::Ready;
        store.insert_agent(a.clone()).await.unwrap();
        let v2 = AgentVersion {
            version: "2.0.0".into(),
            sha256: "h2".into(),
            size: 1,
            created_at: OffsetDateTime::now_utc(),
            status: AgentStatus::Validating,
            rejection: None,
            build: None,
        };
        let agent = store.add_version(a.id, v2.clone()).await.unwrap().unwrap();
        // Built beside the ready current version.
        assert_eq!(
            (agent.version.as_str(), agent.next_version.as_deref()),
            ("1.0.0", Some("2.0.0"))
        );
        assert_eq!(
            store.add_version(a.id, v2).await.unwrap().unwrap_err(),
            Refusal::VersionTaken
        );
        let agent = store
            .record_build(a.id, "2.0.0".into(), "h2".into(), |v| {
                v.status = AgentStatus::Ready
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                agent.version.as_str(),
                agent.binary_hash.as_str(),
                agent.next_version
            ),
            ("2.0.0", "h2", None)
        );
        assert_eq!(
            store
                .delete_version(a.id, "2.0.0".into())
                .await
                .unwrap()
                .unwrap_err(),
            Refusal::VersionIsCurrent
        );
        store.rollback(a.id, "1.0.0".into()).await.unwrap().unwrap();
        let (_, released) = store
            .delete_version(a.id, "2.0.0".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(released, ["h2"]);
        let (_, released) = store.delete_agent(a.id).await.unwrap().unwrap();
        assert_eq!(released, ["h1"]);
        assert!(store.agent(a.id).await.unwrap().is_none());
        assert!(store.versions(a.id).await.unwrap().is_empty());
    }
}
