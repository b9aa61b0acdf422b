//! Decisions about builds: what identifies one (its key), whether an earlier build can be
//! reused, how builds are numbered. Pure; `berth-build` does the work.
//!
//! ```text
//!  key = (commit, builder hash)        builder hash = sha256(builder settings, target
//!                                                           repository, port)
//!  same key, not Failed ──▶ reuse it (build once)
//!  otherwise           ──▶ build N+1
//! ```

use sha2::{Digest, Sha256};

use crate::objects::{ApplicationSpec, Build, BuildPhase, Builder, Source};

/// The SHA-256 (hex) of everything besides the commit that shapes the image of `spec`
/// built from `source`.
#[must_use]
pub fn builder_hash(spec: &ApplicationSpec, source: &Source) -> String {
    // The port only shapes the image where the builder writes it into the image config.
    let port = matches!(source.builder, Builder::Java(_)).then_some(spec.port);
    let shape = serde_json::json!({
        "builder": source.builder,
        "image": spec.image,
        "port": port,
    });
    hex::encode(Sha256::digest(shape.to_string().as_bytes()))
}

/// What a build is identified by: the revision built (a commit; for the `image` builder,
/// the digest the reference resolved to) and the builder hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey {
    /// Commit or resolved digest.
    pub revision: String,
    /// [`builder_hash`].
    pub builder_hash: String,
}

impl BuildKey {
    /// The key of a recorded build, once its revision is known.
    #[must_use]
    pub fn of(build: &Build) -> Option<Self> {
        let revision = match build.spec.builder {
            Builder::Image => build.status.digest.clone(),
            _ => build.spec.commit.clone(),
        }?;
        Some(Self {
            revision,
            builder_hash: build.spec.builder_hash.clone(),
        })
    }
}

/// The build that already stands for `key`: the newest one that did not fail (a
/// finished one, or one still running, which a new request joins).
#[must_use]
pub fn reusable<'a>(builds: &'a [Build], key: &BuildKey) -> Option<&'a Build> {
    builds
        .iter()
        .filter(|b| b.status.phase != BuildPhase::Failed && BuildKey::of(b).as_ref() == Some(key))
        .max_by_key(|b| b.spec.number)
}

/// The number the next build of an application gets.
#[must_use]
pub fn next_build_number(builds: &[Build]) -> u64 {
    builds.iter().map(|b| b.spec.number).max().unwrap_or(0) + 1
}

/// Keeps the end of a log that grew past `max` bytes, on a character boundary, with a
/// note that the start was cut.
#[must_use]
pub fn log_tail(log: &str, max: usize) -> String {
    if log.len() <= max {
        return log.to_owned();
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &log[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{BuildSpec, JavaBuilder};

    fn spec(json: serde_json::Value) -> ApplicationSpec {
        serde_json::from_value(json).unwrap()
    }

    fn java_app() -> ApplicationSpec {
        spec(serde_json::json!({"image": "r/web",
            "source": {"git": "file:///r.git", "builder": {"java": {"jar": "app.jar"}}}}))
    }

    fn build(n: u64, commit: &str, hash: &str, phase: BuildPhase) -> Build {
        let mut b = Build::new(
            format!("web-build-{n}"),
            BuildSpec {
                application: "web".into(),
                number: n,
                git: None,
                git_ref: None,
                commit: Some(commit.into()),
                builder: Builder::Java(
                    serde_json::from_value::<JavaBuilder>(serde_json::json!({"jar": "a.jar"})).unwrap(),
                ),
                builder_hash: hash.into(),
                image: "r/web".into(),
                requested_by: None,
            },
        );
        b.status.phase = phase;
        b
    }

    #[test]
    fn the_hash_follows_what_shapes_the_image() {
        let a = java_app();
        let source = a.source.clone().unwrap();
        let h = builder_hash(&a, &source);
        assert_eq!(h.len(), 64);
        assert_eq!(h, builder_hash(&a.clone(), &source), "stable");
        // Replicas and env do not shape the image; the port does (EXPOSE), and the builder.
        let more = ApplicationSpec {
            replicas: 5,
            ..a.clone()
        };
        assert_eq!(builder_hash(&more, &source), h);
        let port = ApplicationSpec {
            port: 9090,
            ..a.clone()
        };
        assert_ne!(builder_hash(&port, &source), h);
        let mut other = source.clone();
        other.builder = Builder::Java(
            serde_json::from_value(serde_json::json!({"jar": "app.jar", "jvmOptions": ["-Xss1m"]})).unwrap(),
        );
        assert_ne!(builder_hash(&a, &other), h);
        // A new ref is a new request, not a new configuration: the commit decides.
        let mut moved = source.clone();
        moved.git_ref = "release".into();
        assert_eq!(builder_hash(&a, &moved), h);
    }

    #[test]
    fn a_key_is_built_at_most_once_unless_it_failed() {
        let key = BuildKey {
            revision: "c1".into(),
            builder_hash: "h".into(),
        };
        let builds = [
            build(1, "c1", "h", BuildPhase::Succeeded),
            build(2, "c2", "h", BuildPhase::Succeeded),
            build(3, "c1", "other", BuildPhase::Running),
        ];
        assert_eq!(reusable(&builds, &key).unwrap().spec.number, 1);
        let failed = [build(1, "c1", "h", BuildPhase::Failed)];
        assert!(reusable(&failed, &key).is_none());
        let running = [
            build(1, "c1", "h", BuildPhase::Failed),
            build(2, "c1", "h", BuildPhase::Running),
        ];
        assert_eq!(reusable(&running, &key).unwrap().spec.number, 2);
        assert_eq!(next_build_number(&builds), 4);
        assert_eq!(next_build_number(&[]), 1);
    }

    #[test]
    fn long_logs_keep_their_end() {
        assert_eq!(log_tail("short", 10), "short");
        let t = log_tail("0123456789é", 5);
        assert!(t.ends_with("789é") && t.starts_with("[… "), "{t}");
    }
}
