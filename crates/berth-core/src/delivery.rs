//! Decisions of delivery: which release a deploy uses, what a rollback goes back to,
//! how deployments are numbered. Pure; the API layer loads the inputs and commits.

use crate::{
    deployment::governing,
    objects::{ApplicationSpec, Builder, Deployment, DeploymentPhase, Release},
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
