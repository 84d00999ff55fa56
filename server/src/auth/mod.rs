//! API keys and roles: what a key looks like, how it is hashed, who may do
//! what, and the tower layer that authenticates every Sesame RPC.
//!
//! Keys are 256 random bits, shown once and stored only as a SHA-256 hash
//! (a slow password hash adds nothing for secrets of that entropy).

mod layer;
mod rate;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

pub use layer::{AuthError, AuthLayer};
pub use rate::RateLimiter;

/// Every key starts with this, so leaked keys are easy to grep for.
pub const KEY_PREFIX: &str = "sesame_";

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Submits requests and reads or cancels its own.
    Submitter,
    /// Everything.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// A gateway: redeems gateway codes, nothing else.
    Gateway,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Submitter, Role::Admin, Role::Auditor, Role::Gateway];

    /// The stable name used in the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Gateway => "gateway",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected submitter, admin, auditor or gateway")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| UnknownRole(raw.to_owned()))
    }
}

/// The authenticated caller of an RPC, put in the request extensions by
/// [`AuthLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Unique API key name; recorded as the actor of what the caller does.
    pub name: String,
    pub role: Role,
    /// The resources a gateway key may redeem codes for; empty for an
    /// unbound gateway key (any resource) and for every other role.
    pub resources: Vec<String>,
}

/// Things a caller may ask for, checked by [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    SubmitRequest,
    /// Read requests: all of them, or only its own for a submitter.
    ReadRequests,
    DecideRequest,
    /// Cancel: any request for an admin, its own for a submitter.
    CancelRequest,
    /// Watch, list and verify the event log.
    ReadEvents,
    /// List, retry and preview emails (recipients are personal data).
    ManageEmails,
    /// Redeem a gateway code: gateways only.
    RedeemCode,
    /// Revoke and reissue gateway codes.
    ManageCodes,
    /// Read the review statistics (GetStats).
    ReadStats,
    /// Export and erase a data subject, list their consents.
    ManagePrivacy,
}

/// The caller's role does not allow the permission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("role {role} may not {permission:?}")]
pub struct Forbidden {
    pub role: Role,
    pub permission: Permission,
}

/// The role x permission matrix. Ownership (a submitter's own requests) is
/// enforced by the store scope, not here.
pub fn authorize(principal: &Principal, permission: Permission) -> Result<(), Forbidden> {
    use Permission::*;
    let allowed = match principal.role {
        Role::Admin => permission != RedeemCode,
        Role::Gateway => permission == RedeemCode,
        Role::Auditor => matches!(permission, ReadRequests | ReadEvents),
        Role::Submitter => matches!(permission, SubmitRequest | ReadRequests | CancelRequest),
    };
    if allowed {
        Ok(())
    } else {
        Err(Forbidden {
            role: principal.role,
            permission,
        })
    }
}

/// A newly generated key: the secret to show once, and what to store.
#[derive(Clone)]
pub struct GeneratedKey {
    pub secret: String,
    pub hash: String,
    pub display_prefix: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("secret", &"<redacted>")
            .field("display_prefix", &self.display_prefix)
            .finish()
    }
}

/// Generates a key from the OS CSPRNG: 32 random bytes, base64url.
pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let display_prefix = secret[..KEY_PREFIX.len() + 6].to_owned();
    GeneratedKey {
        hash: hash_key(&secret),
        secret,
        display_prefix,
    }
}

/// The stored form of a key: SHA-256, hex.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let first = generate_key();
        let second = generate_key();
        assert_ne!(first.secret, second.secret);
        assert!(first.secret.starts_with(KEY_PREFIX));
        // 32 bytes in unpadded base64 are 43 characters.
        assert_eq!(first.secret.len(), KEY_PREFIX.len() + 43);
        assert_eq!(first.hash, hash_key(&first.secret));
        assert!(first.secret.starts_with(&first.display_prefix));
        assert!(!format!("{first:?}").contains(&first.secret));
    }

    #[test]
    fn role_matrix() {
        use Permission::*;
        let expectations = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Auditor, [false, true, false, false, true, false]),
            (Role::Submitter, [true, true, false, true, false, false]),
        ];
        for (role, allowed) in expectations {
            let principal = Principal {
                name: "k".into(),
                role,
                resources: Vec::new(),
            };
            for (permission, expected) in [
                SubmitRequest,
                ReadRequests,
                DecideRequest,
                CancelRequest,
                ReadEvents,
            ]
            .into_iter()
            .zip(allowed)
            {
                assert_eq!(
                    authorize(&principal, permission).is_ok(),
                    expected,
                    "{role} {permission:?}"
                );
            }
        }
    }

    #[test]
    fn roles_parse() {
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert!("root".parse::<Role>().is_err());
    }
}
