//! API key rows: create (the secret is returned once, only its hash is
//! kept), list, revoke, look up by hash, and the first-start bootstrap key.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use tracing::{info, instrument};
use uuid::Uuid;

use std::time::Instant;

use super::entities::api_key;
use super::key_cache::KeyDigest;
use super::{Result, Store, StoreError, from_micros, now, to_micros, unique};
use crate::auth::{GeneratedKey, Principal, Role, generate_key};
use crate::domain::validation::{MAX_RESOURCE_CHARS, TextRule, Validator};

/// The actor recorded for automatic decisions; no key may take this name.
pub const SYSTEM_ACTOR: &str = "system";

/// Name of the admin key created on first start.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap-admin";

/// An API key as listed: never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub name: String,
    pub role: Role,
    /// First characters of the secret, to tell keys apart.
    pub display_prefix: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A gateway key's resources; empty: unbound (any resource).
    pub resources: Vec<String>,
}

impl ApiKeyInfo {
    fn from_row(row: api_key::Model) -> Result<Self> {
        let role = row
            .role
            .parse::<Role>()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let resources = match &row.resources {
            None => Vec::new(),
            Some(json) => serde_json::from_str(json).map_err(|error| {
                StoreError::Corrupt(format!("resources of key {:?}: {error}", row.name))
            })?,
        };
        Ok(ApiKeyInfo {
            name: row.name,
            role,
            display_prefix: row.key_prefix,
            created_at: from_micros(row.created_at_us)?,
            revoked_at: row.revoked_at_us.map(from_micros).transpose()?,
            resources,
        })
    }
}

/// Key names are 1 to 64 characters from `a-z`, `0-9`, `-`, `_` and `.`.
pub fn validate_key_name(name: &str) -> std::result::Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(format!(
            "invalid key name {name:?}: use 1 to 64 characters from a-z, 0-9, -, _ and ."
        ));
    }
    if name == SYSTEM_ACTOR {
        return Err(format!(
            "invalid key name {name:?}: it is reserved for automatic decisions"
        ));
    }
    Ok(())
}

/// Checks the resources a key is bound to: only gateway keys take any,
/// each exactly as a submission's `resource` is stored (the same text
/// rule: at most [`MAX_RESOURCE_CHARS`] characters, no control character,
/// already trimmed and in Unicode NFC), so that it can match one.
pub fn validate_key_resources(role: Role, resources: &[String]) -> std::result::Result<(), String> {
    if resources.is_empty() {
        return Ok(());
    }
    if role != Role::Gateway {
        return Err(format!(
            "only gateway keys are bound to resources; a {role} key takes no --resource"
        ));
    }
    for resource in resources {
        let mut check = Validator::new();
        let stored = check.text("resource", resource, TextRule::required(MAX_RESOURCE_CHARS));
        if stored.as_ref() != Some(resource) {
            return Err(format!(
                "invalid resource {resource:?}: use 1 to {MAX_RESOURCE_CHARS} characters, no \
                 control characters nor surrounding spaces, as in the requests' `resource`"
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Creates a key; the returned secret is the only copy there will ever be.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(ApiKeyInfo, GeneratedKey)> {
        self.create_bound_api_key(name, role, &[]).await
    }

    /// Creates a key bound to `resources` (a gateway key that redeems only
    /// their codes; see [`validate_key_resources`]); none: unbound.
    #[instrument(skip_all, fields(name = %name, role = %role), err(level = "debug"))]
    pub async fn create_bound_api_key(
        &self,
        name: &str,
        role: Role,
        resources: &[String],
    ) -> Result<(ApiKeyInfo, GeneratedKey)> {
        let mut resources = resources.to_vec();
        resources.sort();
        resources.dedup();
        let key = generate_key();
        let row = api_key::ActiveModel {
            id: Set(Uuid::now_v7().to_string()),
            name: Set(name.to_owned()),
            role: Set(role.as_str().to_owned()),
            key_hash: Set(key.hash.clone()),
            key_prefix: Set(key.display_prefix.clone()),
            created_at_us: Set(to_micros(now())),
            revoked_at_us: Set(None),
            resources: Set((!resources.is_empty())
                .then(|| serde_json::to_string(&resources).expect("strings always serialize"))),
        };
        let inserted = match row.insert(&self.db).await {
            Ok(inserted) => inserted,
            Err(error) if error.sql_err().is_some() => {
                return Err(StoreError::ApiKeyNameTaken(name.to_owned()));
            }
            Err(error) => return Err(error.into()),
        };
        info!("api key created");
        Ok((ApiKeyInfo::from_row(inserted)?, key))
    }

    /// Every key, revoked ones included, oldest first.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        api_key::Entity::find()
            .order_by_asc(api_key::Column::CreatedAtUs)
            .order_by_asc(api_key::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKeyInfo::from_row)
            .collect()
    }

    /// Revokes a key by name. Revoking a revoked key keeps the first time.
    #[instrument(skip_all, fields(name = %name), err(level = "debug"))]
    pub async fn revoke_api_key(&self, name: &str) -> Result<ApiKeyInfo> {
        let Some(row) = api_key::Entity::find()
            .filter(api_key::Column::Name.eq(name))
            .one(&self.db)
            .await?
        else {
            return Err(StoreError::ApiKeyNotFound(name.to_owned()));
        };
        if row.revoked_at_us.is_some() {
            self.key_cache.forget_name(name);
            return ApiKeyInfo::from_row(row);
        }
        let mut active: api_key::ActiveModel = row.into();
        active.revoked_at_us = Set(Some(to_micros(now())));
        let updated = active.update(&self.db).await?;
        // Refused by this process from now on; by others within the TTL.
        self.key_cache.forget_name(name);
        info!("api key revoked");
        ApiKeyInfo::from_row(updated)
    }

    /// Whether the key named `name` exists and is not revoked.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn api_key_active(&self, name: &str) -> Result<bool> {
        let found = api_key::Entity::find()
            .filter(api_key::Column::Name.eq(name))
            .filter(api_key::Column::RevokedAtUs.is_null())
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    /// The caller owning the key with this SHA-256 digest, unless unknown
    /// or revoked. Answered from the key cache when this process verified
    /// the key less than [`super::KEY_CACHE_TTL`] ago; revoked keys are
    /// refused at once when revoked through this store, and within the TTL
    /// when revoked by another process.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn find_active_key(&self, digest: &KeyDigest) -> Result<Option<Principal>> {
        let asked_at = Instant::now();
        if let Some(principal) = self.key_cache.get(digest, asked_at) {
            return Ok(Some(principal));
        }
        let generation = self.key_cache.generation();
        let select = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hex::encode(digest)))
            .filter(api_key::Column::RevokedAtUs.is_null());
        let row = unique(select, &self.db).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let info = ApiKeyInfo::from_row(row)?;
        let principal = Principal {
            name: info.name,
            role: info.role,
            resources: info.resources,
        };
        self.key_cache
            .insert(*digest, principal.clone(), asked_at, generation);
        Ok(Some(principal))
    }

    /// Names of the active gateway keys bound to no resource: each redeems
    /// codes for any resource (keys made before keys could be bound).
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn unbound_gateway_keys(&self) -> Result<Vec<String>> {
        let rows = api_key::Entity::find()
            .filter(api_key::Column::Role.eq(Role::Gateway.as_str()))
            .filter(api_key::Column::RevokedAtUs.is_null())
            .filter(api_key::Column::Resources.is_null())
            .order_by_asc(api_key::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|row| row.name).collect())
    }

    /// On an empty key table, creates the `bootstrap-admin` key and returns
    /// its secret. When several replicas start at once only one creates it.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn bootstrap_admin_key(&self) -> Result<Option<GeneratedKey>> {
        let existing = api_key::Entity::find().count(&self.db).await?;
        if existing > 0 {
            return Ok(None);
        }
        match self.create_api_key(BOOTSTRAP_KEY_NAME, Role::Admin).await {
            Ok((_, key)) => Ok(Some(key)),
            Err(StoreError::ApiKeyNameTaken(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
