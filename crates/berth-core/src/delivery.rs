//! Decisions of delivery: which release a deploy uses, what a rollback goes back to,
//! how deployments are numbered, and what a deploy of a changed spec would roll out.
//! Pure; the service layer loads the inputs and commits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    deployment::governing,
    objects::{ApplicationSpec, Builder, Deployment, DeploymentPhase, EnvironmentOverride, Release},
    template::template_differences,
};

/// What a deploy request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested<'a> {
    /// An existing release by number.
    Release(u64),
    /// A new release of the current spec with another image.
    Image(&'a str),
    /// The current spec: the newest release if it matches, otherwise a new one.
    Current,
}

/// How a deploy gets its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseChoice {
    /// Use this existing release.
    Existing(u64),
    /// Make release `number` from `template`, whose `image` still has to be resolved.
    New {
        /// The number the new release gets.
        number: u64,
        /// The spec to release; `image` as requested (a tag or a digest).
        template: Box<ApplicationSpec>,
    },
}

/// Why a deploy or rollback cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The named release does not exist.
    #[error("release {number} of '{application}' does not exist")]
    NoSuchRelease {
        /// Application.
        application: String,
        /// Number asked for.
        number: u64,
    },
    /// Nothing runs in the environment, so there is nothing to roll back.
    #[error("'{application}' has never been deployed to '{environment}', so there is nothing to roll back")]
    NothingDeployed {
        /// Application.
        application: String,
        /// Environment.
        environment: String,
    },
    /// The application is built from source and no build has produced an image yet.
    #[error(
        "'{application}' is built from its source and has no successful build yet; build it first (berth build {application})"
    )]
    NotBuilt {
        /// Application.
        application: String,
    },
    /// No earlier release ever ran successfully there.
    #[error("'{application}' has no earlier release that ran successfully in '{environment}'")]
    NoEarlierRelease {
        /// Application.
        application: String,
        /// Environment.
        environment: String,
    },
}

/// Chooses the release for a deploy of `spec`, given the application's `releases`.
pub fn choose_release(
    application: &str,
    spec: &ApplicationSpec,
    releases: &[Release],
    requested: &Requested<'_>,
) -> Result<ReleaseChoice, DeliveryError> {
    let next = next_release_number(releases);
    match requested {
        Requested::Release(number) => releases
            .iter()
            .any(|r| r.spec.number == *number)
            .then_some(ReleaseChoice::Existing(*number))
            .ok_or_else(|| DeliveryError::NoSuchRelease {
                application: application.to_owned(),
                number: *number,
            }),
        Requested::Image(image) => Ok(ReleaseChoice::New {
            number: next,
            template: Box::new(ApplicationSpec {
                image: (*image).to_owned(),
                ..spec.clone()
            }),
        }),
        Requested::Current => {
            let newest = releases.iter().max_by_key(|r| r.spec.number);
            match newest {
                Some(r) if same_as_released(spec, r) => Ok(ReleaseChoice::Existing(r.spec.number)),
                _ if is_built(spec) => {
                    // The newest release a build made (promotions copy it, so they do not
                    // count): reused when the spec is unchanged, else its image is
                    // released with the new spec. Never a tag: built images are known by
                    // digest only.
                    let built = releases
                        .iter()
                        .filter(|r| r.spec.origin.build.is_some() && r.spec.origin.promotion.is_none())
                        .max_by_key(|r| r.spec.number)
                        .ok_or_else(|| DeliveryError::NotBuilt {
                            application: application.to_owned(),
                        })?;
                    if same_as_released(spec, built) {
                        return Ok(ReleaseChoice::Existing(built.spec.number));
                    }
                    let template = ApplicationSpec {
                        image: built.spec.template.image.clone(),
                        ..spec.clone()
                    };
                    // A release of exactly this spec on the built image exists already
                    // (a config change deployed before): reuse it, never a duplicate.
                    if let Some(same) = releases
                        .iter()
                        .filter(|r| r.spec.template == template && r.spec.origin.promotion.is_none())
                        .max_by_key(|r| r.spec.number)
                    {
                        return Ok(ReleaseChoice::Existing(same.spec.number));
                    }
                    Ok(ReleaseChoice::New {
                        number: next,
                        template: Box::new(template),
                    })
                }
                _ => Ok(ReleaseChoice::New {
                    number: next,
                    template: Box::new(spec.clone()),
                }),
            }
        }
    }
}

/// Whether the application's image comes out of a build (not the `image` builder).
fn is_built(spec: &ApplicationSpec) -> bool {
    spec.source.as_ref().is_some_and(|s| s.builder != Builder::Image)
}

/// Whether `release` was made from exactly `spec` (its image as requested, then pinned).
fn same_as_released(spec: &ApplicationSpec, release: &Release) -> bool {
    let requested = release
        .spec
        .origin
        .requested_image
        .as_deref()
        .unwrap_or(&release.spec.template.image);
    requested == spec.image
        && ApplicationSpec {
            image: spec.image.clone(),
            ..release.spec.template.clone()
        } == *spec
}

/// The release a rollback goes to: `to` if given, else the newest release other than the
/// current one that ran successfully in the environment.
pub fn rollback_target(
    application: &str,
    environment: &str,
    deployments: &[Deployment],
    releases: &[Release],
    to: Option<u64>,
) -> Result<(u64, u64), DeliveryError> {
    let current = governing(deployments)
        .ok_or_else(|| DeliveryError::NothingDeployed {
            application: application.to_owned(),
            environment: environment.to_owned(),
        })?
        .spec
        .release;
    if let Some(number) = to {
        if !releases.iter().any(|r| r.spec.number == number) {
            return Err(DeliveryError::NoSuchRelease {
                application: application.to_owned(),
                number,
            });
        }
        return Ok((current, number));
    }
    let mut succeeded: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.status.phase == DeploymentPhase::Succeeded && d.status.retired_at.is_none())
        .collect();
    succeeded.sort_by_key(|d| std::cmp::Reverse(d.spec.number));
    succeeded
        .iter()
        .map(|d| d.spec.release)
        .find(|r| *r != current)
        .map(|target| (current, target))
        .ok_or_else(|| DeliveryError::NoEarlierRelease {
            application: application.to_owned(),
            environment: environment.to_owned(),
        })
}

/// The number the next deployment of an application to an environment gets.
#[must_use]
pub fn next_deployment_number(deployments: &[Deployment]) -> u64 {
    deployments.iter().map(|d| d.spec.number).max().unwrap_or(0) + 1
}

/// The number the next release of an application gets, given its `releases`: one more
/// than the highest (numbers are never reused, even after a delete).
#[must_use]
pub fn next_release_number(releases: &[Release]) -> u64 {
    releases.iter().map(|r| r.spec.number).max().unwrap_or(0) + 1
}

/// What deploying an application's current spec to one environment where it runs would
/// roll out there: a new release (or another existing one) and what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The application.
    pub application: String,
    /// The environment it runs in.
    pub environment: String,
    /// The release running there now.
    pub running_release: u64,
    /// The release a deploy would put there.
    pub release: u64,
    /// Whether a deploy would make `release` (a new release), rather than reuse it.
    pub new_release: bool,
    /// What changes in this environment, as fields of the application's spec (JSON
    /// names, sorted): `image`, a template field (`command`, `env`, `configFiles`, …),
    /// `replicas`, `team`, or `environments.<environment>` (its own override).
    pub changes: Vec<String>,
}

/// What a deploy of `spec` (the application's current spec) to `environment` would
/// roll out there, decided as a deploy decides its release ([`choose_release`]):
/// `deployments` are those of the application in `environment`, `releases` all of its
/// releases. `None` when nothing runs there, or when nothing that environment runs
/// would change (the same release; or a spec that differs only in what other
/// environments override, in `source` or in nothing at all).
///
/// # Errors
///
/// As [`choose_release`]: a spec built from source that no build has released yet.
pub fn rollout(
    application: &str,
    environment: &str,
    spec: &ApplicationSpec,
    releases: &[Release],
    deployments: &[Deployment],
) -> Result<Option<Rollout>, DeliveryError> {
    let find = |n: u64| releases.iter().find(|r| r.spec.number == n);
    let Some(running) = governing(deployments).and_then(|d| find(d.spec.release)) else {
        return Ok(None);
    };
    let (release, new_release, next, next_image) =
        match choose_release(application, spec, releases, &Requested::Current)? {
            ReleaseChoice::Existing(n) if n == running.spec.number => return Ok(None),
            ReleaseChoice::Existing(n) => match find(n) {
                Some(r) => (n, false, r.spec.template.clone(), requested_image(r).to_owned()),
                None => return Ok(None),
            },
            ReleaseChoice::New { number, template } => {
                let image = template.image.clone();
                (number, true, *template, image)
            }
        };
    let changes = changes_in(
        &running.spec.template,
        requested_image(running),
        &next,
        &next_image,
        environment,
    );
    Ok((!changes.is_empty()).then(|| Rollout {
        application: application.to_owned(),
        environment: environment.to_owned(),
        running_release: running.spec.number,
        release,
        new_release,
        changes,
    }))
}

/// The image a release was asked for (a tag, before it was pinned), else what it runs.
fn requested_image(release: &Release) -> &str {
    release
        .spec
        .origin
        .requested_image
        .as_deref()
        .unwrap_or(&release.spec.template.image)
}

/// The spec fields in which `next` (asking for `next_image`) runs differently from
/// `running` (asked for `running_image`) in `environment`: the template, the image, the
/// team (its namespace), the environment's own override, and the replicas unless the
/// override sets them on both sides. Other environments' overrides and `source` are not
/// run there.
fn changes_in(
    running: &ApplicationSpec,
    running_image: &str,
    next: &ApplicationSpec,
    next_image: &str,
    environment: &str,
) -> Vec<String> {
    let mut changes = Vec::new();
    if running_image != next_image {
        changes.push("image".to_owned());
    }
    let same_image = ApplicationSpec {
        image: next.image.clone(),
        ..running.clone()
    };
    changes.extend(
        template_differences(&same_image, next)
            .into_iter()
            .filter(|f| f != "image"),
    );
    if running.team != next.team {
        changes.push("team".to_owned());
    }
    let (was, will) = (
        running.environments.get(environment),
        next.environments.get(environment),
    );
    if was != will {
        changes.push(format!("environments.{environment}"));
    }
    let sets_replicas =
        |o: Option<&EnvironmentOverride>| o.is_some_and(|o| o.replicas.is_some() || o.autoscaling.is_some());
    if running.replicas != next.replicas && !(sets_replicas(was) && sets_replicas(will)) {
        changes.push("replicas".to_owned());
    }
    changes.sort();
    changes.dedup();
    changes
}

/// The deployment an automatic rollback makes after `failed` failed: back to the
/// release of `last_succeeded` (the newest deployment that succeeded in the environment),
/// when that is another release, numbered `number`. `None` when there is nothing to go
/// back to.
#[must_use]
pub fn auto_rollback(
    failed: &Deployment,
    last_succeeded: Option<&Deployment>,
    number: u64,
) -> Option<Deployment> {
    let back = last_succeeded.filter(|d| d.spec.release != failed.spec.release)?;
    let (app, env) = (&failed.spec.application, &failed.spec.environment);
    let mut rollback = Deployment::new(
        crate::objects::deployment_name(app, env, number),
        crate::objects::DeploymentSpec {
            application: app.clone(),
            environment: env.clone(),
            release: back.spec.release,
            number,
            cause: crate::objects::DeploymentCause::AutoRollback {
                failed_deployment: failed.metadata.name.clone(),
            },
            requested_by: Some("berth".to_owned()),
        },
    );
    rollback.status.previous_release = Some(failed.spec.release);
    Some(rollback)
}

/// Why deleting an application is refused: the production environments among those
/// it runs in (`running`), unless the delete is forced. `production` tells whether an
/// environment is a production one.
#[must_use]
pub fn delete_blockers(running: &[String], force: bool, production: impl Fn(&str) -> bool) -> Vec<String> {
    if force {
        return Vec::new();
    }
    running.iter().filter(|e| production(e)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{DeploymentCause, DeploymentSpec, ReleaseOrigin};

    const D1: &str = "r/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn spec(image: &str) -> ApplicationSpec {
        serde_json::from_value(serde_json::json!({"image": image})).unwrap()
    }

    fn release(n: u64, requested: &str) -> Release {
        Release::of(
            "web",
            n,
            ApplicationSpec {
                image: D1.into(),
                ..spec(requested)
            },
            ReleaseOrigin {
                requested_image: Some(requested.into()),
                ..Default::default()
            },
        )
    }

    fn dep(n: u64, release: u64, phase: DeploymentPhase) -> Deployment {
        let mut d = Deployment::new(
            format!("web-qa-{n}"),
            DeploymentSpec {
                application: "web".into(),
                environment: "qa".into(),
                release,
                number: n,
                cause: DeploymentCause::Deploy,
                requested_by: None,
            },
        );
        d.status.phase = phase;
        d
    }

    #[test]
    fn an_automatic_rollback_goes_back_to_the_last_success_when_it_is_another_release() {
        let succeeded = dep(1, 1, DeploymentPhase::Succeeded);
        let failed = dep(2, 2, DeploymentPhase::Failed);
        let back = auto_rollback(&failed, Some(&succeeded), 3).unwrap();
        assert_eq!((back.spec.number, back.spec.release), (3, 1));
        assert_eq!(back.status.previous_release, Some(2));
        assert_eq!(
            back.spec.cause,
            DeploymentCause::AutoRollback {
                failed_deployment: failed.metadata.name.clone()
            }
        );
        assert!(
            auto_rollback(&failed, None, 3).is_none(),
            "nothing succeeded before"
        );
        let same = dep(1, 2, DeploymentPhase::Succeeded);
        assert!(
            auto_rollback(&failed, Some(&same), 3).is_none(),
            "the failed release itself"
        );
    }

    fn in_env(mut d: Deployment, env: &str) -> Deployment {
        d.spec.environment = env.into();
        d
    }

    #[test]
    fn a_rollout_names_the_environments_whose_running_spec_changes_and_why() {
        let mut first = release(1, "r/web:1");
        first.spec.template.environments =
            serde_json::from_value(serde_json::json!({"production": {"replicas": 3}})).unwrap();
        let releases = [first.clone()];
        let qa = [in_env(dep(1, 1, DeploymentPhase::Succeeded), "qa")];
        let production = [in_env(dep(1, 1, DeploymentPhase::Succeeded), "production")];
        let current = ApplicationSpec {
            image: "r/web:1".into(),
            ..first.spec.template.clone()
        };
        let both = |spec: &ApplicationSpec| {
            [("qa", &qa[..]), ("production", &production[..])]
                .map(|(env, deployments)| rollout("web", env, spec, &releases, deployments).unwrap())
        };

        assert_eq!(
            both(&current),
            [None, None],
            "an unchanged spec rolls out nothing"
        );

        let mut config = current.clone();
        config.env.insert("MODE".into(), "fast".into());
        let [in_qa, in_production] = both(&config);
        let expected = |env: &str| Rollout {
            application: "web".into(),
            environment: env.into(),
            running_release: 1,
            release: 2,
            new_release: true,
            changes: vec!["env".into()],
        };
        assert_eq!(in_qa, Some(expected("qa")));
        assert_eq!(in_production, Some(expected("production")));

        let mut scaled = current.clone();
        scaled
            .environments
            .entry("production".into())
            .or_default()
            .replicas = Some(5);
        let [in_qa, in_production] = both(&scaled);
        assert_eq!(in_qa, None, "production's override is not run in qa");
        assert_eq!(
            in_production.map(|r| r.changes),
            Some(vec!["environments.production".to_owned()])
        );

        let mut base = current.clone();
        base.replicas = 4;
        let [in_qa, in_production] = both(&base);
        assert_eq!(in_qa.map(|r| r.changes), Some(vec!["replicas".to_owned()]));
        assert_eq!(in_production, None, "production sets its own replicas");

        let mut image = current;
        image.image = "r/web:2".into();
        let [in_qa, _] = both(&image);
        assert_eq!(in_qa.map(|r| r.changes), Some(vec!["image".to_owned()]));

        assert_eq!(
            rollout("web", "staging", &config, &releases, &[]).unwrap(),
            None,
            "nothing runs in staging"
        );
    }

    #[test]
    fn a_rollout_reuses_a_newer_release_that_already_has_the_spec() {
        let mut second = release(2, "r/web:1");
        second.spec.template.env.insert("MODE".into(), "fast".into());
        let releases = [release(1, "r/web:1"), second.clone()];
        let qa = [in_env(dep(1, 1, DeploymentPhase::Succeeded), "qa")];
        let spec = ApplicationSpec {
            image: "r/web:1".into(),
            ..second.spec.template
        };
        let planned = rollout("web", "qa", &spec, &releases, &qa).unwrap().unwrap();
        assert_eq!(
            (planned.release, planned.new_release, planned.changes),
            (2, false, vec!["env".to_owned()])
        );
    }

    #[test]
    fn deleting_is_blocked_by_production_environments_unless_forced() {
        let running = vec!["production".to_owned(), "qa".to_owned()];
        let production = |e: &str| e == "production";
        assert_eq!(delete_blockers(&running, false, production), ["production"]);
        assert!(delete_blockers(&running, true, production).is_empty());
        assert!(delete_blockers(&["qa".to_owned()], false, production).is_empty());
    }

    #[test]
    fn release_numbers_follow_the_highest() {
        assert_eq!(next_release_number(&[]), 1);
        assert_eq!(next_release_number(&[release(1, "a"), release(4, "a")]), 5);
    }

    #[test]
    fn deploying_an_unchanged_spec_reuses_the_newest_release() {
        let rs = [release(1, "r/web:1"), release(2, "r/web:2")];
        assert_eq!(
            choose_release("web", &spec("r/web:2"), &rs, &Requested::Current),
            Ok(ReleaseChoice::Existing(2))
        );
        let changed = ApplicationSpec {
            replicas: 3,
            ..spec("r/web:2")
        };
        assert!(matches!(
            choose_release("web", &changed, &rs, &Requested::Current),
            Ok(ReleaseChoice::New { number: 3, .. })
        ));
        assert!(matches!(
            choose_release("web", &spec("r/web:1"), &[], &Requested::Current),
            Ok(ReleaseChoice::New { number: 1, .. })
        ));
    }

    #[test]
    fn explicit_release_and_image() {
        let rs = [release(1, "r/web:1")];
        assert_eq!(
            choose_release("web", &spec("x/y:1"), &rs, &Requested::Release(1)),
            Ok(ReleaseChoice::Existing(1))
        );
        assert!(matches!(
            choose_release("web", &spec("x/y:1"), &rs, &Requested::Release(7)),
            Err(DeliveryError::NoSuchRelease { number: 7, .. })
        ));
        let Ok(ReleaseChoice::New { number, template }) =
            choose_release("web", &spec("x/y:1"), &rs, &Requested::Image("r/web:9"))
        else {
            panic!()
        };
        assert_eq!((number, template.image.as_str()), (2, "r/web:9"));
    }

    #[test]
    fn a_built_application_deploys_its_newest_build_by_digest() {
        let built_spec: ApplicationSpec = serde_json::from_value(serde_json::json!({"image": "r/web",
            "source": {"git": "file:///r.git", "builder": {"java": {"jar": "a.jar"}}}}))
        .unwrap();
        assert_eq!(
            choose_release("web", &built_spec, &[], &Requested::Current),
            Err(DeliveryError::NotBuilt {
                application: "web".into()
            })
        );
        let built = Release::of(
            "web",
            1,
            ApplicationSpec {
                image: D1.into(),
                ..built_spec.clone()
            },
            ReleaseOrigin {
                requested_image: Some("r/web".into()),
                build: Some("web-build-1".into()),
                ..Default::default()
            },
        );
        let mut promoted = built.clone();
        promoted.metadata.name = "web-2".into();
        promoted.spec.number = 2;
        promoted.spec.origin.requested_image = Some(D1.into());
        promoted.spec.origin.promotion = Some(crate::objects::Promotion {
            from_environment: "qa".into(),
            from_release: 1,
            to_environment: "production".into(),
            promoted_by: "bob".into(),
            promoted_at: chrono::Utc::now(),
        });
        let rs = [built, promoted];
        assert_eq!(
            choose_release("web", &built_spec, &rs, &Requested::Current),
            Ok(ReleaseChoice::Existing(1)),
            "a promotion does not hide the release the build made"
        );
        let scaled = ApplicationSpec {
            replicas: 4,
            ..built_spec
        };
        let Ok(ReleaseChoice::New { number, template }) =
            choose_release("web", &scaled, &rs, &Requested::Current)
        else {
            panic!()
        };
        assert_eq!((number, template.image.as_str(), template.replicas), (3, D1, 4));
        // Once that config change is released (with the build's lineage), deploying the
        // same spec again reuses it instead of making a duplicate.
        let mut rs = rs.to_vec();
        rs.push(Release::of(
            "web",
            3,
            *template,
            ReleaseOrigin {
                requested_image: Some(D1.into()),
                build: Some("web-build-1".into()),
                ..Default::default()
            },
        ));
        assert_eq!(
            choose_release("web", &scaled, &rs, &Requested::Current),
            Ok(ReleaseChoice::Existing(3))
        );
    }

    #[test]
    fn rollback_goes_to_the_newest_other_release_that_succeeded() {
        let rs = [release(1, "a"), release(2, "a"), release(3, "a")];
        let ds = [
            dep(1, 1, DeploymentPhase::Succeeded),
            dep(2, 2, DeploymentPhase::Succeeded),
            dep(3, 3, DeploymentPhase::Progressing),
        ];
        assert_eq!(rollback_target("web", "qa", &ds, &rs, None), Ok((3, 2)));
        assert_eq!(rollback_target("web", "qa", &ds, &rs, Some(1)), Ok((3, 1)));
        assert!(rollback_target("web", "qa", &ds, &rs, Some(9)).is_err());
        assert!(matches!(
            rollback_target("web", "qa", &[], &rs, None),
            Err(DeliveryError::NothingDeployed { .. })
        ));
        let only = [dep(1, 1, DeploymentPhase::Succeeded)];
        assert!(matches!(
            rollback_target("web", "qa", &only, &rs, None),
            Err(DeliveryError::NoEarlierRelease { .. })
        ));
        assert_eq!(next_deployment_number(&ds), 4);
    }
}
