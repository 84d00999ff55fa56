//! The key store: one row per data subject in `subject_keys`, holding the
//! subject's data key wrapped by a master key of the [`KeyRing`], found by
//! the blind index of the subject's email.
//!
//! The key store may live in its own database (`key_store_url`; by default a
//! SQLite file beside the SQLite database), so that erasing a subject (deleting
//! its row here) also reaches backups of the main database: a restored old
//! backup holds only ciphertext whose key is gone. The table is created here,
//! not by the main migrations, because it may be in another database.
//!
//! Unwrapped keys are cached in memory for [`CACHE_TTL`]; erasing a subject
//! evicts it at once on this replica, and other replicas stop using their
//! cached copy within that time. New keys are written by one task that
//! inserts every key asked for meanwhile in one statement (group commit):
//! concurrent submits for new people share one commit of the key store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use super::{DataKey, KeyRing, Subject, SubjectId};
use crate::store::entities::subject_key;

/// How long an unwrapped data key is used from memory before it is read
/// again: the bound on how long another replica can still open the data of
/// a subject erased elsewhere.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Most keys kept in memory; the cache is emptied when it is full.
const CACHE_MAX: usize = 50_000;
/// Rows rewrapped per transaction by a rotation.
const REWRAP_BATCH: u64 = 500;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("key store: {0}")]
    Database(#[from] DbErr),
    #[error(
        "subject key {subject} is wrapped by master key {master}, which the key file does \
         not hold"
    )]
    UnknownMaster { subject: SubjectId, master: u32 },
    #[error("subject key {0} does not unwrap: wrong key file or altered key store")]
    Unwrap(SubjectId),
}

#[derive(Default)]
struct Cache {
    by_subject: HashMap<SubjectId, (DataKey, Instant)>,
    by_index: HashMap<String, SubjectId>,
}

/// The key store. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    ring: RwLock<Arc<KeyRing>>,
    /// The key file, read again when a key names a master the ring lacks,
    /// or before a new key is wrapped if the file changed (another process
    /// rotated).
    ring_path: Option<PathBuf>,
    /// The key file's modification time when it was last read.
    ring_mtime: Mutex<Option<SystemTime>>,
    cache: Mutex<Cache>,
    /// Queue of the key writer (see [`write_keys`]).
    creations: mpsc::Sender<Creation>,
}

/// A new person's key to create; `done` says whether the batch committed.
struct Creation {
    index: String,
    done: oneshot::Sender<bool>,
}

/// Most keys one insert of the key writer creates.
const CREATE_BATCH: usize = 256;

/// The key writer: takes every request queued, reads the keys that exist
/// and inserts the missing ones in one statement each, caches them all, and
/// tells each caller. Ends with the vault.
async fn write_keys(inner: Weak<Inner>, mut queue: mpsc::Receiver<Creation>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < CREATE_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let vault = Vault { inner };
        let indexes: Vec<String> = batch.iter().map(|c| c.index.clone()).collect();
        let committed = match vault.load_or_create(&indexes).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, keys = indexes.len(), "could not load or create a batch of subject keys; each is tried alone");
                false
            }
        };
        drop(vault);
        for creation in batch {
            let _ = creation.done.send(committed);
        }
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("ring", &*self.ring())
            .finish_non_exhaustive()
    }
}

fn wrap_purpose(subject: SubjectId) -> String {
    format!("subject_key:{subject}")
}

impl Vault {
    /// Opens the key store on `db`, creating its table if needed.
    pub async fn open(
        db: DatabaseConnection,
        ring: KeyRing,
        ring_path: Option<PathBuf>,
    ) -> Result<Vault, VaultError> {
        if let Err(error) = db.execute_unprepared(subject_key::CREATE_TABLE).await {
            // Two replicas creating it at once on PostgreSQL: one loses,
            // the table exists.
            subject_key::Entity::find()
                .limit(1)
                .all(&db)
                .await
                .map_err(|_| error)?;
        }
        let ring_mtime = Mutex::new(ring_path.as_deref().and_then(modified));
        let (creations, queue) = mpsc::channel(4 * CREATE_BATCH);
        let inner = Arc::new(Inner {
            db,
            ring: RwLock::new(Arc::new(ring)),
            ring_path,
            ring_mtime,
            cache: Mutex::new(Cache::default()),
            creations,
        });
        tokio::spawn(write_keys(Arc::downgrade(&inner), queue));
        Ok(Vault { inner })
    }

    /// The key ring in use.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.inner.ring.read().expect("ring lock poisoned").clone()
    }

    /// The key ring after reading the key file again if it changed.
    pub fn current_ring(&self) -> Arc<KeyRing> {
        self.reload_if_changed();
        self.ring()
    }

    /// The blind index of `email`.
    pub fn blind_index(&self, email: &str) -> String {
        self.ring().blind_index(email)
    }

    /// The subject whose email has the blind index `index` (see
    /// [`KeyRing::blind_index`]), created with a new data key on first use.
    pub async fn subject_by_index(&self, index: String) -> Result<Subject, VaultError> {
        if let Some(subject) = self.cached_by_index(&index) {
            return Ok(subject);
        }
        // People met at the same time share the key writer's statements:
        // one read of those who have keys, one insert (one commit, one
        // fsync) for those who have none, one read back; it leaves every
        // key in the cache. If it fails, this caller goes alone, to get the
        // real error.
        let (done, created) = oneshot::channel();
        let queued = self
            .inner
            .creations
            .send(Creation {
                index: index.clone(),
                done,
            })
            .await
            .is_ok();
        if queued
            && created.await.unwrap_or(false)
            && let Some(subject) = self.cached_by_index(&index)
        {
            return Ok(subject);
        }
        if let Some(subject) = self.find_by_index(&index).await? {
            return Ok(subject);
        }
        self.insert_keys(std::slice::from_ref(&index)).await?;
        self.find_by_index(&index)
            .await?
            .ok_or_else(|| VaultError::Database(DbErr::RecordNotFound("subject key".into())))
    }

    /// The keys of the people with these blind indexes, created for those
    /// who have none, all left in the cache.
    async fn load_or_create(&self, indexes: &[String]) -> Result<(), VaultError> {
        let found = self.find_all(indexes).await?;
        let missing: Vec<String> = indexes
            .iter()
            .filter(|index| !found.contains(*index))
            .cloned()
            .collect();
        // Read back only when a concurrent insert (another replica) won
        // some of the rows: its keys are the ones stored.
        if !missing.is_empty() && !self.insert_keys(&missing).await? {
            self.find_all(&missing).await?;
        }
        Ok(())
    }

    /// Reads, unwraps and caches in one query the keys of these subjects
    /// that are not cached yet (a batch of claimed emails, say).
    pub async fn prefetch(&self, ids: &[SubjectId]) -> Result<(), VaultError> {
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| self.cached_key(**id).is_none())
            .map(ToString::to_string)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let rows = subject_key::Entity::find()
            .filter(subject_key::Column::SubjectId.is_in(missing))
            .all(&self.inner.db)
            .await?;
        for row in rows {
            self.unwrap_and_cache(row)?;
        }
        Ok(())
    }

    /// Reads, unwraps and caches the keys of these blind indexes; returns
    /// the indexes found.
    async fn find_all(
        &self,
        indexes: &[String],
    ) -> Result<std::collections::HashSet<String>, VaultError> {
        let rows = subject_key::Entity::find()
            .filter(subject_key::Column::BlindIndex.is_in(indexes.iter().cloned()))
            .all(&self.inner.db)
            .await?;
        let mut found = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            found.insert(row.blind_index.clone());
            self.unwrap_and_cache(row)?;
        }
        Ok(found)
    }

    /// Inserts a new data key for each blind index that has none, in one
    /// statement. Two submits for a new person at once: the first row wins
    /// and both use it. `true` when every row was inserted: the new keys
    /// are then cached as they were written, with no read back; `false`
    /// when another writer had inserted some first (read them back).
    async fn insert_keys(&self, indexes: &[String]) -> Result<bool, VaultError> {
        // A rotation elsewhere: wrap with the new active master key.
        self.reload_if_changed();
        let ring = self.ring();
        let now = chrono::Utc::now().timestamp_micros();
        let mut seen = std::collections::HashSet::new();
        let mut created = Vec::with_capacity(indexes.len());
        let rows: Vec<subject_key::ActiveModel> = indexes
            .iter()
            .filter(|index| seen.insert(index.as_str()))
            .map(|index| {
                let id = SubjectId(Uuid::new_v4());
                let key = DataKey::generate();
                let row = subject_key::ActiveModel {
                    subject_id: Set(id.to_string()),
                    blind_index: Set(index.clone()),
                    master_key_id: Set(ring.active_id() as i32),
                    wrapped_key: Set(ring.seal(&wrap_purpose(id), key.bytes())),
                    created_at_us: Set(now),
                };
                created.push((id, index.clone(), key));
                row
            })
            .collect();
        let inserted = subject_key::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(subject_key::Column::BlindIndex)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.inner.db)
            .await?;
        if inserted != created.len() as u64 {
            return Ok(false);
        }
        for (id, index, key) in created {
            self.cache(id, index, key);
        }
        Ok(true)
    }

    /// The subject whose email is `email`, if Sesame holds a key for them.
    pub async fn find_subject(&self, email: &str) -> Result<Option<Subject>, VaultError> {
        self.find_by_index(&self.blind_index(email)).await
    }

    // Lookups by a unique column read `all` rows (at most one), not `one`:
    // SeaORM's `one` binds `LIMIT 1` as a parameter, which makes SQLite
    // prepare the statement again on every call.
    async fn find_by_index(&self, index: &str) -> Result<Option<Subject>, VaultError> {
        let row = subject_key::Entity::find()
            .filter(subject_key::Column::BlindIndex.eq(index))
            .all(&self.inner.db)
            .await?
            .pop();
        row.map(|row| self.unwrap_and_cache(row)).transpose()
    }

    /// The data key of `subject`; `None` when it was erased (or never
    /// existed).
    pub async fn subject(&self, id: SubjectId) -> Result<Option<Subject>, VaultError> {
        if let Some(key) = self.cached_key(id) {
            return Ok(Some(Subject { id, key }));
        }
        let row = subject_key::Entity::find_by_id(id.to_string())
            .all(&self.inner.db)
            .await?
            .pop();
        row.map(|row| self.unwrap_and_cache(row)).transpose()
    }

    /// The subject of a blind index, from the cache only.
    fn cached_by_index(&self, index: &str) -> Option<Subject> {
        let id = {
            let cache = self.inner.cache.lock().expect("cache lock poisoned");
            cache.by_index.get(index).copied()
        }?;
        let key = self.cached_key(id)?;
        Some(Subject { id, key })
    }

    fn cached_key(&self, id: SubjectId) -> Option<DataKey> {
        let cache = self.inner.cache.lock().expect("cache lock poisoned");
        cache
            .by_subject
            .get(&id)
            .filter(|(_, fetched)| fetched.elapsed() < CACHE_TTL)
            .map(|(key, _)| key.clone())
    }

    fn unwrap_and_cache(&self, row: subject_key::Model) -> Result<Subject, VaultError> {
        let id: SubjectId = row
            .subject_id
            .parse()
            .map_err(|_| VaultError::Database(DbErr::Custom("bad subject id".into())))?;
        let master = u32::try_from(row.master_key_id).unwrap_or(0);
        let mut ring = self.ring();
        if !ring.has_master(master) {
            ring = self.reload_ring(id, master)?;
        }
        let bytes = ring
            .open(&wrap_purpose(id), &row.wrapped_key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(VaultError::Unwrap(id))?;
        let key = DataKey::from_bytes(bytes);
        self.cache(id, row.blind_index, key.clone());
        Ok(Subject { id, key })
    }

    /// Keeps a subject's key in memory for [`CACHE_TTL`].
    fn cache(&self, id: SubjectId, index: String, key: DataKey) {
        let mut cache = self.inner.cache.lock().expect("cache lock poisoned");
        if cache.by_subject.len() >= CACHE_MAX {
            cache.by_subject.clear();
            cache.by_index.clear();
        }
        cache.by_subject.insert(id, (key, Instant::now()));
        cache.by_index.insert(index, id);
    }

    /// Reads the key file again if it changed since it was read (a cheap
    /// `stat`); keeps the ring in use when it cannot be read.
    fn reload_if_changed(&self) {
        let Some(path) = &self.inner.ring_path else {
            return;
        };
        let now = modified(path);
        let mut seen = self.inner.ring_mtime.lock().expect("mtime lock poisoned");
        if now.is_none() || now == *seen {
            return;
        }
        match KeyRing::load(path, false) {
            Ok(ring) => {
                info!(active = ring.active_id(), "key file changed; read again");
                *self.inner.ring.write().expect("ring lock poisoned") = Arc::new(ring);
                *seen = now;
            }
            Err(error) => {
                warn!(%error, "the key file changed but cannot be read; keeping the keys in use")
            }
        }
    }

    /// Reads the key file again: another process added master `master`.
    fn reload_ring(&self, subject: SubjectId, master: u32) -> Result<Arc<KeyRing>, VaultError> {
        let unknown = VaultError::UnknownMaster { subject, master };
        let Some(path) = &self.inner.ring_path else {
            return Err(unknown);
        };
        let ring = KeyRing::load(path, false).map_err(|error| {
            warn!(%error, "could not read the key file again");
            VaultError::UnknownMaster { subject, master }
        })?;
        if !ring.has_master(master) {
            return Err(unknown);
        }
        info!(master, "key file read again: a new master key is in use");
        let ring = Arc::new(ring);
        *self.inner.ring.write().expect("ring lock poisoned") = ring.clone();
        Ok(ring)
    }

    /// Deletes `subject`'s data key: every value sealed with it, wherever it
    /// is stored, can no longer be opened. Returns whether a key existed.
    pub async fn erase(&self, id: SubjectId) -> Result<bool, VaultError> {
        {
            let mut cache = self.inner.cache.lock().expect("cache lock poisoned");
            cache.by_subject.remove(&id);
            cache.by_index.retain(|_, subject| *subject != id);
        }
        let deleted = subject_key::Entity::delete_by_id(id.to_string())
            .exec(&self.inner.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Wraps every data key not yet under `ring`'s active master key with
    /// it, in batches, calling `progress(done)` after each batch. Keys stay
    /// readable throughout (the old master key is still in the ring).
    pub async fn rewrap(
        &self,
        ring: &KeyRing,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, VaultError> {
        let active = ring.active_id() as i32;
        let mut done = 0;
        loop {
            let rows = subject_key::Entity::find()
                .filter(subject_key::Column::MasterKeyId.ne(active))
                .order_by_asc(subject_key::Column::SubjectId)
                .limit(REWRAP_BATCH)
                .all(&self.inner.db)
                .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            for row in rows {
                let id: SubjectId = row
                    .subject_id
                    .parse()
                    .map_err(|_| VaultError::Database(DbErr::Custom("bad subject id".into())))?;
                let master = u32::try_from(row.master_key_id).unwrap_or(0);
                if !ring.has_master(master) {
                    return Err(VaultError::UnknownMaster {
                        subject: id,
                        master,
                    });
                }
                let bytes = ring
                    .open(&wrap_purpose(id), &row.wrapped_key)
                    .map_err(|_| VaultError::Unwrap(id))?;
                let rewrapped = ring.seal(&wrap_purpose(id), &bytes);
                // Conditional: an erasure meanwhile deletes the row, and
                // the update then changes nothing.
                subject_key::Entity::update_many()
                    .col_expr(
                        subject_key::Column::WrappedKey,
                        sea_orm::sea_query::Expr::value(rewrapped),
                    )
                    .col_expr(
                        subject_key::Column::MasterKeyId,
                        sea_orm::sea_query::Expr::value(active),
                    )
                    .filter(subject_key::Column::SubjectId.eq(row.subject_id))
                    .filter(subject_key::Column::MasterKeyId.eq(row.master_key_id))
                    .exec(&self.inner.db)
                    .await?;
                done += 1;
            }
            progress(done);
        }
    }

    /// How many data keys each master key wraps.
    pub async fn keys_per_master(&self) -> Result<Vec<(u32, i64)>, VaultError> {
        let rows: Vec<(i32, i64)> = subject_key::Entity::find()
            .select_only()
            .column(subject_key::Column::MasterKeyId)
            .column_as(subject_key::Column::SubjectId.count(), "count")
            .group_by(subject_key::Column::MasterKeyId)
            .order_by_asc(subject_key::Column::MasterKeyId)
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, count)| (u32::try_from(id).unwrap_or(0), count))
            .collect())
    }

    /// The key store's connection, for tests and tools.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.inner.db
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}
