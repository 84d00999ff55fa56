//! Email templates: a text file (first line the subject, then a blank line,
//! then the body) and an HTML file (extending `layout.html`) per email kind
//! and locale, embedded in the
//! binary and compiled once at start. Values are HTML-escaped in `.html`
//! files and left as they are in `.txt` files.

use std::path::Path;

use minijinja::Environment;

use crate::domain::mail::MailTemplate;
use crate::domain::{Locale, UserType};

/// Every built-in template file, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    (
        "applicant_received.en.txt",
        include_str!("../../templates/applicant_received.en.txt"),
    ),
    (
        "applicant_received.en.html",
        include_str!("../../templates/applicant_received.en.html"),
    ),
    (
        "applicant_received.fr.txt",
        include_str!("../../templates/applicant_received.fr.txt"),
    ),
    (
        "applicant_received.fr.html",
        include_str!("../../templates/applicant_received.fr.html"),
    ),
    (
        "applicant_approved.en.txt",
        include_str!("../../templates/applicant_approved.en.txt"),
    ),
    (
        "applicant_approved.en.html",
        include_str!("../../templates/applicant_approved.en.html"),
    ),
    (
        "applicant_approved.fr.txt",
        include_str!("../../templates/applicant_approved.fr.txt"),
    ),
    (
        "applicant_approved.fr.html",
        include_str!("../../templates/applicant_approved.fr.html"),
    ),
    (
        "applicant_rejected.en.txt",
        include_str!("../../templates/applicant_rejected.en.txt"),
    ),
    (
        "applicant_rejected.en.html",
        include_str!("../../templates/applicant_rejected.en.html"),
    ),
    (
        "applicant_rejected.fr.txt",
        include_str!("../../templates/applicant_rejected.fr.txt"),
    ),
    (
        "applicant_rejected.fr.html",
        include_str!("../../templates/applicant_rejected.fr.html"),
    ),
    (
        "applicant_cancelled.en.txt",
        include_str!("../../templates/applicant_cancelled.en.txt"),
    ),
    (
        "applicant_cancelled.en.html",
        include_str!("../../templates/applicant_cancelled.en.html"),
    ),
    (
        "applicant_cancelled.fr.txt",
        include_str!("../../templates/applicant_cancelled.fr.txt"),
    ),
    (
        "applicant_cancelled.fr.html",
        include_str!("../../templates/applicant_cancelled.fr.html"),
    ),
    (
        "admin_new_request.en.txt",
        include_str!("../../templates/admin_new_request.en.txt"),
    ),
    (
        "admin_new_request.en.html",
        include_str!("../../templates/admin_new_request.en.html"),
    ),
    (
        "admin_new_request.fr.txt",
        include_str!("../../templates/admin_new_request.fr.txt"),
    ),
    (
        "admin_new_request.fr.html",
        include_str!("../../templates/admin_new_request.fr.html"),
    ),
    (
        "applicant_approved.en.contractor.txt",
        include_str!("../../templates/applicant_approved.en.contractor.txt"),
    ),
    (
        "applicant_approved.en.contractor.html",
        include_str!("../../templates/applicant_approved.en.contractor.html"),
    ),
    (
        "applicant_approved.fr.contractor.txt",
        include_str!("../../templates/applicant_approved.fr.contractor.txt"),
    ),
    (
        "applicant_approved.fr.contractor.html",
        include_str!("../../templates/applicant_approved.fr.contractor.html"),
    ),
];

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

    /// Compiles the built-in templates overridden by the `.txt` and `.html`
    /// files of `dir`, and checks that every kind has both parts in every
    /// locale. The first error names its file and line.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in BUILTIN {
            env.add_template(name, source)
                .map_err(|error| TemplateError::from_minijinja(name, &error))?;
        }
        if let Some(dir) = dir {
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
            for path in paths {
                let is_template = path
                    .extension()
                    .is_some_and(|ext| ext == "txt" || ext == "html");
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
                env.add_template_owned(name.to_owned(), source)
                    .map_err(|error| {
                        TemplateError::from_minijinja(&path.display().to_string(), &error)
                    })?;
            }
        }
        for template in MailTemplate::ALL {
            for locale in Locale::ALL {
                for part in ["txt", "html"] {
                    let name = file_name(template, locale, None, part);
                    if env.get_template(&name).is_err() {
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
        let html = self
            .env
            .get_template(&html_name)
            .and_then(|html| html.render(data))
            .map_err(|error| TemplateError::from_minijinja(&html_name, &error))?;
        let Some((subject, body)) = text.split_once('\n') else {
            return Err(TemplateError {
                name: text_name,
                line: None,
                message: "the first line must be the subject, followed by the body".to_owned(),
            });
        };
        Ok(Rendered {
            subject: subject.trim().to_owned(),
            text: body.trim_start().to_owned(),
            html,
        })
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
