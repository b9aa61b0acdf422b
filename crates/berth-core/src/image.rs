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
    /// A character or shape the distribution reference grammar does not allow.
    #[error(
        "'{reference}' is not a valid image reference: {reason} (expected registry/repository[:tag][@sha256:digest])"
    )]
    Malformed {
        /// The reference as given.
        reference: String,
        /// Which part breaks the grammar, and how.
        reason: String,
    },
}

/// Longest name (registry and repository) the distribution spec allows.
const MAX_NAME: usize = 255;
/// Longest tag.
const MAX_TAG: usize = 128;

impl ImageRef {
    /// Parses a reference by the OCI distribution reference grammar (that of
    /// `distribution/reference`, which Docker and registries apply), so that a reference
    /// Berth accepts is one a registry can be asked about:
    ///
    /// ```text
    /// reference      := name [ ":" tag ] [ "@" digest ]
    /// name           := [ domain "/" ] path
    /// domain         := host [ ":" port ]           host: a DNS name, IPv4 or "[" IPv6 "]"
    /// path           := component ( "/" component )*
    /// component      := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    /// tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    /// ```
    ///
    /// The name is at most 255 characters. The first segment is a registry when it has
    /// a `.`, `:` or `[`, is `localhost` or has an upper-case letter (as Docker decides);
    /// otherwise the registry is `docker.io`. Digests are `sha256:` only.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let malformed = |reason: String| ImageRefError::Malformed {
            reference: s.to_owned(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before is a port).
        let after_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[after_slash..].rfind(':') {
            Some(i) => (&rest[..after_slash + i], Some(&rest[after_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(malformed)?;
        }
        if name.len() > MAX_NAME {
            return Err(malformed(format!(
                "the name is {} characters long; at most {MAX_NAME} are allowed",
                name.len()
            )));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':', '['])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                check_domain(first).map_err(malformed)?;
                (first, path)
            }
            _ => ("docker.io", name),
        };
        check_path(repository).map_err(malformed)?;
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
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

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the tag '{tag}' must be 1 to {MAX_TAG} letters, digits, '_', '.' or '-', and not start with '.' or '-'"
        ))
    }
}

/// Checks a registry: `host[:port]`, the host a DNS name, an IPv4 or a bracketed IPv6
/// address.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return Err(format!(
                "the registry '{domain}' opens an IPv6 address with '[' but never closes it"
            ));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "the registry '{domain}' has '{address}' between brackets, which is not an IPv6 address"
            ));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => {
                    return Err(format!(
                        "the registry '{domain}' has '{after}' after its IPv6 address; only ':port' may follow"
                    ));
                }
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let component = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component) {
            return Err(format!(
                "the registry host '{host}' is not a host name: dot-separated parts of letters, digits and inner '-'"
            ));
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err(format!(
            "the registry port '{port}' is not a port number (1 to 65535)"
        ));
    }
    Ok(())
}

/// Checks a repository path: `/`-separated components of lowercase letters and digits,
/// joined inside a component by one `.`, one `_`, `__` or dashes.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository is empty".to_owned());
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "the repository part '{component}' must be lowercase letters and digits, joined by one '.', \
                 one '_', '__' or dashes (no '..', no separator at either end)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
fn is_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        // A run of letters and digits…
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // …then one separator, followed by another run.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => i += if bytes.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
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
    fn accepts_what_the_grammar_allows() {
        for good in [
            "busybox",
            "library/busybox:1.36",
            "127.0.0.1:5000/team/web:1.2",
            "localhost/web",
            "localhost:5000/a/b/c",
            "registry.example.com/team/web-app_v2",
            "registry-1.example.com:443/a__b/c.d/e---f:Tag_1.0-rc",
            "Registry.Example.com/web",
            "[::1]:5000/web:1",
            "[fe80::1]/web",
            "web:_",
            "docker.io/library/busybox@sha256:3129aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(
                ImageRef::parse(good).is_ok(),
                "{good}: {:?}",
                ImageRef::parse(good)
            );
        }
    }

    #[test]
    fn refuses_bad_references() {
        for (bad, says) in [
            ("", "empty"),
            ("Web", "repository part 'Web'"),
            ("a//b", "repository part ''"),
            ("web:", "tag ''"),
            ("web@sha256:12", "not a digest"),
            ("127.0.0.1:5000/", "repository is empty"),
            ("web:bad tag", "tag 'bad tag'"),
            ("127.0.0.1:5000/../web", "repository part '..'"),
            ("127.0.0.1:5000/team/../../web:1", "repository part '..'"),
            ("127.0.0.1:5000/a..b", "repository part 'a..b'"),
            ("127.0.0.1:5000/.web", "repository part '.web'"),
            ("127.0.0.1:5000/web.", "repository part 'web.'"),
            ("127.0.0.1:5000/web-", "repository part 'web-'"),
            ("127.0.0.1:5000/a___b", "repository part 'a___b'"),
            ("127.0.0.1:5000/a_.b", "repository part 'a_.b'"),
            ("127.0.0.1:5000/we%b", "repository part 'we%b'"),
            ("web:.tag", "tag '.tag'"),
            ("web:-tag", "tag '-tag'"),
            ("bad_host.com/web", "registry host 'bad_host.com'"),
            ("-bad.com/web", "registry host '-bad.com'"),
            ("a..b.com/web", "registry host 'a..b.com'"),
            ("host:99999/web", "port '99999'"),
            ("host:/web", "port ''"),
            ("host:5000:1/web", "port '5000:1'"),
            ("[::1/web", "never closes"),
            ("[zz]/web", "not an IPv6 address"),
            ("[::1]x/web", "after its IPv6 address"),
        ] {
            let err = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(
            ImageRef::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 255")
        );
        let tag = format!("web:{}", "t".repeat(129));
        assert!(ImageRef::parse(&tag).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn component() -> impl Strategy<Value = String> {
            "[a-z0-9]{1,8}(([._]|__|-{1,3})[a-z0-9]{1,8}){0,2}"
        }

        fn reference() -> impl Strategy<Value = (String, String, Option<String>)> {
            let registry = prop_oneof![
                "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){1,2}(:[1-9][0-9]{0,3})?",
                Just("localhost:5000".to_owned()),
                Just("[::1]:5000".to_owned()),
            ];
            let path = prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/"));
            let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
            (registry, path, tag)
        }

        proptest! {
            #[test]
            fn every_reference_of_the_grammar_parses_and_prints_back((registry, path, tag) in reference()) {
                let text = match &tag {
                    Some(t) => format!("{registry}/{path}:{t}"),
                    None => format!("{registry}/{path}"),
                };
                let r = ImageRef::parse(&text).unwrap();
                prop_assert_eq!(&r.registry, &registry);
                prop_assert_eq!(&r.repository, &path);
                prop_assert_eq!(&r.tag, &tag);
                prop_assert_eq!(r.to_string(), text);
            }

            #[test]
            fn a_dot_dot_anywhere_in_the_repository_is_refused(
                (registry, path, _) in reference(),
                at in 0usize..4,
            ) {
                let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
                let i = at % (parts.len() + 1);
                parts.insert(i, "..".to_owned());
                let text = format!("{registry}/{}", parts.join("/"));
                prop_assert!(ImageRef::parse(&text).is_err(), "{}", text);
                let glued = format!("{registry}/{}..x", path);
                prop_assert!(ImageRef::parse(&glued).is_err(), "{}", glued);
            }

            #[test]
            fn any_text_either_fails_or_parses_to_what_it_prints(text in "\\PC{0,40}") {
                if let Ok(r) = ImageRef::parse(&text) {
                    prop_assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
                }
            }
        }
    }
}
