//! The decision policy: ordered rules read from a TOML file that approve,
//! reject, or ask for review of a submission by what it is (user type,
//! email domain, organization, resource). The first rule that matches wins;
//! no match means one manual approval. Pure: parsing and evaluation only.
//!
//! ```toml
//! [[rules]]
//! id = "partners"
//! action = "approve"                       # approve | reject | require_review
//! user_types = ["partner"]
//! email_domain_suffixes = ["partner.example"]
//!
//! [[rules]]
//! id = "prod-db"
//! action = "require_review"
//! approvals = 2                            # distinct admins; never the submitter
//! resources = ["prod-db"]
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{NewAccessRequest, UserType};

/// Most approvals a rule may require.
pub const MAX_APPROVALS: u32 = 10;

/// What a rule does to a matching submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approve,
    Reject {
        reason: String,
    },
    /// Wait for `approvals` distinct administrators, none of them the
    /// submitter.
    Review {
        approvals: u32,
    },
}

/// One rule of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub outcome: Outcome,
    user_types: Vec<UserType>,
    email_domains: Vec<String>,
    email_domain_suffixes: Vec<String>,
    organizations: Vec<String>,
    resources: Vec<String>,
}

/// The rule that decided a submission, and the values it matched on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// `None`: no rule matched (manual review by one administrator).
    pub rule: Option<String>,
    pub outcome: Outcome,
    /// Criterion -> the submission's value that satisfied it.
    pub matched: BTreeMap<String, String>,
}

impl Evaluation {
    /// One line saying why, for the decision and its event.
    pub fn explanation(&self) -> String {
        let Some(rule) = &self.rule else {
            return "no rule matched: manual review".to_owned();
        };
        let matched: Vec<String> = self
            .matched
            .iter()
            .map(|(criterion, value)| format!("{criterion}={value}"))
            .collect();
        if matched.is_empty() {
            format!("rule {rule} (matches every request)")
        } else {
            format!("rule {rule} matched {}", matched.join(", "))
        }
    }
}

/// An ordered list of rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// Why a policy file is refused; names the rule when it can.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    action: String,
    reason: Option<String>,
    approvals: Option<u32>,
    #[serde(default)]
    user_types: Vec<String>,
    #[serde(default)]
    email_domains: Vec<String>,
    #[serde(default)]
    email_domain_suffixes: Vec<String>,
    #[serde(default)]
    organizations: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
}

impl Policy {
    /// No rules: every request waits for one manual approval.
    pub fn manual() -> Policy {
        Policy::default()
    }

    /// Parses and checks a policy file's text. Every problem of the first
    /// bad rule is reported with the rule's position and id.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            toml::from_str(text).map_err(|error| PolicyError(error.to_string()))?;
        let mut ids = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (index, raw) in raw.rules.into_iter().enumerate() {
            let at = format!("rule {} ({:?})", index + 1, raw.id);
            let fail = |what: String| PolicyError(format!("{at}: {what}"));
            if raw.id.is_empty()
                || raw.id.len() > 64
                || !raw
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(fail("id must be 1 to 64 of A-Z a-z 0-9 - _ .".to_owned()));
            }
            if !ids.insert(raw.id.clone()) {
                return Err(fail("id is used by an earlier rule".to_owned()));
            }
            let outcome = match raw.action.as_str() {
                "approve" => Outcome::Approve,
                "reject" => Outcome::Reject {
                    reason: raw
                        .reason
                        .clone()
                        .filter(|reason| !reason.trim().is_empty())
                        .ok_or_else(|| fail("a reject rule needs a reason".to_owned()))?,
                },
                "require_review" => {
                    let approvals = raw.approvals.unwrap_or(1);
                    if !(1..=MAX_APPROVALS).contains(&approvals) {
                        return Err(fail(format!("approvals must be 1 to {MAX_APPROVALS}")));
                    }
                    Outcome::Review { approvals }
                }
                other => {
                    return Err(fail(format!(
                        "action {other:?} is not approve, reject or require_review"
                    )));
                }
            };
            if raw.approvals.is_some() && !matches!(outcome, Outcome::Review { .. }) {
                return Err(fail("approvals only applies to require_review".to_owned()));
            }
            let user_types = raw
                .user_types
                .iter()
                .map(|name| {
                    UserType::parse(name).ok_or_else(|| {
                        fail(format!(
                            "unknown user type {name:?}: expected employee, partner, customer or contractor"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let lower = |values: Vec<String>| -> Vec<String> {
                values
                    .into_iter()
                    .map(|value| value.trim().trim_start_matches('.').to_lowercase())
                    .collect()
            };
            rules.push(Rule {
                id: raw.id,
                outcome,
                user_types,
                email_domains: lower(raw.email_domains),
                email_domain_suffixes: lower(raw.email_domain_suffixes),
                organizations: raw.organizations,
                resources: raw.resources,
            });
        }
        Ok(Policy { rules })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching `submission`, or manual review.
    pub fn evaluate(&self, submission: &NewAccessRequest) -> Evaluation {
        for rule in &self.rules {
            if let Some(matched) = rule.matches(submission) {
                return Evaluation {
                    rule: Some(rule.id.clone()),
                    outcome: rule.outcome.clone(),
                    matched,
                };
            }
        }
        Evaluation {
            rule: None,
            outcome: Outcome::Review { approvals: 1 },
            matched: BTreeMap::new(),
        }
    }
}

impl Rule {
    /// The values that satisfied each criterion the rule sets, or `None`
    /// when one is not satisfied. Lists are alternatives; criteria all
    /// apply. Domains compare without case; suffixes match whole labels
    /// (`partner.example` matches `eu.partner.example`, not
    /// `notpartner.example`).
    fn matches(&self, submission: &NewAccessRequest) -> Option<BTreeMap<String, String>> {
        let mut matched = BTreeMap::new();
        if !self.user_types.is_empty() {
            self.user_types
                .contains(&submission.user_type)
                .then_some(())?;
            matched.insert(
                "user_type".to_owned(),
                submission.user_type.as_str().to_owned(),
            );
        }
        let domain = submission
            .applicant
            .email
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_lowercase())
            .unwrap_or_default();
        if !self.email_domains.is_empty() {
            self.email_domains.contains(&domain).then_some(())?;
            matched.insert("email_domain".to_owned(), domain.clone());
        }
        if !self.email_domain_suffixes.is_empty() {
            self.email_domain_suffixes
                .iter()
                .any(|suffix| domain == *suffix || domain.ends_with(&format!(".{suffix}")))
                .then_some(())?;
            matched.insert("email_domain".to_owned(), domain);
        }
        if !self.organizations.is_empty() {
            self.organizations
                .contains(&submission.applicant.organization)
                .then_some(())?;
            matched.insert(
                "organization".to_owned(),
                submission.applicant.organization.clone(),
            );
        }
        if !self.resources.is_empty() {
            self.resources
                .contains(&submission.resource)
                .then_some(())?;
            matched.insert("resource".to_owned(), submission.resource.clone());
        }
        Some(matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Applicant, Consent, Locale};

    fn submission(email: &str, user_type: UserType, resource: &str) -> NewAccessRequest {
        NewAccessRequest {
            applicant: Applicant {
                email: email.into(),
                full_name: "Ada".into(),
                organization: "Analytical Engines".into(),
                phone: None,
            },
            user_type,
            locale: Locale::En,
            resource: resource.into(),
            justification: "j".into(),
            consent: Consent {
                version: "1".into(),
                purposes: vec!["p".into()],
            },
            request_id: None,
        }
    }

    const POLICY: &str = r#"
        [[rules]]
        id = "blocked"
        action = "reject"
        reason = "this domain may not get access"
        email_domains = ["Evil.Example"]

        [[rules]]
        id = "partners"
        action = "approve"
        user_types = ["partner"]
        email_domain_suffixes = ["partner.example"]

        [[rules]]
        id = "prod-db"
        action = "require_review"
        approvals = 2
        resources = ["prod-db"]
    "#;

    #[test]
    fn the_first_matching_rule_wins_and_says_why() {
        let policy = Policy::parse(POLICY).unwrap();
        assert_eq!(policy.len(), 3);
        let partner = policy.evaluate(&submission(
            "ada@eu.partner.example",
            UserType::Partner,
            "prod-db",
        ));
        assert_eq!(partner.rule.as_deref(), Some("partners"));
        assert_eq!(partner.outcome, Outcome::Approve);
        assert_eq!(
            partner.explanation(),
            "rule partners matched email_domain=eu.partner.example, user_type=partner"
        );
        // Precedence: the reject rule comes first.
        let evil = policy.evaluate(&submission("x@EVIL.example", UserType::Partner, "vpn"));
        assert_eq!(evil.rule.as_deref(), Some("blocked"));
        assert!(matches!(evil.outcome, Outcome::Reject { .. }));
        // Criteria all apply: an employee of a partner domain is not a partner.
        let employee = policy.evaluate(&submission(
            "ada@partner.example",
            UserType::Employee,
            "prod-db",
        ));
        assert_eq!(employee.rule.as_deref(), Some("prod-db"));
        assert_eq!(employee.outcome, Outcome::Review { approvals: 2 });
        let nothing = policy.evaluate(&submission("ada@else.example", UserType::Employee, "vpn"));
        assert_eq!(nothing.rule, None);
        assert_eq!(nothing.outcome, Outcome::Review { approvals: 1 });
        assert_eq!(
            Policy::manual().evaluate(&submission("a@b.c", UserType::Partner, "x")),
            nothing
        );
    }

    #[test]
    fn suffixes_match_whole_labels_only() {
        let policy = Policy::parse(
            "[[rules]]\nid = \"p\"\naction = \"approve\"\nemail_domain_suffixes = [\".partner.example\"]\n",
        )
        .unwrap();
        for (email, hit) in [
            ("a@partner.example", true),
            ("a@eu.partner.example", true),
            ("a@notpartner.example", false),
            ("a@partner.example.evil", false),
        ] {
            let evaluation = policy.evaluate(&submission(email, UserType::Customer, "x"));
            assert_eq!(evaluation.rule.is_some(), hit, "{email}");
        }
    }

    #[test]
    fn bad_policies_are_refused_with_the_rule() {
        for (text, expected) in [
            (
                "[[rules]]\nid = \"a\"\naction = \"maybe\"\n",
                "rule 1 (\"a\"): action \"maybe\"",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"reject\"\n",
                "needs a reason",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"approve\"\n[[rules]]\nid = \"a\"\naction = \"approve\"\n",
                "rule 2 (\"a\"): id is used",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"require_review\"\napprovals = 0\n",
                "approvals must be",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"approve\"\napprovals = 2\n",
                "only applies",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"approve\"\nuser_types = [\"robot\"]\n",
                "unknown user type",
            ),
            (
                "[[rules]]\nid = \"a\"\naction = \"approve\"\ncolour = 1\n",
                "unknown field",
            ),
            ("[[rules]\n", "invalid"),
        ] {
            let error = Policy::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
