//! Object names: DNS-1123 labels, so that they can name containers, hosts and
//! Kubernetes objects without translation.

use crate::error::FieldError;

/// Longest DNS-1123 label.
pub const MAX_LABEL: usize = 63;

/// Checks that `name` is a DNS-1123 label: 1-63 characters of `a-z`, `0-9` and `-`,
/// starting and ending with a letter or digit.
pub fn check_label(path: &str, name: &str) -> Result<(), FieldError> {
    check_name(path, name, MAX_LABEL)
}

/// Checks a name of the DNS-1123 label alphabet that may be up to `max` characters long.
pub fn check_name(path: &str, name: &str, max: usize) -> Result<(), FieldError> {
    let hint =
        format!("use 1-{max} lowercase letters, digits and '-', starting and ending with a letter or digit");
    let hint = hint.as_str();
    if name.is_empty() {
        return Err(FieldError::new(path, "must not be empty").hint(hint));
    }
    if name.len() > max {
        return Err(FieldError::new(
            path,
            format!(
                "'{name}' is {} characters long, at most {max} are allowed",
                name.len()
            ),
        )
        .hint(hint));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(FieldError::new(
            path,
            format!("'{name}' contains '{c}', which a DNS-1123 label cannot hold"),
        )
        .hint(hint));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(FieldError::new(path, format!("'{name}' starts or ends with '-'")).hint(hint));
    }
    Ok(())
}

/// Checks a DNS name made of labels separated by dots (a hostname).
pub fn check_hostname(path: &str, host: &str) -> Result<(), FieldError> {
    if host.len() > 253 {
        return Err(FieldError::new(path, "a hostname is at most 253 characters long"));
    }
    for label in host.split('.') {
        check_label(path, label).map_err(|e| {
            FieldError::new(path, format!("'{host}' is not a valid hostname: {}", e.message))
                .hint("use dot-separated DNS labels, e.g. shop.example.com")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_and_refuses_the_edge_cases() {
        for ok in ["a", "web", "web-1", "0", "a-b-c", &"a".repeat(63)] {
            assert!(check_label("n", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(check_label("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_names_the_path_and_how_to_fix() {
        let e = check_label("metadata.name", "Web").unwrap_err();
        assert_eq!(e.path, "metadata.name");
        assert!(e.message.contains("'W'"));
        assert!(e.hint.unwrap().contains("lowercase"));
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("h", "shop.example.com").is_ok());
        assert!(check_hostname("h", "shop..com").is_err());
        assert!(check_hostname("h", "Shop.com").is_err());
    }

    proptest! {
        #[test]
        fn generated_labels_pass(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(check_label("n", &s).is_ok());
        }

        #[test]
        fn anything_with_a_foreign_char_fails(prefix in "[a-z]{0,5}", c in "[^a-z0-9-]", suffix in "[a-z]{0,5}") {
            let name = format!("{prefix}{c}{suffix}");
            prop_assert!(check_label("n", &name).is_err());
        }
    }
}
