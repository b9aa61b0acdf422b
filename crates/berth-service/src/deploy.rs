//! Putting a release into an environment: deploy, rollback, promote, and the automatic
//! rollback after a failed rollout. Each records one deployment (and the release, when
//! it makes one) in one commit, after the admission chain let the release in.

use berth_core::{
    Kind, NewEvent,
    delivery::{self, ReleaseChoice, Requested, Rollout, next_release_number},
    deployment::governing,
    objects::{
        ApplicationSpec, Deployment, DeploymentCause, DeploymentKind, DeploymentSpec, Promotion, Release,
        deployment_name,
    },
    promotion, repo,
};

use crate::{
    Actor, AutoRollback, Delivery, Deploy, Promote, ReleaseWanted, Result, Rollback,
    admission::{Admission, Entry},
    reads,
    release::release_event,
    retry::{self, Attempt, retrying},
};

/// A deployment about to be recorded.
struct Intent<'a> {
    actor: &'a Actor,
    app: &'a str,
    env: &'a str,
    release: u64,
    /// The release itself, when the use case makes it.
    new_release: Option<&'a Release>,
    cause: DeploymentCause,
}

impl Delivery {
    /// Commits the deployment of `intent` (and its release when new), numbered after
    /// `deployments` (those of the application in the environment).
    async fn record_deployment(
        &self,
        intent: Intent<'_>,
        deployments: &[Deployment],
    ) -> Result<Attempt<Deployment>> {
        let Intent {
            actor,
            app,
            env,
            release,
            new_release,
            cause,
        } = intent;
        let number = delivery::next_deployment_number(deployments);
        let mut deployment = Deployment::new(
            deployment_name(app, env, number),
            DeploymentSpec {
                application: app.to_owned(),
                environment: env.to_owned(),
                release,
                number,
                cause: cause.clone(),
                requested_by: Some(actor.name().to_owned()),
            },
        );
        deployment.status.previous_release = governing(deployments).map(|d| d.spec.release);
        deployment.validate()?;
        let verb = match cause {
            DeploymentCause::Rollback { from_release } => {
                format!("rollback of {app} in {env} from release {from_release} to {release}")
            }
            _ => format!("deploy of release {release} of {app} to {env}"),
        };
        let mut writes = Vec::new();
        let mut events = Vec::new();
        if let Some(r) = new_release {
            writes.push(repo::create(r)?);
            events.push(release_event(r, actor.name()));
        }
        writes.push(repo::create(&deployment)?);
        events.push(
            NewEvent::normal(
                "DeploymentCreated",
                DeploymentKind::KIND,
                deployment.name(),
                actor.name(),
                format!("{verb} requested by {}", actor.name()),
            )
            .about(app, Some(env)),
        );
        Ok(match retry::commit(self.store.as_ref(), writes, events).await? {
            Attempt::Done(c) => {
                self.changed();
                Attempt::Done(repo::decode_committed(c.documents.into_iter().last().flatten())?)
            }
            Attempt::Raced => Attempt::Raced,
        })
    }

    /// Deploys a release of an application to an environment: an existing one, or a new
    /// release of its current spec (with another image, or as it is when no release
    /// matches it).
    ///
    /// # Errors
    ///
    /// [`crate::Error::NotFound`], [`crate::Error::MissingReference`] (the environment),
    /// [`crate::Error::Delivery`] (no such release, nothing built), any refusal of the
    /// admission chain, [`crate::Error::Busy`].
    pub async fn deploy(&self, cmd: Deploy) -> Result<Deployment> {
        let store = self.store.as_ref();
        let app = cmd.application.as_str();
        let application = reads::application(store, app).await?;
        let env = reads::environment(store, "environment", &cmd.environment).await?;
        let requested = match &cmd.release {
            ReleaseWanted::Existing(n) => Requested::Release(*n),
            ReleaseWanted::Image(image) => Requested::Image(image),
            ReleaseWanted::Current => Requested::Current,
        };
        retrying(app, || async {
            let releases = reads::releases(store, app).await?;
            let deployments = reads::deployments(store, app).await?;
            let (number, new_release) =
                match delivery::choose_release(app, &application.spec, &releases, &requested)? {
                    ReleaseChoice::Existing(n) => (n, None),
                    ReleaseChoice::New { number, template } => (
                        number,
                        Some(
                            self.make_release(&cmd.actor, &application, &releases, number, *template, None)
                                .await?,
                        ),
                    ),
                };
            if let Some(release) = new_release
                .as_ref()
                .or_else(|| releases.iter().find(|r| r.spec.number == number))
            {
                self.admit(&Admission {
                    actor: &cmd.actor,
                    application: &application,
                    environment: &env,
                    release,
                    verified_as: release,
                    entry: Entry::Deploy,
                    releases: &releases,
                    deployments: &deployments,
                })
                .await?;
            }
            let intent = Intent {
                actor: &cmd.actor,
                app,
                env: &cmd.environment,
                release: number,
                new_release: new_release.as_ref(),
                cause: DeploymentCause::Deploy,
            };
            self.record_deployment(intent, &reads::of_environment(&deployments, &cmd.environment))
                .await
        })
        .await
    }

    /// What deploying `spec` (application `app`'s spec as it would be stored) would roll
    /// out in each environment the application runs in, decided as [`Delivery::deploy`]
    /// decides its release, by environment name. Environments where a deploy would be
    /// refused for want of a build are left out: nothing there could roll out.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Store`] when the releases or deployments cannot be read.
    pub async fn rollouts(&self, app: &str, spec: &ApplicationSpec) -> Result<Vec<Rollout>> {
        let store = self.store.as_ref();
        let deployments = reads::deployments(store, app).await?;
        if deployments.is_empty() {
            // Never deployed: nothing to roll out, and no need to read its releases (an
            // apply of many documents asks this of every application it changes).
            return Ok(Vec::new());
        }
        let releases = reads::releases(store, app).await?;
        let mut environments: Vec<&str> = deployments.iter().map(|d| d.spec.environment.as_str()).collect();
        environments.sort_unstable();
        environments.dedup();
        Ok(environments
            .into_iter()
            .filter_map(|env| {
                let of_env = reads::of_environment(&deployments, env);
                delivery::rollout(app, env, spec, &releases, &of_env)
                    .ok()
                    .flatten()
            })
            .collect())
    }

    /// Rolls an environment back to an earlier release: the one asked for, or the newest
    /// other release that succeeded there.
    ///
    /// # Errors
    ///
    /// As [`Delivery::deploy`], and [`crate::Error::Delivery`] when there is nothing to
    /// roll back to.
    pub async fn rollback(&self, cmd: Rollback) -> Result<Deployment> {
        let store = self.store.as_ref();
        let app = cmd.application.as_str();
        let application = reads::application(store, app).await?;
        let env = reads::environment(store, "environment", &cmd.environment).await?;
        retrying(app, || async {
            let releases = reads::releases(store, app).await?;
            let deployments = reads::deployments(store, app).await?;
            let of_env = reads::of_environment(&deployments, &cmd.environment);
            let (from, to) = delivery::rollback_target(app, &cmd.environment, &of_env, &releases, cmd.to)?;
            if let Some(release) = releases.iter().find(|r| r.spec.number == to) {
                self.admit(&Admission {
                    actor: &cmd.actor,
                    application: &application,
                    environment: &env,
                    release,
                    verified_as: release,
                    entry: Entry::Rollback,
                    releases: &releases,
                    deployments: &deployments,
                })
                .await?;
            }
            let intent = Intent {
                actor: &cmd.actor,
                app,
                env: &cmd.environment,
                release: to,
                new_release: None,
                cause: DeploymentCause::Rollback { from_release: from },
            };
            self.record_deployment(intent, &of_env).await
        })
        .await
    }

    /// Promotes what runs in `from` to `to`: a new release with the identical digest and
    /// template (a copy, never a rebuild) deployed to `to`, where `to`'s own overrides
    /// apply.
    ///
    /// # Errors
    ///
    /// As [`Delivery::deploy`] (with [`crate::Error::MissingReference`] naming `from` or
    /// `to`), and [`crate::Error::Promotion`] when there is nothing to promote.
    pub async fn promote(&self, cmd: Promote) -> Result<Deployment> {
        let store = self.store.as_ref();
        let app = cmd.application.as_str();
        let application = reads::application(store, app).await?;
        reads::environment(store, "from", &cmd.from).await?;
        let target = reads::environment(store, "to", &cmd.to).await?;
        retrying(app, || async {
            let releases = reads::releases(store, app).await?;
            let deployments = reads::deployments(store, app).await?;
            let source = promotion::promotion_source(app, &cmd.from, &cmd.to, &deployments, &releases)?;
            let number = next_release_number(&releases);
            let release = promotion::promoted_release(
                source,
                number,
                Promotion {
                    from_environment: cmd.from.clone(),
                    from_release: source.spec.number,
                    to_environment: cmd.to.clone(),
                    promoted_by: cmd.actor.name().to_owned(),
                    promoted_at: self.clock.now(),
                },
            );
            release.validate()?;
            self.admit(&Admission {
                actor: &cmd.actor,
                application: &application,
                environment: &target,
                release: &release,
                verified_as: source,
                entry: Entry::Promotion,
                releases: &releases,
                deployments: &deployments,
            })
            .await?;
            let intent = Intent {
                actor: &cmd.actor,
                app,
                env: &cmd.to,
                release: number,
                new_release: Some(&release),
                cause: DeploymentCause::Deploy,
            };
            self.record_deployment(intent, &reads::of_environment(&deployments, &cmd.to))
                .await
        })
        .await
    }

    /// Records a failed deployment's status and events and, when its environment rolls
    /// back automatically and an earlier release succeeded there, the deployment that
    /// goes back to it, in one commit. Returns the rollback, if one was made.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Store`] with a conflict when `cmd.failed` changed since it was read
    /// (decide again from a fresh read); [`crate::Error::Busy`] when other deployments
    /// kept taking the rollback's number.
    pub async fn auto_rollback(&self, cmd: AutoRollback) -> Result<Option<Deployment>> {
        let store = self.store.as_ref();
        let failed = &cmd.failed;
        let (app, env_name) = (&failed.spec.application, &failed.spec.environment);
        let env = reads::environment(store, "environment", env_name).await?;
        retrying(app, || async {
            let mut writes = vec![repo::replace(failed)?];
            let mut events = cmd.events.clone();
            let mut rollback = None;
            if env.spec.rollout.auto_rollback {
                let last = repo::last_succeeded(store, app, env_name).await?;
                let number = store.next_deployment_number(app, env_name).await?;
                if let Some(back) = delivery::auto_rollback(failed, last.as_ref(), number)
                    && let Some(application) =
                        repo::get::<berth_core::objects::ApplicationKind>(store, app).await?
                    && let Some(release) = reads::release(store, app, back.spec.release).await?
                {
                    let admitted = self
                        .admit(&Admission {
                            actor: &Actor::Berth,
                            application: &application,
                            environment: &env,
                            release: &release,
                            verified_as: &release,
                            entry: Entry::AutoRollback,
                            // What ran there passes requireVerifiedIn: nothing to look up.
                            releases: &[],
                            deployments: &[],
                        })
                        .await;
                    match admitted {
                        Ok(()) => {
                            writes.push(repo::create(&back)?);
                            events.push(
                                NewEvent::warning(
                                    "AutoRollback",
                                    DeploymentKind::KIND,
                                    back.name(),
                                    "berth",
                                    format!(
                                        "rolling {app} in {env_name} back to release {} after {} failed",
                                        back.spec.release, failed.metadata.name
                                    ),
                                )
                                .about(app, Some(env_name)),
                            );
                            rollback = Some(back);
                        }
                        Err(e) => tracing::warn!(application = %app, environment = %env_name, error = %e,
                            "automatic rollback refused by admission"),
                    }
                }
            }
            match store.commit(writes, events).await {
                Ok(c) => {
                    if rollback.is_some() {
                        self.changed();
                        return Ok(Attempt::Done(Some(repo::decode_committed(
                            c.documents.into_iter().last().flatten(),
                        )?)));
                    }
                    Ok(Attempt::Done(None))
                }
                // The rollback's number was taken: count again. A conflict on the failed
                // deployment itself is not ours to resolve: its status was decided from
                // what the caller read.
                Err(berth_core::ports::StoreError::AlreadyExists { .. }) if rollback.is_some() => {
                    Ok(Attempt::Raced)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}
