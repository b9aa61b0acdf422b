//! Releases: made from the application's spec (a tag resolved to its digest now), or
//! from a successful build (its digest), numbered one more than the highest.

use std::time::Duration;

use berth_core::{
    FieldError, Invalid, Kind, NewEvent,
    authz::{Permission, decide},
    delivery::{self, ReleaseChoice, Requested, next_release_number},
    image::ImageRef,
    objects::{Application, ApplicationSpec, Build, BuildKind, BuildPhase, Release, ReleaseOrigin},
    repo,
};

use crate::{
    Actor, CreateRelease, Delivery, Error, ReleaseFromBuild, Result, reads,
    retry::{self, Attempt, retrying},
};

/// Longest a tag lookup in a registry may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The event that announces `release`, made by `actor`.
pub(crate) fn release_event(release: &Release, actor: &str) -> NewEvent {
    if let Some(p) = &release.spec.origin.promotion {
        return NewEvent::normal(
            "Promoted",
            "Release",
            release.name(),
            actor,
            format!(
                "release {} of {} promoted from release {} in {} to {} by {}: {}",
                release.spec.number,
                release.spec.application,
                p.from_release,
                p.from_environment,
                p.to_environment,
                p.promoted_by,
                release.spec.template.image
            ),
        )
        .about(&release.spec.application, Some(&p.to_environment));
    }
    NewEvent::normal(
        "ReleaseCreated",
        "Release",
        release.name(),
        actor,
        format!(
            "release {} of {} pins {}",
            release.spec.number, release.spec.application, release.spec.template.image
        ),
    )
    .about(&release.spec.application, None)
}

impl Delivery {
    /// Resolves the image of `template` to a digest and builds release `number`
    /// (uncommitted). When a build of the application made that digest (a config change
    /// on a built image), the release keeps the build and commit it came from.
    pub(crate) async fn make_release(
        &self,
        actor: &Actor,
        app: &Application,
        releases: &[Release],
        number: u64,
        template: ApplicationSpec,
        description: Option<String>,
    ) -> Result<Release> {
        let image = ImageRef::parse(&template.image).map_err(|e| Invalid {
            kind: "Release",
            errors: vec![FieldError::new("image", e.to_string()).hint("e.g. 127.0.0.1:5000/team/web:1.0")],
        })?;
        // The registry client has connect and read timeouts; this bounds the whole lookup.
        let digest = tokio::time::timeout(RESOLVE_TIMEOUT, self.resolver.resolve(&image))
            .await
            .map_err(|_| berth_core::ports::ResolveError::Registry {
                image: image.to_string(),
                message: format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs()),
            })??;
        let requested = template.image.clone();
        let template = ApplicationSpec {
            image: image.pinned(&digest).to_string(),
            ..template
        };
        let built = berth_core::promotion::lineage(&digest, releases);
        let origin = ReleaseOrigin {
            requested_image: Some(requested),
            created_by: Some(actor.name().to_owned()),
            description,
            build: built.and_then(|r| r.spec.origin.build.clone()),
            commit: built.and_then(|r| r.spec.origin.commit.clone()),
            promotion: None,
        };
        let release = Release::of(app.name(), number, template, origin);
        release.validate()?;
        Ok(release)
    }

    /// Creates a new release of the application's current spec, or of it with another
    /// image. Needs the right to apply to the application's team.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing application, [`Error::Forbidden`],
    /// [`Error::Invalid`] / [`Error::Resolve`] for an image that cannot be pinned,
    /// [`Error::Busy`] when other releases kept taking the number.
    pub async fn create_release(&self, cmd: CreateRelease) -> Result<Release> {
        let store = self.store.as_ref();
        let app = &cmd.application;
        let application = reads::application(store, app).await?;
        if let Actor::User(p) = &cmd.actor {
            decide(
                p,
                &Permission::Apply {
                    team: application.spec.team.clone(),
                },
            )?;
        }
        let image = cmd
            .image
            .clone()
            .unwrap_or_else(|| application.spec.image.clone());
        retrying(app, || async {
            let releases = reads::releases(store, app).await?;
            let ReleaseChoice::New { number, template } =
                delivery::choose_release(app, &application.spec, &releases, &Requested::Image(&image))?
            else {
                return Ok(Attempt::Raced);
            };
            let release = self
                .make_release(
                    &cmd.actor,
                    &application,
                    &releases,
                    number,
                    *template,
                    cmd.description.clone(),
                )
                .await?;
            let event = release_event(&release, cmd.actor.name());
            Ok(
                match retry::commit(store, vec![repo::create(&release)?], vec![event]).await? {
                    Attempt::Done(c) => {
                        Attempt::Done(repo::decode_committed(c.documents.into_iter().next().flatten())?)
                    }
                    Attempt::Raced => Attempt::Raced,
                },
            )
        })
        .await
    }

    /// Records build `cmd.build` as succeeded with `cmd.digest`, and the release it makes
    /// (the application's spec pinned to the digest, numbered next), in one commit.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing build; [`Error::Unreleasable`] when the
    /// application is gone or the pinned spec is invalid (fail the build with its
    /// message); [`Error::Busy`] when other releases kept taking the number.
    pub async fn release_from_build(&self, cmd: ReleaseFromBuild<'_>) -> Result<Release> {
        let store = self.store.as_ref();
        let name = &cmd.build;
        let found = repo::get::<BuildKind>(store, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: BuildKind::KIND,
                name: name.clone(),
            })?;
        let app = found.spec.application.clone();
        retrying(&app, || async {
            let mut build = repo::get::<BuildKind>(store, name)
                .await?
                .ok_or_else(|| Error::NotFound {
                    kind: BuildKind::KIND,
                    name: name.clone(),
                })?;
            let unreleasable = |message: String| Error::Unreleasable {
                build: name.clone(),
                message,
            };
            let Some(application) = repo::get::<berth_core::objects::ApplicationKind>(store, &app).await?
            else {
                return Err(unreleasable(
                    "the application was deleted during the build".to_owned(),
                ));
            };
            let releases = reads::releases(store, &app).await?;
            let number = next_release_number(&releases);
            let release = release_of(&application.spec, &build, &cmd.digest, number).map_err(unreleasable)?;
            let log = (cmd.log)(&format!("release {number} pins {}", release.spec.template.image));
            build.status.finished_at = Some(self.clock.now());
            build.status.phase = BuildPhase::Succeeded;
            build.status.digest = Some(cmd.digest.clone());
            build.status.image = Some(release.spec.template.image.clone());
            build.status.release = Some(number);
            build.status.layers.clone_from(&cmd.layers);
            let pushed_count = cmd.layers.iter().filter(|l| l.pushed).count();
            build.status.message = Some(format!(
                "built {} ({pushed_count} of {} blob(s) uploaded); release {number}",
                cmd.digest,
                cmd.layers.len()
            ));
            build.status.log = log;
            let by = build.spec.requested_by.as_deref().unwrap_or("berth");
            let events = vec![
                NewEvent::normal(
                    "BuildSucceeded",
                    "Build",
                    name,
                    by,
                    format!("build {name} made {}", cmd.digest),
                )
                .about(&app, None),
                NewEvent::normal(
                    "ReleaseCreated",
                    "Release",
                    release.name(),
                    by,
                    format!(
                        "release {number} of {app} pins {} (build {name})",
                        release.spec.template.image
                    ),
                )
                .about(&app, None),
            ];
            let writes = vec![repo::create(&release)?, repo::replace(&build)?];
            Ok(match retry::commit(store, writes, events).await? {
                Attempt::Done(c) => {
                    Attempt::Done(repo::decode_committed(c.documents.into_iter().next().flatten())?)
                }
                Attempt::Raced => Attempt::Raced,
            })
        })
        .await
    }
}

/// The release a successful build makes: the application's spec with the image pinned.
fn release_of(spec: &ApplicationSpec, build: &Build, digest: &str, number: u64) -> Result<Release, String> {
    let image = ImageRef::parse(&spec.image).map_err(|e| e.to_string())?;
    let template = ApplicationSpec {
        image: image.pinned(digest).to_string(),
        ..spec.clone()
    };
    let origin = ReleaseOrigin {
        requested_image: Some(spec.image.clone()),
        created_by: build.spec.requested_by.clone(),
        description: Some(match &build.spec.commit {
            Some(c) => format!("built from {c} by {}", build.name()),
            None => format!("resolved by {}", build.name()),
        }),
        build: Some(build.name().to_owned()),
        commit: build.spec.commit.clone(),
        promotion: None,
    };
    let release = Release::of(&build.spec.application, number, template, origin);
    release.validate().map_err(|e| e.to_string())?;
    Ok(release)
}
