//! Promotion and proof: which environments a release template (digest plus everything
//! that is not a per-environment override, see [`crate::template`]) was verified in,
//! whether an environment's `requireVerifiedIn` policy lets a release in, what a
//! promotion copies, and the provenance of what runs in an environment. Pure.
//!
//! ```text
//!  qa: deployment Succeeded ─▶ template T (digest D, command, config files…) verified in qa
//!  promote qa → production: release M (template T) ──copy──▶ release N (template T, origin:
//!                                                           promoted from M in qa)
//!  production.requireVerifiedIn = [qa]: T must be verified in qa, else 409 naming what
//!  differs from what ran there (a new command on digest D is not verified)
//! ```

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    deployment::governing,
    objects::{Build, Deployment, DeploymentPhase, Environment, Promotion, Release, ReleaseOrigin},
    template::template_differences,
};

/// The digest (`sha256:…`) of a pinned image reference.
#[must_use]
pub fn digest_of(image: &str) -> Option<&str> {
    image.rsplit_once('@').map(|(_, d)| d)
}

/// A successful deployment of a release template in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
// Not `Verification`: that is the audit log's verification, and utoipa keeps one schema
// per name.
#[schema(as = EnvironmentVerification)]
pub struct Verification {
    /// The environment.
    pub environment: String,
    /// The deployment that succeeded (the first one with this template there).
    pub deployment: String,
    /// The release it deployed.
    pub release: u64,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Every environment the release template `template_hash` was verified in: where a
/// deployment of a release with that template Succeeded. One entry per environment (its
/// first success), sorted by environment.
#[must_use]
pub fn verifications(
    template_hash: &str,
    releases: &[Release],
    deployments: &[Deployment],
) -> Vec<Verification> {
    let hashes: HashMap<u64, String> = releases
        .iter()
        .map(|r| (r.spec.number, r.template_hash()))
        .collect();
    let mut found: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.status.phase == DeploymentPhase::Succeeded)
        .filter(|d| hashes.get(&d.spec.release).map(String::as_str) == Some(template_hash))
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

/// What ran in an environment instead: the newest release that succeeded there with
/// the same image digest, and the template fields in which `release` differs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nearest {
    /// The environment.
    pub environment: String,
    /// The release that ran there with the same digest.
    pub release: u64,
    /// Template fields (JSON names) that differ.
    pub differences: Vec<String>,
}

impl std::fmt::Display for Nearest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "; release {} ran in {} with the same image but a different {}",
            self.release,
            self.environment,
            self.differences.join(", ")
        )
    }
}

/// Where the same digest as `release` last ran successfully in `environment`, and how its
/// template differed.
fn nearest(
    release: &Release,
    environment: &str,
    releases: &[Release],
    deployments: &[Deployment],
) -> Option<Nearest> {
    let digest = digest_of(&release.spec.template.image)?;
    deployments
        .iter()
        .filter(|d| d.spec.environment == environment && d.status.phase == DeploymentPhase::Succeeded)
        .filter_map(|d| releases.iter().find(|r| r.spec.number == d.spec.release))
        .filter(|r| digest_of(&r.spec.template.image) == Some(digest))
        .max_by_key(|r| r.spec.number)
        .map(|r| Nearest {
            environment: environment.to_owned(),
            release: r.spec.number,
            differences: template_differences(&r.spec.template, &release.spec.template),
        })
}

/// A release whose template has not run successfully everywhere an environment's
/// `requireVerifiedIn` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The environment whose policy refuses.
    pub environment: String,
    /// The release refused.
    pub release: u64,
    /// Its template hash.
    pub template_hash: String,
    /// Its image digest.
    pub digest: String,
    /// Every environment the policy names.
    pub required: Vec<String>,
    /// Those the template has not passed.
    pub missing: Vec<String>,
    /// What ran in the first missing environment with the same digest, if anything.
    pub nearest: Option<Nearest>,
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requires releases verified in {}; release {} (template {}, image {}) was not deployed \
             successfully in {}",
            self.environment,
            self.required.join(", "),
            self.release,
            self.template_hash,
            self.digest,
            self.missing.join(", ")
        )?;
        if let Some(n) = &self.nearest {
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// Why a promotion or a deploy cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionError {
    /// The release template has not run successfully everywhere the target environment
    /// requires.
    #[error("{0}")]
    NotVerified(Box<Unverified>),
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

/// Checks `target`'s `requireVerifiedIn` policy for `release`: its template must have
/// succeeded in every environment the policy names. A template that already ran
/// successfully in `target` itself also passes when `ran_here_is_enough` (rolling back to
/// what ran there before). `releases` and `deployments` are the application's.
pub fn check_verified(
    target: &Environment,
    release: &Release,
    releases: &[Release],
    deployments: &[Deployment],
    ran_here_is_enough: bool,
) -> Result<(), PromotionError> {
    let required = &target.spec.policies.require_verified_in;
    if required.is_empty() && !ran_here_is_enough {
        return Ok(());
    }
    let hash = release.template_hash();
    let verified = verifications(&hash, releases, deployments);
    if ran_here_is_enough && verified.iter().any(|v| v.environment == target.metadata.name) {
        return Ok(());
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|env| !verified.iter().any(|v| &v.environment == *env))
        .cloned()
        .collect();
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(PromotionError::NotVerified(Box::new(Unverified {
            environment: target.metadata.name.clone(),
            release: release.spec.number,
            digest: digest_of(&release.spec.template.image)
                .unwrap_or_default()
                .to_owned(),
            template_hash: hash,
            required: required.clone(),
            nearest: nearest(release, first, releases, deployments),
            missing,
        }))),
    }
}

/// The newest release that a build made with image digest `digest`: where a release of
/// the same image made later (a config change, a promotion) gets its build and commit.
#[must_use]
pub fn lineage<'a>(digest: &str, releases: &'a [Release]) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| r.spec.origin.build.is_some() && digest_of(&r.spec.template.image) == Some(digest))
        .max_by_key(|r| r.spec.number)
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
    /// Its template hash: the digest and everything that is not a per-environment
    /// override (see `berth_core::template`); what `verifiedIn` and `requireVerifiedIn`
    /// compare.
    pub template_hash: String,
    /// The git commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The build that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSummary>,
    /// Every environment its template ran in successfully.
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
    // A release made from a config change on a built digest carries the build it came
    // from; one made before Berth recorded that finds it through the digest.
    let built = lineage(&digest, releases);
    let build_name = release
        .spec
        .origin
        .build
        .as_deref()
        .or(at.spec.origin.build.as_deref())
        .or(built.and_then(|r| r.spec.origin.build.as_deref()));
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
        .or_else(|| at.spec.origin.commit.clone())
        .or_else(|| built.and_then(|r| r.spec.origin.commit.clone()));
    let template_hash = release.template_hash();
    Ok(Provenance {
        application: application.to_owned(),
        environment: environment.to_owned(),
        release: release.spec.number,
        deployment: current.metadata.name.clone(),
        phase: current.status.phase,
        deployed_by: current.spec.requested_by.clone(),
        image,
        verified_in: verifications(&template_hash, releases, deployments),
        template_hash,
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

    /// Release `n` with `digest` and another command: the same image, a new template.
    fn with_command(n: u64, digest: &str, command: &str) -> Release {
        let mut r = release(n, digest);
        r.spec.template.command = Some(vec![command.to_owned()]);
        Release::of("web", n, r.spec.template, r.spec.origin)
    }

    #[test]
    fn a_template_is_verified_where_a_deployment_of_it_succeeded() {
        let rs = [
            release(1, D1),
            release(2, D2),
            release(3, D1),
            with_command(4, D1, "env"),
        ];
        let ds = [
            dep("qa", 1, 1, DeploymentPhase::Succeeded),
            dep("qa", 2, 2, DeploymentPhase::Failed),
            dep("staging", 1, 3, DeploymentPhase::Succeeded),
            dep("production", 1, 2, DeploymentPhase::Progressing),
        ];
        let v = verifications(&rs[0].template_hash(), &rs, &ds);
        let envs: Vec<&str> = v.iter().map(|v| v.environment.as_str()).collect();
        assert_eq!(envs, ["qa", "staging"], "releases 1 and 3 share a template");
        assert!(verifications(&rs[1].template_hash(), &rs, &ds).is_empty());
        assert!(
            verifications(&rs[3].template_hash(), &rs, &ds).is_empty(),
            "the same digest with a new command never ran"
        );
    }

    #[test]
    fn policies_refuse_unverified_templates_and_say_where_and_what_differs() {
        let rs = [release(1, D1), with_command(2, D1, "env")];
        let ds = [dep("qa", 1, 1, DeploymentPhase::Succeeded)];
        check_verified(&env("production", &["qa"]), &rs[0], &rs, &ds, false).unwrap();
        check_verified(&env("qa", &[]), &rs[1], &rs, &[], false).unwrap();
        let e = check_verified(&env("production", &["qa", "staging"]), &rs[0], &rs, &ds, false).unwrap_err();
        let PromotionError::NotVerified(u) = &e else {
            panic!()
        };
        assert_eq!(u.missing, ["staging"]);
        assert!(
            e.to_string().contains("not deployed successfully in staging"),
            "{e}"
        );
        // The digest ran in qa, but with another command: refused, naming the field.
        let e = check_verified(&env("production", &["qa"]), &rs[1], &rs, &ds, false).unwrap_err();
        let PromotionError::NotVerified(u) = &e else {
            panic!()
        };
        assert_eq!(u.template_hash, rs[1].template_hash());
        assert_eq!(
            u.nearest.as_ref().map(|n| (n.release, n.differences.clone())),
            Some((1, vec!["command".to_owned()]))
        );
        assert!(
            e.to_string()
                .contains("release 1 ran in qa with the same image but a different command"),
            "{e}"
        );
        // Going back to what already ran in production is allowed when asked for.
        let ran = [dep("production", 1, 1, DeploymentPhase::Succeeded)];
        check_verified(&env("production", &["qa"]), &rs[0], &rs, &ran, true).unwrap();
        assert!(check_verified(&env("production", &["qa"]), &rs[0], &rs, &ran, false).is_err());
    }

    #[test]
    fn provenance_keeps_the_build_of_a_config_change_and_shows_the_template() {
        let built = release(1, D1);
        let mut changed = with_command(2, D1, "env");
        changed.spec.origin = ReleaseOrigin::default();
        let rs = [built, changed];
        let ds = [
            dep("qa", 1, 1, DeploymentPhase::Succeeded),
            dep("qa", 2, 2, DeploymentPhase::Succeeded),
        ];
        let p = provenance("web", "qa", &rs, &ds, &[]).unwrap();
        assert_eq!((p.release, p.commit.as_deref()), (2, Some("c0ffee")));
        assert_eq!(p.template_hash, rs[1].template_hash());
        let verified: Vec<(&str, u64)> = p
            .verified_in
            .iter()
            .map(|v| (v.environment.as_str(), v.release))
            .collect();
        assert_eq!(
            verified,
            [("qa", 2)],
            "verified as the template that runs, not the digest"
        );
        assert_eq!(lineage(D1, &rs).map(|r| r.spec.number), Some(1));
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
