//! Redaction of the secrets a URL may carry (database, key store, mail
//! transport), for logs, `Debug` output and error messages. A leaf module:
//! configuration, store, events and mail all use it, and it uses none of
//! them.

/// A URL that may carry a password (a database's), shown redacted by
/// `Debug`: options holding one can derive `Debug` safely.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// A comma-separated list of URLs (`mail_transport`), each redacted.
pub fn redact_transports(list: &str) -> String {
    list.split(',')
        .map(|url| redact_url(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A URL with its passwords replaced by `***`: the one in the user info
/// (even one holding `/`, `?` or `@`, which a URL would have to escape) and
/// the value of any query parameter whose name has `password` in it
/// (`?password=`, `sslpassword=`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) if !user.contains('/') => {
                format!("{user}:***@{host}")
            }
            _ => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let Some((base, query)) = rest.split_once('?') else {
        return format!("{scheme}://{rest}");
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _value)) if name.to_ascii_lowercase().contains("password") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{scheme}://{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://sesame:s3cret@db:5432/sesame"),
            "postgres://sesame:***@db:5432/sesame"
        );
        assert_eq!(redact_url("sqlite://sesame.db"), "sqlite://sesame.db");
        assert_eq!(
            redact_url("postgres://sesame@db/x"),
            "postgres://sesame@db/x"
        );
        assert_eq!(redact_url("log"), "log");
    }

    /// Guards against a password reaching a log line through a URL of an
    /// unusual shape.
    #[test]
    fn every_password_shape_is_redacted() {
        for (url, secret, shown) in [
            ("postgres://u:pa/ss@h/d", "pa/ss", "postgres://u:***@h/d"),
            (
                "postgres://u:p@ss@h:5432/d",
                "p@ss",
                "postgres://u:***@h:5432/d",
            ),
            (
                "postgres://u@h/d?sslmode=require&password=hunter2",
                "hunter2",
                "postgres://u@h/d?sslmode=require&password=***",
            ),
            (
                "postgres://h/d?sslpassword=hunter2",
                "hunter2",
                "postgres://h/d?sslpassword=***",
            ),
            (
                "smtps://mailer:hunter2@smtp.example.com:465",
                "hunter2",
                "smtps://mailer:***@smtp.example.com:465",
            ),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert_eq!(redacted, shown);
        }
    }
}
