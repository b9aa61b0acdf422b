//! Promotion and proof: which environments an image digest was verified in, whether an
//! environment's `requireVerifiedIn` policy lets a digest in, what a promotion copies,
//! and the provenance of what runs in an environment. Pure.
//!
//! ```text
//!  qa: deployment Succeeded ─▶ digest D verified in qa
//!  promote qa → production: release M (digest D) ──copy──▶ release N (digest D, origin:
//!                                                           promoted from M in qa)
//!  production.requireVerifiedIn = [qa]: D must be verified in qa, else 409
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    deployment::governing,
    objects::{Build, Deployment, DeploymentPhase, Environment, Promotion, Release, ReleaseOrigin},
};

/// The digest (`sha256:…`) of a pinned image reference.
#[must_use]
pub fn digest_of(image: &str) -> Option<&str> {
    image.rsplit_once('@').map(|(_, d)| d)
}

/// A successful deployment of a digest in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
// Not `Verification`: that is the audit log's verification, and utoipa keeps one schema
// per name.
#[schema(as = EnvironmentVerification)]
pub struct Verification {
    /// The environment.
    pub environment: String,
    /// The deployment that succeeded (the first one with this digest there).
    pub deployment: String,
    /// The release it deployed.
    pub release: u64,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Every environment `digest` was verified in: where a deployment of a release with that
/// digest Succeeded. One entry per environment (its first success), sorted by environment.
#[must_use]
pub fn verifications(digest: &str, releases: &[Release], deployments: &[Deployment]) -> Vec<Verification> {
    let mut found: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.status.phase == DeploymentPhase::Succeeded)
        .filter(|d| {
            releases
                .iter()
                .find(|r| r.spec.number == d.spec.release)
                .and_then(|r| digest_of(&r.spec.template.image))
                == Some(digest)
        })
        .collect();
    found.sort_by_key(|d| (d.spec.environment.clone(), d.spec.number));
    found.dedup_by(|a, b| a.spec.environment == b.spec.environment);
    found
        .into_iter()
        .map(|d| Verification {
            environment: d.spec.environment.clone(),
            deployment: d.metadata.name.clone(),
            release: d.spec.release,
            at: d.status.finished_at,
        })
        .collect()
}

/// Why a promotion or a deploy cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionError {
    /// The digest has not run successfully everywhere the target environment requires.
    #[error(
        "{environment} requires images verified in {}; {digest} was not deployed successfully in {}",
        .required.join(", "), .missing.join(", ")
    )]
    NotVerified {
        /// The environment whose policy refuses.
        environment: String,
        /// The digest refused.
        digest: String,
        /// Every environment the policy names.
        required: Vec<String>,
        /// Those the digest has not passed.
        missing: Vec<String>,
    },
    /// Nothing runs in the environment to promote or describe.
    #[error("'{application}' has never been deployed to '{environment}'")]
    NothingDeployed {
        /// Application.
        application: String,
        /// Environment.
        environment: String,
    },
    /// Source and target are the same environment.
    #[error("promoting from '{environment}' to itself does nothing")]
    SameEnvironment {
        /// The environment.
        environment: String,
    },
    /// The release to promote does not pin a digest (a bug or a hand-edited store).
    #[error("release {release} of '{application}' is not pinned by digest")]
    Unpinned {
        /// Application.
        application: String,
        /// Release.
        release: u64,
    },
}

/// Checks `target`'s `requireVerifiedIn` policy for `digest`, given where it was
/// verified. A digest that already ran successfully in `target` itself also passes when
/// `ran_here_is_enough` (rolling back to what ran there before).
pub fn check_verified(
    target: &Environment,
    digest: &str,
    verified: &[Verification],
    ran_here_is_enough: bool,
) -> Result<(), PromotionError> {
    let required = &target.spec.policies.require_verified_in;
    if ran_here_is_enough && verified.iter().any(|v| v.environment == target.metadata.name) {
        return Ok(());
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|env| !verified.iter().any(|v| &v.environment == *env))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PromotionError::NotVerified {
            environment: target.metadata.name.clone(),
            digest: digest.to_owned(),
            required: required.clone(),
            missing,
        })
    }
}

/// The release a promotion from `from` copies: the one the governing deployment there
/// runs. `deployments` are the application's, in any environment.
pub fn promotion_source<'a>(
    application: &str,
    from: &str,
    to: &str,
    deployments: &[Deployment],
    releases: &'a [Release],
) -> Result<&'a Release, PromotionError> {
    if from == to {
        return Err(PromotionError::SameEnvironment {
            environment: from.to_owned(),
        });
    }
    let nothing = || PromotionError::NothingDeployed {
        application: application.to_owned(),
        environment: from.to_owned(),
    };
    let of_from: Vec<Deployment> = deployments
        .iter()
        .filter(|d| d.spec.environment == from)
        .cloned()
        .collect();
    let number = governing(&of_from).ok_or_else(nothing)?.spec.release;
    let release = releases
        .iter()
        .find(|r| r.spec.number == number)
        .ok_or_else(nothing)?;
    if digest_of(&release.spec.template.image).is_none() {
        return Err(PromotionError::Unpinned {
            application: application.to_owned(),
            release: number,
        });
    }
    Ok(release)
}

/// The release a promotion makes: a copy of `source` (same template, so the same digest;
/// the target environment's overrides apply when it is rendered there), numbered `number`.
#[must_use]
pub fn promoted_release(source: &Release, number: u64, promotion: Promotion) -> Release {
    let origin = ReleaseOrigin {
        requested_image: Some(source.spec.template.image.clone()),
        created_by: Some(promotion.promoted_by.clone()),
        description: Some(format!(
            "promoted from release {} in {}",
            promotion.from_release, promotion.from_environment
        )),
        build: source.spec.origin.build.clone(),
        commit: source.spec.origin.commit.clone(),
        promotion: Some(promotion),
    };
    Release::of(
        &source.spec.application,
        number,
        source.spec.template.clone(),
        origin,
    )
}

/// The build that made an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildSummary {
    /// Build name.
    pub name: String,
    /// `dockerfile`, `java` or `image`.
    pub builder: String,
    /// The git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// The ref asked for.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Everything known about what runs in one environment: where it came from and where
/// it was proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
    /// The release that runs there.
    pub release: u64,
    /// The deployment that put it there, and its phase.
    pub deployment: String,
    /// Phase of that deployment.
    pub phase: DeploymentPhase,
    /// Who deployed (or promoted) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// The image, pinned.
    pub image: String,
    /// Its digest.
    pub digest: String,
    /// The git commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The build that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSummary>,
    /// Every environment the digest ran in successfully.
    pub verified_in: Vec<Verification>,
    /// The promotions that brought it here, oldest first.
    pub promotions: Vec<Promotion>,
}

/// The provenance of what runs in `environment`.
pub fn provenance(
    application: &str,
    environment: &str,
    releases: &[Release],
    deployments: &[Deployment],
    builds: &[Build],
) -> Result<Provenance, PromotionError> {
    let nothing = || PromotionError::NothingDeployed {
        application: application.to_owned(),
        environment: environment.to_owned(),
    };
    let of_env: Vec<Deployment> = deployments
        .iter()
        .filter(|d| d.spec.environment == environment)
        .cloned()
        .collect();
    let current = governing(&of_env).ok_or_else(nothing)?;
    let find = |n: u64| releases.iter().find(|r| r.spec.number == n);
    let release = find(current.spec.release).ok_or_else(nothing)?;
    let image = release.spec.template.image.clone();
    let digest = digest_of(&image)
        .ok_or_else(|| PromotionError::Unpinned {
            application: application.to_owned(),
            release: release.spec.number,
        })?
        .to_owned();
    // Walk back through the promotions to the release that was built.
    let mut promotions = Vec::new();
    let mut at = release;
    while let Some(p) = &at.spec.origin.promotion {
        promotions.push(p.clone());
        match find(p.from_release) {
            Some(r) if r.spec.number < at.spec.number => at = r,
            _ => break,
        }
    }
    promotions.reverse();
    let build_name = release
        .spec
        .origin
        .build
        .as_deref()
        .or(at.spec.origin.build.as_deref());
    let build = build_name
        .and_then(|n| builds.iter().find(|b| b.metadata.name == n))
        .map(|b| BuildSummary {
            name: b.metadata.name.clone(),
            builder: b.spec.builder.kind().to_owned(),
            git: b.spec.git.clone(),
            git_ref: b.spec.git_ref.clone(),
            requested_by: b.spec.requested_by.clone(),
            finished_at: b.status.finished_at,
        });
    let commit = release
        .spec
        .origin
        .commit
        .clone()
        .or_else(|| at.spec.origin.commit.clone());
    Ok(Provenance {
        application: application.to_owned(),
        environment: environment.to_owned(),
        release: release.spec.number,
        deployment: current.metadata.name.clone(),
        phase: current.status.phase,
        deployed_by: current.spec.requested_by.clone(),
        image,
        verified_in: verifications(&digest, releases, deployments),
        digest,
        commit,
        build,
        promotions,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::objects::{
        ApplicationSpec, DeploymentCause, DeploymentSpec, EnvironmentSpec, Placement, Policies,
    };

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn release(n: u64, digest: &str) -> Release {
        let spec: ApplicationSpec =
            serde_json::from_value(serde_json::json!({"image": format!("r/web@{digest}")})).unwrap();
        Release::of(
            "web",
            n,
            spec,
            ReleaseOrigin {
                build: Some("web-build-1".into()),
                commit: Some("c0ffee".into()),
                ..ReleaseOrigin::default()
            },
        )
    }

    fn dep(env: &str, n: u64, release: u64, phase: DeploymentPhase) -> Deployment {
        let mut d = Deployment::new(
            format!("web-{env}-{n}"),
            DeploymentSpec {
                application: "web".into(),
                environment: env.into(),
                release,
                number: n,
                cause: DeploymentCause::Deploy,
                requested_by: Some("alice".into()),
            },
        );
        d.status.phase = phase;
        d
    }

    fn env(name: &str, required: &[&str]) -> Environment {
        Environment::new(
            name,
            EnvironmentSpec {
                clusters: vec![Placement {
                    cluster: "local".into(),
                    weight: 1,
                }],
                policies: Policies {
                    require_verified_in: required.iter().map(|s| (*s).to_owned()).collect(),
                },
                ..EnvironmentSpec::default()
            },
        )
    }

    #[test]
    fn a_digest_is_verified_where_a_deployment_of_it_succeeded() {
        let rs = [release(1, D1), release(2, D2), release(3, D1)];
        let ds = [
            dep("qa", 1, 1, DeploymentPhase::Succeeded),
            dep("qa", 2, 2, DeploymentPhase::Failed),
            dep("staging", 1, 3, DeploymentPhase::Succeeded),
            dep("production", 1, 2, DeploymentPhase::Progressing),
        ];
        let v = verifications(D1, &rs, &ds);
        let envs: Vec<&str> = v.iter().map(|v| v.environment.as_str()).collect();
        assert_eq!(envs, ["qa", "staging"]);
        assert!(verifications(D2, &rs, &ds).is_empty());
    }

    #[test]
    fn policies_refuse_unverified_digests_and_say_where() {
        let rs = [release(1, D1)];
        let ds = [dep("qa", 1, 1, DeploymentPhase::Succeeded)];
        let v = verifications(D1, &rs, &ds);
        check_verified(&env("production", &["qa"]), D1, &v, false).unwrap();
        check_verified(&env("qa", &[]), D2, &[], false).unwrap();
        let e = check_verified(&env("production", &["qa", "staging"]), D1, &v, false).unwrap_err();
        let PromotionError::NotVerified { missing, .. } = &e else {
            panic!()
        };
        assert_eq!(missing, &["staging"]);
        assert!(
            e.to_string().contains("not deployed successfully in staging"),
            "{e}"
        );
        // Going back to what already ran in production is allowed when asked for.
        let ran = [Verification {
            environment: "production".into(),
            deployment: "web-production-1".into(),
            release: 1,
            at: None,
        }];
        check_verified(&env("production", &["qa"]), D1, &ran, true).unwrap();
        assert!(check_verified(&env("production", &["qa"]), D1, &ran, false).is_err());
    }

    #[test]
    fn promotion_copies_the_release_that_runs_in_the_source() {
        let rs = [release(1, D1), release(2, D2)];
        let ds = [
            dep("qa", 1, 1, DeploymentPhase::Succeeded),
            dep("qa", 2, 2, DeploymentPhase::Failed),
        ];
        let source = promotion_source("web", "qa", "production", &ds, &rs).unwrap();
        assert_eq!(source.spec.number, 1, "the failed deployment does not govern");
        assert!(matches!(
            promotion_source("web", "staging", "production", &ds, &rs),
            Err(PromotionError::NothingDeployed { .. })
        ));
        assert!(matches!(
            promotion_source("web", "qa", "qa", &ds, &rs),
            Err(PromotionError::SameEnvironment { .. })
        ));
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let p = Promotion {
            from_environment: "qa".into(),
            from_release: 1,
            to_environment: "production".into(),
            promoted_by: "bob".into(),
            promoted_at: at,
        };
        let copy = promoted_release(source, 3, p.clone());
        assert_eq!(copy.spec.template, source.spec.template, "same digest, same spec");
        assert_eq!(copy.metadata.name, "web-3");
        assert_eq!(copy.spec.origin.promotion, Some(p));
        assert_eq!(copy.spec.origin.build.as_deref(), Some("web-build-1"));
        assert_eq!(copy.spec.origin.commit.as_deref(), Some("c0ffee"));
    }

    #[test]
    fn provenance_follows_promotions_back_to_the_build() {
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let built = release(1, D1);
        let staged = promoted_release(
            &built,
            2,
            Promotion {
                from_environment: "qa".into(),
                from_release: 1,
                to_environment: "staging".into(),
                promoted_by: "bob".into(),
                promoted_at: at,
            },
        );
        let prod = promoted_release(
            &staged,
            3,
            Promotion {
                from_environment: "staging".into(),
                from_release: 2,
                to_environment: "production".into(),
                promoted_by: "carol".into(),
                promoted_at: at,
            },
        );
        let rs = [built, staged, prod];
        let ds = [
            dep("qa", 1, 1, DeploymentPhase::Succeeded),
            dep("staging", 1, 2, DeploymentPhase::Succeeded),
            dep("production", 1, 3, DeploymentPhase::Succeeded),
        ];
        let p = provenance("web", "production", &rs, &ds, &[]).unwrap();
        assert_eq!((p.release, p.digest.as_str()), (3, D1));
        assert_eq!(p.commit.as_deref(), Some("c0ffee"));
        let hops: Vec<(&str, &str, &str)> = p
            .promotions
            .iter()
            .map(|p| {
                (
                    p.from_environment.as_str(),
                    p.to_environment.as_str(),
                    p.promoted_by.as_str(),
                )
            })
            .collect();
        assert_eq!(
            hops,
            [("qa", "staging", "bob"), ("staging", "production", "carol")]
        );
        let envs: Vec<&str> = p.verified_in.iter().map(|v| v.environment.as_str()).collect();
        assert_eq!(envs, ["production", "qa", "staging"]);
        assert!(matches!(
            provenance("web", "dev", &rs, &ds, &[]),
            Err(PromotionError::NothingDeployed { .. })
        ));
    }
}
