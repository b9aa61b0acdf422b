//! Container image references, and the rule that what runs is pinned by digest.

use std::fmt;

/// A parsed image reference: `registry/repository[:tag][@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port), e.g. `127.0.0.1:5000`; `docker.io` when none is named.
    pub registry: String,
    /// Repository path, e.g. `team/web`.
    pub repository: String,
    /// Tag, when one was given.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), when one was given.
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// Empty string.
    #[error("the image reference is empty")]
    Empty,
    /// The digest is not `sha256:` and 64 lowercase hex digits.
    #[error("'{0}' is not a digest; expected sha256: followed by 64 hex digits")]
    BadDigest(String),
    /// A character or shape the distribution spec does not allow.
    #[error("'{0}' is not a valid image reference (expected registry/repository[:tag][@sha256:digest])")]
    Malformed(String),
}

impl ImageRef {
    /// Parses a reference the way Docker does: the first path segment is a registry
    /// when it has a `.` or `:` or is `localhost`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag.to_owned())),
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        let tag_ok = tag.as_deref().is_none_or(|t| {
            !t.is_empty()
                && t.len() <= 128
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
        if !repo_ok || !tag_ok || registry.is_empty() {
            return Err(ImageRefError::Malformed(s.to_owned()));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same image pinned to `digest`, without a tag.
    #[must_use]
    pub fn pinned(&self, digest: &str) -> Self {
        Self {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// Whether the reference names a digest.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Checks a `sha256:` digest.
pub fn check_digest(digest: &str) -> Result<(), ImageRefError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) =>
        {
            Ok(())
        }
        _ => Err(ImageRefError::BadDigest(digest.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3129aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn parses_registry_tag_and_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/team/web:1.2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/web", Some("1.2"))
        );
        let r = ImageRef::parse(&format!("localhost/web@{D}")).unwrap();
        assert_eq!(r.registry, "localhost");
        assert!(r.is_pinned());
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!((r.registry.as_str(), r.tag), ("docker.io", None));
    }

    #[test]
    fn pinning_drops_the_tag() {
        let r = ImageRef::parse("127.0.0.1:5000/web:latest").unwrap().pinned(D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/web@{D}"));
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Web",
            "a//b",
            "web:",
            "web@sha256:12",
            "127.0.0.1:5000/",
            "web:bad tag",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
