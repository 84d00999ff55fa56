//! Opaque, signed page tokens for keyset pagination (newest or oldest
//! first).
//!
//! A token carries the position after the last row served and a
//! fingerprint of the query (filters and caller scope), signed with the
//! server's key: an altered token, or one replayed with other filters or by
//! another caller, is refused instead of silently listing the wrong rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Result, Scope, StoreError};
use crate::domain::{AccessRequest, State, UserType};

/// Filters of a list call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub state: Option<State>,
    pub user_type: Option<UserType>,
    /// Submitted at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Submitted before.
    pub created_before: Option<DateTime<Utc>>,
    /// For this resource only.
    pub resource: Option<String>,
    /// Whose applicant has this email address (normalised as a submission's
    /// is); matched through the blind index.
    pub applicant_email: Option<String>,
    /// Newest first (the default) or oldest first.
    pub order: Order,
}

/// The order of a list of requests, by submission time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest first.
    #[default]
    NewestFirst,
    /// Oldest first: a review queue's order.
    OldestFirst,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::NewestFirst => "desc",
            Order::OldestFirst => "asc",
        }
    }
}

/// One page of results.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<AccessRequest>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Where the next page starts: strictly after this (time, id) pair in
/// the list's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Position {
    #[serde(rename = "t")]
    pub created_at_us: i64,
    #[serde(rename = "i")]
    pub id: String,
    /// Fingerprint of the query the token belongs to.
    #[serde(rename = "q")]
    pub query: String,
}

/// A position carried by a page token, bound to one query.
pub(super) trait PagePosition: Serialize + DeserializeOwned {
    /// Fingerprint of the query the position belongs to.
    fn query(&self) -> &str;
}

impl PagePosition for Position {
    fn query(&self) -> &str {
        &self.query
    }
}

/// Where the next page of events starts: after this sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct EventPosition {
    #[serde(rename = "s")]
    pub after_seq: i64,
    #[serde(rename = "q")]
    pub query: String,
}

impl PagePosition for EventPosition {
    fn query(&self) -> &str {
        &self.query
    }
}

/// Fetches one page of `select` in `order` of `(created, id)`, starting
/// after `after`, with the token for the next page (`None` on the last
/// page).
#[allow(clippy::too_many_arguments)] // the two columns and the key are all needed
pub(super) async fn keyset_page<E, C>(
    db: &C,
    key: &[u8; 32],
    select: Select<E>,
    (created, id): (E::Column, E::Column),
    order: Order,
    after: Option<&Position>,
    page_size: u32,
    query: String,
    position_of: impl Fn(&E::Model) -> (i64, String),
) -> Result<(Vec<E::Model>, Option<String>)>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut select = select;
    if let Some(position) = after {
        // `bound` is implied by the other two, and is there for the index:
        // SQLite takes no range from an OR, so without it a page walks the
        // index from the first row of the list up to the position, and a
        // deep page costs as much as the pages before it.
        let (bound, time, same_time) = match order {
            Order::NewestFirst => (
                created.lte(position.created_at_us),
                created.lt(position.created_at_us),
                id.lt(position.id.as_str()),
            ),
            Order::OldestFirst => (
                created.gte(position.created_at_us),
                created.gt(position.created_at_us),
                id.gt(position.id.as_str()),
            ),
        };
        select = select.filter(bound).filter(
            Condition::any().add(time).add(
                Condition::all()
                    .add(created.eq(position.created_at_us))
                    .add(same_time),
            ),
        );
    }
    let direction = match order {
        Order::NewestFirst => sea_orm::Order::Desc,
        Order::OldestFirst => sea_orm::Order::Asc,
    };
    let mut rows = select
        .order_by(created, direction.clone())
        .order_by(id, direction)
        .limit(u64::from(page_size) + 1)
        .all(db)
        .await?;
    let has_more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_page_token = match rows.last() {
        Some(last) if has_more => {
            let (created_at_us, id) = position_of(last);
            Some(encode(
                key,
                &Position {
                    created_at_us,
                    id,
                    query,
                },
            ))
        }
        _ => None,
    };
    Ok((rows, next_page_token))
}

/// Fingerprint of any query description.
pub(super) fn fingerprint_text(text: &str) -> String {
    hex::encode(&Sha256::digest(text)[..12])
}

/// Fingerprint of a query, the scope it runs in and the caller (API key
/// name) it was issued to: a token replayed by another caller, even one who
/// sees the same rows, is refused.
pub(super) fn fingerprint(caller: &str, scope: &Scope, query: &ListQuery) -> String {
    let scope_text = match scope {
        Scope::All => "*".to_owned(),
        Scope::OwnedBy(owner) => format!("owner:{owner}"),
    };
    // The email is fingerprinted, never written in clear into the token
    // (the fingerprint is a truncated hash, and the token is signed).
    let text = format!(
        "{caller}|{scope_text}|{}|{}|{}|{}|{}|{}|{}",
        query.state.map(State::as_str).unwrap_or(""),
        query.user_type.map(UserType::as_str).unwrap_or(""),
        query
            .created_from
            .map(|t| t.timestamp_micros().to_string())
            .unwrap_or_default(),
        query
            .created_before
            .map(|t| t.timestamp_micros().to_string())
            .unwrap_or_default(),
        query.resource.as_deref().unwrap_or(""),
        query
            .applicant_email
            .as_deref()
            .map(|email| fingerprint_text(&email.to_lowercase()))
            .unwrap_or_default(),
        query.order.as_str(),
    );
    fingerprint_text(&text)
}

fn signature(key: &[u8; 32], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(payload.as_bytes());
    mac
}

/// Encodes and signs a position.
pub(super) fn encode<T: PagePosition>(key: &[u8; 32], position: &T) -> String {
    let json = serde_json::to_vec(position).expect("plain data always serializes");
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = signature(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
}

/// Verifies and decodes a token produced by [`encode`] for this query.
pub(super) fn decode<T: PagePosition>(
    key: &[u8; 32],
    token: &str,
    expected_query: &str,
) -> Result<T> {
    let (payload, tag) = token
        .split_once('.')
        .ok_or(StoreError::InvalidPageToken("malformed token"))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| StoreError::InvalidPageToken("malformed token"))?;
    if tag.len() != 16 {
        return Err(StoreError::InvalidPageToken("malformed token"));
    }
    signature(key, payload)
        .verify_truncated_left(&tag)
        .map_err(|_| StoreError::InvalidPageToken("token was not issued by this service"))?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| StoreError::InvalidPageToken("malformed token"))?;
    let position: T = serde_json::from_slice(&json)
        .map_err(|_| StoreError::InvalidPageToken("malformed token"))?;
    if position.query() != expected_query {
        return Err(StoreError::InvalidPageToken(
            "token belongs to a list call with other filters or another caller",
        ));
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn position(query: &str) -> Position {
        Position {
            created_at_us: 1_700_000_000_000_000,
            id: "0190a5f0-0000-7000-8000-000000000000".into(),
            query: query.into(),
        }
    }

    #[test]
    fn tokens_round_trip() {
        let query = fingerprint("root", &Scope::All, &ListQuery::default());
        let token = encode(&KEY, &position(&query));
        assert_eq!(
            decode::<Position>(&KEY, &token, &query).unwrap(),
            position(&query)
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let query = fingerprint("root", &Scope::All, &ListQuery::default());
        let token = encode(&KEY, &position(&query));
        let other_key = [8; 32];
        assert!(decode::<Position>(&other_key, &token, &query).is_err());
        let (payload, tag) = token.split_once('.').unwrap();
        let mut altered = position(&query);
        altered.created_at_us += 1;
        let altered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
        assert!(decode::<Position>(&KEY, &format!("{altered_payload}.{tag}"), &query).is_err());
        assert!(decode::<Position>(&KEY, payload, &query).is_err());
        assert!(decode::<Position>(&KEY, "garbage", &query).is_err());
        assert!(decode::<Position>(&KEY, &format!("{payload}."), &query).is_err());
    }

    #[test]
    fn tokens_are_bound_to_filters_and_caller() {
        let all = fingerprint("root", &Scope::All, &ListQuery::default());
        let mine = fingerprint("svc", &Scope::OwnedBy("svc".into()), &ListQuery::default());
        let other_admin = fingerprint("auditor", &Scope::All, &ListQuery::default());
        let pending = fingerprint(
            "root",
            &Scope::All,
            &ListQuery {
                state: Some(State::Pending),
                ..ListQuery::default()
            },
        );
        let oldest_first = fingerprint(
            "root",
            &Scope::All,
            &ListQuery {
                order: Order::OldestFirst,
                ..ListQuery::default()
            },
        );
        let one_resource = fingerprint(
            "root",
            &Scope::All,
            &ListQuery {
                resource: Some("vpn-paris".into()),
                ..ListQuery::default()
            },
        );
        let one_applicant = fingerprint(
            "root",
            &Scope::All,
            &ListQuery {
                applicant_email: Some("ada@example.com".into()),
                ..ListQuery::default()
            },
        );
        assert_ne!(all, mine);
        assert_ne!(all, pending);
        assert_ne!(all, oldest_first, "the same rows, another order");
        assert_ne!(all, one_resource);
        assert_ne!(all, one_applicant);
        assert_ne!(one_resource, one_applicant);
        assert_ne!(all, other_admin, "the same rows, another caller");
        let token = encode(&KEY, &position(&all));
        assert!(matches!(
            decode::<Position>(&KEY, &token, &mine),
            Err(StoreError::InvalidPageToken(_))
        ));
        assert!(decode::<Position>(&KEY, &token, &pending).is_err());
        assert!(decode::<Position>(&KEY, &token, &other_admin).is_err());
    }
}
