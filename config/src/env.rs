//! Environment-variable references inside scalar values, with the OpenTelemetry Collector's syntax:
//! `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` (also `${VAR:-default}`), and `$$` for a literal `$`.
//!
//! Substitution runs on parsed scalars, never on the file's text: a variable's value cannot add keys or
//! change the document's shape, and line numbers always point at what the user wrote. A value is never
//! expanded again, so `$`/`${…}` inside a variable's value stay literal.
//!
//! Where upstream substitutes an empty string for an unset variable without a default, this is an error
//! naming the variable: a silently empty endpoint or path is worse than a refused config. As upstream, the
//! default applies only when the variable is unset (a variable set to the empty string is used as is).
//! `$` followed by anything other than `$` or `{` is literal.

/// Why a reference could not be expanded. Each names the reference as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvError {
    #[error(
        "environment variable '{name}' is not set; set it, or give a default with ${{env:{name}:-default}}"
    )]
    Undefined { name: String },
    #[error("'{reference}' names no variable (expected ${{env:VAR}})")]
    Empty { reference: String },
    #[error("'{reference}' is not closed by '}}' (write $$ for a literal '$')")]
    Unclosed { reference: String },
    #[error("'{reference}': provider '{scheme}' is not supported (supported: env, file)")]
    UnsupportedProvider { reference: String, scheme: String },
    #[error(
        "'{reference}': '{name}' is not a valid environment variable name (letters, digits and '_', not \
         starting with a digit)"
    )]
    BadName { reference: String, name: String },
    #[error("'{reference}': references cannot be nested")]
    Nested { reference: String },
    #[error("'{reference}': cannot read the file: {reason}")]
    File { reference: String, reason: String },
}

/// A scalar's text after substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub text: String,
    /// The scalar was exactly one `${…}` reference; a plain one then has its type resolved from the
    /// substituted text, as upstream does (`port: ${env:PORT}` is a number).
    pub whole_reference: bool,
    /// At least one reference or `$$` was replaced.
    pub changed: bool,
}

/// Expands every reference in `text`, looking variables up with `env`. Returns every error in the text.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    if !text.contains('$') {
        return Ok(Expanded {
            text: text.to_owned(),
            whole_reference: false,
            changed: false,
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut references = 0;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body_and_more) = tail.strip_prefix("${") {
            references += 1;
            let Some(close) = body_and_more.find('}') else {
                errors.push(EnvError::Unclosed {
                    reference: shorten(tail),
                });
                rest = "";
                break;
            };
            let body = &body_and_more[..close];
            let reference = &tail[..close + 3];
            match resolve(reference, body, env) {
                Ok(value) => out.push_str(&value),
                Err(e) => errors.push(e),
            }
            rest = &body_and_more[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    let whole_reference = references == 1 && text.starts_with("${") && text.ends_with('}') && {
        // Exactly one reference spanning the whole text: its closing brace is the last character.
        text.find('}') == Some(text.len() - 1)
    };
    Ok(Expanded {
        text: out,
        whole_reference,
        changed: true,
    })
}

fn resolve(
    reference: &str,
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    if body.contains("${") {
        return Err(EnvError::Nested {
            reference: reference.to_owned(),
        });
    }
    let (name, default) = match body.split_once(':') {
        // A secret kept in its own file (mounted by the orchestrator, mode 0600) instead of in the
        // config or the environment. One trailing newline is dropped: editors and `echo` add one.
        Some(("file", path)) => {
            return std::fs::read_to_string(path)
                .map(|text| {
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    text.strip_suffix('\r').unwrap_or(text).to_owned()
                })
                .map_err(|e| EnvError::File {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })
        }
        Some(("env", rest)) => match rest.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (rest, None),
        },
        Some((name, rest)) if rest.starts_with('-') && is_var_name(name) => {
            (name, Some(&rest[1..]))
        }
        Some((scheme, _)) if is_scheme(scheme) => {
            return Err(EnvError::UnsupportedProvider {
                reference: reference.to_owned(),
                scheme: scheme.to_owned(),
            })
        }
        Some(_) => (body, None),
        None => (body, None),
    };
    if name.is_empty() {
        return Err(EnvError::Empty {
            reference: reference.to_owned(),
        });
    }
    if !is_var_name(name) {
        return Err(EnvError::BadName {
            reference: reference.to_owned(),
            name: name.to_owned(),
        });
    }
    match (env(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(EnvError::Undefined {
            name: name.to_owned(),
        }),
    }
}

/// Upstream's rule for environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A URI scheme, as upstream recognises a provider: `[A-Za-z][A-Za-z0-9+.-]*`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("collector.local".into()),
            "PORT" => Some("4317".into()),
            "EMPTY" => Some(String::new()),
            "DOLLARS" => Some("${env:HOST}$$".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> Expanded {
        expand(text, &env).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn err(text: &str) -> Vec<EnvError> {
        expand(text, &env).expect_err(text)
    }

    #[test]
    fn all_reference_forms_expand() {
        assert_eq!(ok("${env:HOST}").text, "collector.local");
        assert_eq!(ok("${HOST}").text, "collector.local");
        assert_eq!(ok("${env:NOPE:-edge-1}").text, "edge-1");
        assert_eq!(ok("${NOPE:-edge-1}").text, "edge-1");
        assert_eq!(ok("${env:HOST:-other}").text, "collector.local");
        assert_eq!(ok("${env:NOPE:-}").text, "");
        assert_eq!(ok("${env:HOST}:${env:PORT}").text, "collector.local:4317");
        assert_eq!(
            ok("http://${HOST}:${PORT}/v1").text,
            "http://collector.local:4317/v1"
        );
        // A default may itself contain ':' and '-'.
        assert_eq!(ok("${env:NOPE:-http://a:1}").text, "http://a:1");
    }

    #[test]
    fn a_variable_set_to_empty_is_used_not_defaulted() {
        assert_eq!(ok("${env:EMPTY:-fallback}").text, "");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$$").text, "$");
        assert_eq!(ok("$${env:HOST}").text, "${env:HOST}");
        assert_eq!(ok("a$$$${HOST}").text, "a$${HOST}");
        assert_eq!(ok("$$${HOST}").text, "$collector.local");
        assert!(!ok("$${env:HOST}").whole_reference);
    }

    #[test]
    fn a_lone_dollar_is_literal() {
        let e = ok("cost: $5 $ x$");
        assert_eq!(e.text, "cost: $5 $ x$");
        let e = ok("no references");
        assert!(!e.changed);
    }

    #[test]
    fn values_are_not_expanded_again() {
        assert_eq!(ok("${DOLLARS}").text, "${env:HOST}$$");
    }

    #[test]
    fn whole_reference_is_detected() {
        assert!(ok("${env:PORT}").whole_reference);
        assert!(ok("${PORT}").whole_reference);
        assert!(!ok("${PORT}0").whole_reference);
        assert!(!ok(" ${PORT}").whole_reference);
        assert!(!ok("${PORT}${PORT}").whole_reference);
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it_and_the_fix() {
        let errors = err("${env:NOPE}");
        assert_eq!(
            errors,
            vec![EnvError::Undefined {
                name: "NOPE".into()
            }]
        );
        let message = errors[0].to_string();
        assert!(message.contains("'NOPE' is not set"), "{message}");
        assert!(message.contains("${env:NOPE:-default}"), "{message}");
        // Every problem in the text is reported.
        assert_eq!(err("${A}-${B}").len(), 2);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(&err("${env:}")[..], [EnvError::Empty { .. }]));
        assert!(matches!(&err("${}")[..], [EnvError::Empty { .. }]));
        assert!(matches!(
            &err("x ${env:HOST")[..],
            [EnvError::Unclosed { .. }]
        ));
        assert!(matches!(&err("${env:1X}")[..], [EnvError::BadName { .. }]));
        assert!(matches!(&err("${env:A B}")[..], [EnvError::BadName { .. }]));
        assert!(matches!(
            &err("${env:A:-${B}}")[..],
            [EnvError::Nested { .. }]
        ));
    }

    #[test]
    fn other_providers_are_refused_by_name() {
        for (text, scheme) in [
            ("${yaml:a: b}", "yaml"),
            ("${http://example.com/c.yaml}", "http"),
        ] {
            let errors = err(text);
            assert_eq!(errors.len(), 1, "{text}");
            let message = errors[0].to_string();
            assert!(
                message.contains(&format!(
                    "provider '{scheme}' is not supported (supported: env, file)"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn file_references_read_the_file_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(
            ok(&format!("Bearer ${{file:{}}}", path.display())).text,
            "Bearer s3cret"
        );
        let missing = dir.path().join("missing");
        let errors = err(&format!("${{file:{}}}", missing.display()));
        assert!(matches!(&errors[..], [EnvError::File { .. }]), "{errors:?}");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "$",
            "${",
            "$${",
            "${}}",
            "}${",
            "${:}",
            "${:-}",
            "${é:-ü}",
            "${env:é}",
            "$\u{0}{",
        ] {
            let _ = expand(text, &env);
        }
        let long = "${".to_owned() + &"é".repeat(100);
        assert!(matches!(&err(&long)[..], [EnvError::Unclosed { .. }]));
    }
}
