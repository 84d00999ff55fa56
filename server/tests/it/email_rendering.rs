//! The email rendering checks (`server/tests/email-rendering/test.sh`), so
//! that `cargo test --workspace` runs them against this build's binary:
//! every kind x locale x user type rendered by `sesame templates render`,
//! checked with doiuse-email, html-validate and Chromium at 320 and 600 px
//! (docs/email-style.md). A missing npm or chromium fails the test; it is
//! never skipped.

use std::path::Path;

use sesame_server::domain::mail::MailTemplate;
use sesame_server::domain::{Locale, UserType};

use crate::clients::run_test_script;

#[test]
fn every_email_passes_the_rendering_checks() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("email-rendering")
        .join("test.sh");
    let text = run_test_script(&script, "the email rendering checks", &[]);
    // check.mjs ends with "email rendering: 64 emails, 128 screenshots,
    // 15 baselined findings, 0 failed (25.1 s)".
    let summary = text
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("email rendering: "))
        .unwrap_or_else(|| panic!("check.mjs printed no summary:\n{text}"));
    let count = |word: &str| -> usize {
        summary
            .split(", ")
            .find_map(|part| {
                let mut words = part.split_whitespace();
                let number = words.next()?;
                (words.next() == Some(word)).then(|| number.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {word} count in {summary:?}"))
    };
    // The kinds are read from the binary: all of them, or check.mjs missed some.
    let emails = MailTemplate::ALL.len() * Locale::ALL.len() * UserType::ALL.len();
    assert_eq!(count("emails"), emails, "{text}");
    // One screenshot per email at 320 and at 600 px.
    assert_eq!(count("screenshots"), emails * 2, "{text}");
    assert_eq!(count("failed"), 0, "{text}");
}
