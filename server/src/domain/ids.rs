//! Typed identifiers and their resource names (`accessRequests/{uuid}`).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The resource collection of access requests, as used in resource names.
pub const ACCESS_REQUESTS_COLLECTION: &str = "accessRequests";

/// Identifies one access request. Time-ordered (UUID v7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessRequestId(Uuid);

/// A resource name that is not `accessRequests/{uuid}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a resource name of the form accessRequests/{{uuid}}")]
pub struct NameError;

impl AccessRequestId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses a resource name `accessRequests/{uuid}`.
    pub fn from_name(name: &str) -> Result<Self, NameError> {
        let Some(raw_id) = name
            .strip_prefix(ACCESS_REQUESTS_COLLECTION)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Err(NameError);
        };
        Uuid::try_parse(raw_id).map(Self).map_err(|_| NameError)
    }

    /// The resource name, `accessRequests/{uuid}`.
    pub fn name(&self) -> String {
        format!("{ACCESS_REQUESTS_COLLECTION}/{}", self.0)
    }
}

impl fmt::Display for AccessRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for AccessRequestId {
    type Err = uuid::Error;

    /// Parses the bare UUID as stored in the database.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(raw).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_round_trips() {
        let id = AccessRequestId::generate();
        assert_eq!(AccessRequestId::from_name(&id.name()), Ok(id));
        assert_eq!(id.to_string().parse::<AccessRequestId>().unwrap(), id);
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "accessRequests/",
            "accessRequests/not-a-uuid",
            "requests/0190a5f0-0000-7000-8000-000000000000",
            "accessRequests0190a5f0-0000-7000-8000-000000000000",
            "0190a5f0-0000-7000-8000-000000000000",
        ] {
            assert_eq!(AccessRequestId::from_name(bad), Err(NameError), "{bad:?}");
        }
    }
}
