//! Email templates: per email kind and locale, a text file (first line the
//! subject, then a blank line, then the body) and an MJML fragment that is
//! placed in `layout.mjml` and compiled to responsive HTML by mrml once, at
//! start; both are minijinja templates rendered per email. Built-ins are
//! embedded in the binary; a directory overrides them by file name. Values
//! are HTML-escaped in HTML and left as they are in text.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::Environment;

use crate::domain::mail::MailTemplate;
use crate::domain::{Locale, UserType};

/// `(file name, contents)` of a file of `server/templates/`.
macro_rules! builtin {
    ($name:literal) => {
        ($name, include_str!(concat!("../../templates/", $name)))
    };
}

/// Every built-in template file, by name.
const BUILTIN: &[(&str, &str)] = &[
    builtin!("layout.mjml"),
    builtin!("admin_new_request.en.mjml"),
    builtin!("admin_new_request.en.txt"),
    builtin!("admin_new_request.fr.mjml"),
    builtin!("admin_new_request.fr.txt"),
    builtin!("admin_reminder.en.mjml"),
    builtin!("admin_reminder.en.txt"),
    builtin!("admin_reminder.fr.mjml"),
    builtin!("admin_reminder.fr.txt"),
    builtin!("admin_escalation.en.mjml"),
    builtin!("admin_escalation.en.txt"),
    builtin!("admin_escalation.fr.mjml"),
    builtin!("admin_escalation.fr.txt"),
    builtin!("applicant_approved.en.contractor.mjml"),
    builtin!("applicant_approved.en.contractor.txt"),
    builtin!("applicant_approved.en.mjml"),
    builtin!("applicant_approved.en.txt"),
    builtin!("applicant_approved.fr.contractor.mjml"),
    builtin!("applicant_approved.fr.contractor.txt"),
    builtin!("applicant_approved.fr.mjml"),
    builtin!("applicant_approved.fr.txt"),
    builtin!("applicant_cancelled.en.mjml"),
    builtin!("applicant_cancelled.en.txt"),
    builtin!("applicant_cancelled.fr.mjml"),
    builtin!("applicant_cancelled.fr.txt"),
    builtin!("applicant_expired.en.mjml"),
    builtin!("applicant_expired.en.txt"),
    builtin!("applicant_expired.fr.mjml"),
    builtin!("applicant_expired.fr.txt"),
    builtin!("applicant_received.en.mjml"),
    builtin!("applicant_received.en.txt"),
    builtin!("applicant_received.fr.mjml"),
    builtin!("applicant_received.fr.txt"),
    builtin!("applicant_rejected.en.mjml"),
    builtin!("applicant_rejected.en.txt"),
    builtin!("applicant_rejected.fr.mjml"),
    builtin!("applicant_rejected.fr.txt"),
];

/// Where a kind's MJML fragment goes in `layout.mjml`.
const CONTENT_MARKER: &str = "<!-- content -->";

/// A template that does not compile or render, with where.
#[derive(Debug, thiserror::Error)]
#[error("email template {name}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    pub name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn from_minijinja(fallback_name: &str, error: &minijinja::Error) -> Self {
        TemplateError {
            name: error.name().unwrap_or(fallback_name).to_owned(),
            line: error.line(),
            message: error
                .detail()
                .map_or_else(|| error.kind().to_string(), str::to_owned),
        }
    }
}

/// One rendered email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles the built-in templates, and checks that every kind has both
    /// parts in every locale.
    pub fn builtin() -> Result<Templates, TemplateError> {
        Self::load(None)
    }

    /// Compiles the built-in templates overridden by the files of `dir`,
    /// and checks that every kind has both parts in every locale. Files:
    /// `KIND.LOCALE[.USER_TYPE].txt` (subject line, blank line, body),
    /// `KIND.LOCALE[.USER_TYPE].mjml` (an MJML fragment placed in
    /// `layout.mjml` and compiled to HTML once, here), or a finished `.html`
    /// that takes precedence over the `.mjml` of the same name. The first
    /// error names its file and line.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        // name -> (where it came from, contents)
        let mut sources: BTreeMap<String, (String, String)> = BUILTIN
            .iter()
            .map(|(name, source)| {
                (
                    (*name).to_owned(),
                    ((*name).to_owned(), (*source).to_owned()),
                )
            })
            .collect();
        if let Some(dir) = dir {
            for (name, path, source) in read_dir(dir)? {
                sources.insert(name, (path, source));
            }
        }
        let (layout_origin, layout) = &sources["layout.mjml"];
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Compiled MJML first, so that a finished `.html` replaces it.
        for (name, (origin, source)) in &sources {
            let Some(stem) = name.strip_suffix(".mjml") else {
                continue;
            };
            if name == "layout.mjml" {
                continue;
            }
            // The fragment's own template syntax, checked with its lines.
            Environment::new()
                .template_from_named_str(origin, source)
                .map(drop)
                .map_err(|error| TemplateError::from_minijinja(origin, &error))?;
            let html = compile_mjml(origin, source, layout_origin, layout)?;
            env.add_template_owned(format!("{stem}.html"), html)
                .map_err(|error| TemplateError::from_minijinja(origin, &error))?;
        }
        for (name, (origin, source)) in sources {
            if name.ends_with(".txt") || name.ends_with(".html") {
                env.add_template_owned(name, source)
                    .map_err(|error| TemplateError::from_minijinja(&origin, &error))?;
            }
        }
        for template in MailTemplate::ALL {
            for locale in Locale::ALL {
                for part in ["txt", "html"] {
                    let name = file_name(template, locale, None, part);
                    if env.get_template(&name).is_err() {
                        let name = name.replace(".html", ".mjml");
                        return Err(TemplateError {
                            name,
                            line: None,
                            message: "missing".to_owned(),
                        });
                    }
                }
            }
        }
        Ok(Templates { env })
    }

    /// The file used for `part`: the user type's variation when there is
    /// one, else the general file.
    fn pick(
        &self,
        template: MailTemplate,
        locale: Locale,
        user_type: UserType,
        part: &str,
    ) -> String {
        let specific = file_name(template, locale, Some(user_type), part);
        if self.env.get_template(&specific).is_ok() {
            specific
        } else {
            file_name(template, locale, None, part)
        }
    }

    /// Renders `template` in `locale` for `user_type` with `data`.
    pub fn render(
        &self,
        template: MailTemplate,
        locale: Locale,
        user_type: UserType,
        data: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        let text_name = self.pick(template, locale, user_type, "txt");
        let html_name = self.pick(template, locale, user_type, "html");
        let text = self
            .env
            .get_template(&text_name)
            .and_then(|text| text.render(data))
            .map_err(|error| TemplateError::from_minijinja(&text_name, &error))?;
        let Some((subject, body)) = text.split_once('\n') else {
            return Err(TemplateError {
                name: text_name,
                line: None,
                message: "the first line must be the subject, followed by the body".to_owned(),
            });
        };
        let subject = subject.trim();
        // The HTML also gets the subject (its <title>) and the locale.
        let context = minijinja::context! {
            subject => subject,
            locale => locale.as_str(),
            ..minijinja::Value::from_serialize(data)
        };
        let html = self
            .env
            .get_template(&html_name)
            .and_then(|html| html.render(context))
            .map_err(|error| TemplateError::from_minijinja(&html_name, &error))?;
        Ok(Rendered {
            subject: subject.to_owned(),
            text: body.trim_start().to_owned(),
            html,
        })
    }
}

/// Values shown by PreviewEmail and `sesame templates render` when the
/// caller gives none.
pub fn sample_data(user_type: &str) -> serde_json::Value {
    serde_json::json!({
        "full_name": "Ada Lovelace",
        "organization": "Analytical Engines Ltd",
        "applicant_email": "ada@example.com",
        "resource": "vpn-paris",
        "request": "accessRequests/0190a5f0-0000-7000-8000-000000000000",
        "user_type": user_type,
        "reason": "Access granted for the maintenance window.",
        "gateway_code": "K7Q2-9MZX-ABCD-EFGH-JKMN-PQRS",
        "code_expires": "2026-12-01 09:00 UTC",
        "submitted": "2026-11-26 09:00 UTC",
    })
}

/// The `.txt`, `.mjml` and `.html` files of `dir`, sorted: `(file name,
/// path, contents)`.
fn read_dir(dir: &Path) -> Result<Vec<(String, String, String)>, TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|error| TemplateError {
        name: dir.display().to_string(),
        line: None,
        message: format!("cannot read the template directory: {error}"),
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let is_template = path
            .extension()
            .is_some_and(|ext| ext == "txt" || ext == "mjml" || ext == "html");
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if !is_template {
            continue;
        }
        let source = std::fs::read_to_string(&path).map_err(|error| TemplateError {
            name: path.display().to_string(),
            line: None,
            message: error.to_string(),
        })?;
        files.push((name.to_owned(), path.display().to_string(), source));
    }
    Ok(files)
}

/// Places `fragment` in `layout` at [`CONTENT_MARKER`] and compiles the MJML
/// document to HTML (template tags pass through as text). Errors point at
/// the line of the fragment or of the layout where the MJML is wrong.
fn compile_mjml(
    name: &str,
    fragment: &str,
    layout_name: &str,
    layout: &str,
) -> Result<String, TemplateError> {
    let Some(at) = layout.find(CONTENT_MARKER) else {
        return Err(TemplateError {
            name: layout_name.to_owned(),
            line: None,
            message: format!("the layout must contain {CONTENT_MARKER}"),
        });
    };
    let after = at + CONTENT_MARKER.len();
    let document = format!("{}{fragment}{}", &layout[..at], &layout[after..]);
    let located = |offset: Option<usize>, message: String| {
        let line_of =
            |text: &str, offset: usize| text[..offset.min(text.len())].lines().count().max(1);
        match offset {
            Some(offset) if (at..at + fragment.len()).contains(&offset) => TemplateError {
                name: name.to_owned(),
                line: Some(line_of(fragment, offset - at)),
                message,
            },
            Some(offset) => {
                let in_layout = if offset < at {
                    offset
                } else {
                    offset - fragment.len() + CONTENT_MARKER.len()
                };
                TemplateError {
                    name: layout_name.to_owned(),
                    line: Some(line_of(layout, in_layout)),
                    message: format!("{message} (while compiling {name})"),
                }
            }
            None => TemplateError {
                name: name.to_owned(),
                line: None,
                message,
            },
        }
    };
    let parsed = mrml::parse(&document).map_err(|error| {
        located(
            mjml_error_offset(&error, &document),
            format!("invalid MJML: {error}"),
        )
    })?;
    parsed
        .element
        .render(&mrml::prelude::render::RenderOptions::default())
        .map_err(|error| located(None, format!("MJML does not render: {error}")))
}

/// The byte offset in `document` an MJML parse error points at, when it
/// has one.
fn mjml_error_offset(error: &mrml::prelude::parser::Error, document: &str) -> Option<usize> {
    use mrml::prelude::parser::Error;
    match error {
        Error::ParserError { source, .. } => {
            // The HTML tokenizer reports a 1-based row and column.
            let position = source.pos();
            let row = usize::try_from(position.row).ok()?.checked_sub(1)?;
            let line_start: usize = document.split_inclusive('\n').take(row).map(str::len).sum();
            Some(line_start + usize::try_from(position.col).ok()?.saturating_sub(1))
        }
        Error::UnexpectedElement { position, .. }
        | Error::UnexpectedToken { position, .. }
        | Error::MissingAttribute { position, .. }
        | Error::InvalidAttribute { position, .. }
        | Error::InvalidFormat { position, .. }
        | Error::IncludeLoaderError { position, .. } => Some(position.start),
        _ => None,
    }
}

fn file_name(
    template: MailTemplate,
    locale: Locale,
    user_type: Option<UserType>,
    part: &str,
) -> String {
    match user_type {
        Some(user_type) => format!(
            "{}.{}.{}.{part}",
            template.as_str(),
            locale.as_str(),
            user_type.as_str()
        ),
        None => format!("{}.{}.{part}", template.as_str(), locale.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> serde_json::Value {
        serde_json::json!({
            "full_name": "Ada <script>alert(1)</script> O'Brien",
            "organization": "AE",
            "applicant_email": "ada@example.com",
            "resource": "vpn-paris",
            "request": "accessRequests/0190a5f0-0000-7000-8000-000000000000",
            "user_type": "partner",
            "reason": "because",
            "submitted": "2026-11-26 09:00 UTC",
        })
    }

    #[test]
    fn every_kind_renders_in_every_locale() {
        let templates = Templates::builtin().unwrap();
        for template in MailTemplate::ALL {
            for locale in Locale::ALL {
                let rendered = templates
                    .render(template, locale, UserType::Employee, &data())
                    .unwrap();
                assert!(!rendered.subject.is_empty(), "{template:?} {locale:?}");
                assert!(!rendered.subject.contains('\n'));
                assert!(
                    rendered.text.contains("vpn-paris"),
                    "{template:?} {locale:?}"
                );
                assert!(rendered.html.contains("vpn-paris"));
                assert!(
                    rendered
                        .html
                        .contains(&format!("lang=\"{}\"", locale.as_str()))
                );
            }
        }
    }

    #[test]
    fn html_escapes_values_and_text_keeps_them() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates
            .render(
                MailTemplate::ApplicantReceived,
                Locale::En,
                UserType::Employee,
                &data(),
            )
            .unwrap();
        assert!(
            rendered.html.contains("&lt;script&gt;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<script>"));
        assert!(
            rendered
                .text
                .contains("Ada <script>alert(1)</script> O'Brien")
        );
    }

    #[test]
    fn french_wording_is_french() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates
            .render(
                MailTemplate::ApplicantApproved,
                Locale::Fr,
                UserType::Partner,
                &data(),
            )
            .unwrap();
        assert!(
            rendered.subject.starts_with("Votre accès"),
            "{}",
            rendered.subject
        );
        assert!(rendered.text.contains("approuvée"));
    }

    #[test]
    fn user_types_get_their_variation_where_there_is_one() {
        let templates = Templates::builtin().unwrap();
        for locale in Locale::ALL {
            let contractor = templates
                .render(
                    MailTemplate::ApplicantApproved,
                    locale,
                    UserType::Contractor,
                    &data(),
                )
                .unwrap();
            let partner = templates
                .render(
                    MailTemplate::ApplicantApproved,
                    locale,
                    UserType::Partner,
                    &data(),
                )
                .unwrap();
            assert_ne!(contractor.text, partner.text);
            assert!(contractor.html.contains("AE"));
        }
    }

    #[test]
    fn a_directory_overrides_and_reports_errors_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("applicant_received.en.txt"),
            "Custom {{ resource }}\n\nBody",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let rendered = templates
            .render(
                MailTemplate::ApplicantReceived,
                Locale::En,
                UserType::Employee,
                &data(),
            )
            .unwrap();
        assert_eq!(rendered.subject, "Custom vpn-paris");
        std::fs::write(
            dir.path().join("applicant_rejected.fr.html"),
            "<p>\n{% if %}</p>",
        )
        .unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err();
        assert!(
            error.name.ends_with("applicant_rejected.fr.html"),
            "{error}"
        );
        assert_eq!(error.line, Some(2), "{error}");
    }

    #[test]
    fn mjml_errors_name_the_fragment_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("applicant_received.en.mjml"),
            "<mj-text>\n<p>Hello</p>\n</mj-text>\n<mj-text\n",
        )
        .unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err();
        assert!(
            error.name.ends_with("applicant_received.en.mjml"),
            "{error}"
        );
        assert!(error.message.contains("MJML"), "{error}");
        assert!(matches!(error.line, Some(4 | 5)), "{error}");

        std::fs::write(
            dir.path().join("applicant_received.en.mjml"),
            "<mj-text>{{ resource }}</mj-text>",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("layout.mjml"),
            "<mjml><mj-body></mj-body></mjml>",
        )
        .unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err();
        assert!(error.name.ends_with("layout.mjml"), "{error}");
        assert!(error.message.contains(CONTENT_MARKER), "{error}");
    }

    /// Every kind in every locale (and each user-type variation) rendered
    /// with the sample values, compared with `server/tests/snapshots/`.
    /// `UPDATE_SNAPSHOTS=1 cargo test` rewrites them after a
    /// deliberate change; review the diff before committing.
    #[test]
    fn rendered_emails_match_their_snapshots() {
        let templates = Templates::builtin().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
        let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
        let mut cases: Vec<(MailTemplate, Locale, UserType, String)> = Vec::new();
        for template in MailTemplate::ALL {
            for locale in Locale::ALL {
                let general = file_name(template, locale, None, "snap");
                cases.push((template, locale, UserType::Partner, general));
                for user_type in UserType::ALL {
                    let specific = file_name(template, locale, Some(user_type), "txt");
                    if BUILTIN.iter().any(|(name, _)| *name == specific) {
                        let name = file_name(template, locale, Some(user_type), "snap");
                        cases.push((template, locale, user_type, name));
                    }
                }
            }
        }
        let mut stale = Vec::new();
        for (template, locale, user_type, name) in &cases {
            let data = sample_data(user_type.as_str());
            let rendered = templates
                .render(*template, *locale, *user_type, &data)
                .unwrap();
            let actual = format!(
                "Subject: {}\n\n{}\n\n----- html -----\n{}\n",
                rendered.subject, rendered.text, rendered.html
            );
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != actual {
                let line = expected
                    .lines()
                    .zip(actual.lines())
                    .position(|(e, a)| e != a)
                    .map_or_else(|| "length".to_owned(), |i| format!("line {}", i + 1));
                stale.push(format!("{} (first difference: {line})", path.display()));
            }
        }
        assert!(
            stale.is_empty(),
            "rendered emails differ from their snapshots; if intended, rerun with \
             UPDATE_SNAPSHOTS=1 and review the diff:\n{}",
            stale.join("\n")
        );
        assert_eq!(cases.len(), MailTemplate::ALL.len() * Locale::ALL.len() + 2);
    }

    #[test]
    fn missing_values_are_errors_with_the_file() {
        let templates = Templates::builtin().unwrap();
        let error = templates
            .render(
                MailTemplate::ApplicantRejected,
                Locale::En,
                UserType::Employee,
                &serde_json::json!({}),
            )
            .unwrap_err();
        assert_eq!(error.name, "applicant_rejected.en.txt");
        assert!(error.line.is_some());
    }
}
