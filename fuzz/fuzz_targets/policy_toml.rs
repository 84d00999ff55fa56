//! Fuzz target `policy_toml`: the decision policy file (TOML) an operator
//! writes, parsed as `sesame serve` and its reloader parse it, then every
//! accepted policy evaluated against a few submissions.
//!
//! Properties: parsing never panics and a refusal says which rule is wrong
//! or what TOML error occurred; evaluating an accepted policy never panics,
//! a matching rule is one of the policy's, an approval count is within
//! 1..=MAX_APPROVALS, and the explanation names the rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_fuzz::sample_submission;
use sesame_server::domain::policy::{MAX_APPROVALS, Outcome, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::parse(text) {
        Ok(policy) => policy,
        Err(error) => {
            assert!(error.to_string().starts_with("invalid policy: "), "{error}");
            return;
        }
    };
    for index in 0..3 {
        let submission = sample_submission(index);
        let evaluation = policy.evaluate(&submission);
        let explanation = evaluation.explanation();
        match &evaluation.rule {
            Some(rule) => {
                assert!(!policy.is_empty());
                assert!(explanation.contains(rule.as_str()), "{explanation}");
            }
            None => assert!(evaluation.matched.is_empty()),
        }
        match &evaluation.outcome {
            Outcome::Review { approvals } => {
                assert!((1..=MAX_APPROVALS).contains(approvals), "{approvals}");
            }
            Outcome::Reject { reason } => assert!(!reason.trim().is_empty()),
            Outcome::Approve => {}
        }
    }
});
