//! Releases, deploys, rollbacks and status: load, let the core decide, commit.

use berth_core::{
    Kind, NewEvent, Resource,
    delivery::{self, ReleaseChoice, Requested},
    deployment::governing,
    image::ImageRef,
    objects::{
        Application, ApplicationKind, ApplicationSpec, Deployment, DeploymentCause, DeploymentSpec,
        EnvironmentKind, Release, ReleaseKind, ReleaseOrigin, SecretKind, TeamKind, deployment_name,
        release_name, secret_candidates,
    },
    ports::{ResolveError, StoreError},
    quota::{self, Demand, Limits, Usage},
    render::default_host,
    repo,
};

use crate::{
    ApiState,
    auth::Actor,
    error::{ApiError, Result},
    objects,
};
pub use berth_contract::{
    ApplicationState, DeployRequest, DeploymentSummary, EnvironmentState, ReleaseRequest, RollbackRequest,
};

pub(crate) const ATTEMPTS: usize = 3;

/// Longest a tag lookup in a registry may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Refuses a deploy of `template` (a release of `application`) to `env` that references
/// secrets that are not set, or that would take the team over its quota there.
pub async fn admit(
    state: &ApiState,
    application: &Application,
    env: &Resource<EnvironmentKind>,
    template: &ApplicationSpec,
) -> Result<()> {
    let store = state.store.as_ref();
    let app = application.name();
    let mut missing = Vec::new();
    for r in &template.secrets {
        // What the reconciler would deliver there: the environment's own value or the
        // one for all environments.
        let mut found = false;
        for candidate in secret_candidates(app, &r.name, env.name()) {
            if store.get(SecretKind::KIND, &candidate).await?.is_some() {
                found = true;
                break;
            }
        }
        if !found {
            missing.push(r.name.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::MissingSecrets {
            application: app.to_owned(),
            names: missing,
        });
    }
    let team_name = &application.spec.team;
    let Some(team) = repo::get::<TeamKind>(store, team_name).await? else {
        return Ok(());
    };
    let limits = team
        .spec
        .quotas
        .get(env.name())
        .map(Limits::of)
        .unwrap_or_default();
    if limits.is_unlimited() {
        return Ok(());
    }
    let clusters = env.spec.clusters.len();
    let team_apps: Vec<String> = repo::list_all::<ApplicationKind>(store, None)
        .await?
        .into_iter()
        .filter(|a| a.spec.team == *team_name && a.name() != app)
        .map(|a| a.metadata.name)
        .collect();
    let mut others = Usage::default();
    for other in &team_apps {
        let deployments = of_environment(objects::deployments(state, other).await?, env.name());
        if let Some(g) = governing(&deployments)
            && let Some(r) = repo::get::<ReleaseKind>(store, &release_name(other, g.spec.release)).await?
        {
            others.add(&Demand::of(&r.spec.template, env.name(), clusters));
        }
    }
    let demand = Demand::of(template, env.name(), clusters);
    quota::check(team_name, env.name(), app, &limits, &others, &demand)?;
    Ok(())
}

/// Resolves the image of `template` to a digest and builds the release (uncommitted).
/// When a build of the application made that digest (a config change on a built image),
/// the release keeps the build and commit it came from. `releases` are the application's.
async fn make_release(
    state: &ApiState,
    actor: &Actor,
    app: &Application,
    releases: &[Release],
    number: u64,
    template: ApplicationSpec,
    description: Option<String>,
) -> Result<Release> {
    let image = ImageRef::parse(&template.image).map_err(|e| {
        ApiError::Invalid(berth_core::Invalid {
            kind: "Release",
            errors: vec![
                berth_core::FieldError::new("image", e.to_string()).hint("e.g. 127.0.0.1:5000/team/web:1.0"),
            ],
        })
    })?;
    // The registry client has connect and read timeouts; this bounds the whole lookup.
    let digest = tokio::time::timeout(RESOLVE_TIMEOUT, state.resolver.resolve(&image))
        .await
        .map_err(|_| ResolveError::Registry {
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
        created_by: Some(actor.0.clone()),
        description,
        build: built.and_then(|r| r.spec.origin.build.clone()),
        commit: built.and_then(|r| r.spec.origin.commit.clone()),
        promotion: None,
    };
    let release = Release::of(app.name(), number, template, origin);
    release.validate()?;
    Ok(release)
}

fn release_event(release: &Release, actor: &Actor) -> NewEvent {
    if let Some(p) = &release.spec.origin.promotion {
        return NewEvent::normal(
            "Promoted",
            "Release",
            release.name(),
            &actor.0,
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
        &actor.0,
        format!(
            "release {} of {} pins {}",
            release.spec.number, release.spec.application, release.spec.template.image
        ),
    )
    .about(&release.spec.application, None)
}

/// Creates a new release of the application's current spec (or another image).
pub async fn create_release(
    state: &ApiState,
    actor: &Actor,
    app: &str,
    req: ReleaseRequest,
) -> Result<Release> {
    let application = objects::get::<berth_core::objects::ApplicationKind>(state, app).await?;
    for _ in 0..ATTEMPTS {
        let releases = objects::releases(state, app).await?;
        let image = req
            .image
            .clone()
            .unwrap_or_else(|| application.spec.image.clone());
        let ReleaseChoice::New { number, template } =
            delivery::choose_release(app, &application.spec, &releases, &Requested::Image(&image))?
        else {
            continue;
        };
        let release = make_release(
            state,
            actor,
            &application,
            &releases,
            number,
            *template,
            req.description.clone(),
        )
        .await?;
        match state
            .store
            .commit(
                vec![repo::create(&release)?],
                vec![release_event(&release, actor)],
            )
            .await
        {
            Ok(commit) => {
                return Ok(repo::decode_committed(
                    commit.documents.into_iter().next().flatten(),
                )?);
            }
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy())
}

pub(crate) fn busy() -> ApiError {
    ApiError::Conflict {
        message: "other changes to this application kept racing with the request".to_owned(),
        hint: "retry the request".to_owned(),
    }
}

async fn environment(state: &ApiState, name: &str) -> Result<Resource<EnvironmentKind>> {
    repo::get::<EnvironmentKind>(state.store.as_ref(), name)
        .await?
        .ok_or_else(|| ApiError::MissingReference {
            path: "environment".to_owned(),
            kind: "Environment",
            name: name.to_owned(),
        })
}

pub(crate) fn of_environment(deployments: Vec<Deployment>, env: &str) -> Vec<Deployment> {
    deployments
        .into_iter()
        .filter(|d| d.spec.environment == env)
        .collect()
}

/// A deployment about to be recorded.
pub(crate) struct Intent<'a> {
    /// The application.
    pub(crate) app: &'a str,
    /// The environment.
    pub(crate) env: &'a str,
    /// The release deployed.
    pub(crate) release: u64,
    /// The release itself, when the deploy makes it.
    pub(crate) new_release: Option<&'a Release>,
    /// Why.
    pub(crate) cause: DeploymentCause,
}

/// Records a deployment (and its release when it is new); `None` when another request
/// took the deployment number first.
pub(crate) async fn record_deployment(
    state: &ApiState,
    actor: &Actor,
    intent: Intent<'_>,
    deployments: &[Deployment],
) -> Result<Option<Deployment>> {
    let Intent {
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
            requested_by: Some(actor.0.clone()),
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
        events.push(release_event(r, actor));
    }
    writes.push(repo::create(&deployment)?);
    events.push(
        NewEvent::normal(
            "DeploymentCreated",
            "Deployment",
            deployment.name(),
            &actor.0,
            format!("{verb} requested by {}", actor.0),
        )
        .about(app, Some(env)),
    );
    match state.store.commit(writes, events).await {
        Ok(commit) => {
            state.changed.notify_one();
            Ok(Some(repo::decode_committed(
                commit.documents.into_iter().last().flatten(),
            )?))
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deploys a release of an application to an environment.
pub async fn deploy(state: &ApiState, actor: &Actor, app: &str, req: DeployRequest) -> Result<Deployment> {
    let application = objects::get::<berth_core::objects::ApplicationKind>(state, app).await?;
    let env = environment(state, &req.environment).await?;
    let requested = match (&req.release, &req.image) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either release or image, not both".to_owned(),
            ));
        }
        (Some(n), None) => Requested::Release(*n),
        (None, Some(image)) => Requested::Image(image),
        (None, None) => Requested::Current,
    };
    for _ in 0..ATTEMPTS {
        let releases = objects::releases(state, app).await?;
        let deployments = of_environment(objects::deployments(state, app).await?, &req.environment);
        let (number, new_release) =
            match delivery::choose_release(app, &application.spec, &releases, &requested)? {
                ReleaseChoice::Existing(n) => (n, None),
                ReleaseChoice::New { number, template } => (
                    number,
                    Some(make_release(state, actor, &application, &releases, number, *template, None).await?),
                ),
            };
        let template = new_release
            .as_ref()
            .or_else(|| releases.iter().find(|r| r.spec.number == number))
            .map(|r| &r.spec.template);
        if let Some(template) = template {
            admit(state, &application, &env, template).await?;
        }
        if let Some(release) = new_release
            .as_ref()
            .or_else(|| releases.iter().find(|r| r.spec.number == number))
        {
            crate::promotion::require_verified(state, app, &req.environment, release, false).await?;
        }
        let intent = Intent {
            app,
            env: &req.environment,
            release: number,
            new_release: new_release.as_ref(),
            cause: DeploymentCause::Deploy,
        };
        let recorded = record_deployment(state, actor, intent, &deployments).await?;
        if let Some(d) = recorded {
            return Ok(d);
        }
    }
    Err(busy())
}

/// Rolls an environment back to an earlier release.
pub async fn rollback(
    state: &ApiState,
    actor: &Actor,
    app: &str,
    req: RollbackRequest,
) -> Result<Deployment> {
    let application = objects::get::<berth_core::objects::ApplicationKind>(state, app).await?;
    let env = environment(state, &req.environment).await?;
    for _ in 0..ATTEMPTS {
        let releases = objects::releases(state, app).await?;
        let deployments = of_environment(objects::deployments(state, app).await?, &req.environment);
        let (from, to) = delivery::rollback_target(app, &req.environment, &deployments, &releases, req.to)?;
        if let Some(r) = releases.iter().find(|r| r.spec.number == to) {
            admit(state, &application, &env, &r.spec.template).await?;
        }
        if let Some(release) = releases.iter().find(|r| r.spec.number == to) {
            crate::promotion::require_verified(state, app, &req.environment, release, true).await?;
        }
        let intent = Intent {
            app,
            env: &req.environment,
            release: to,
            new_release: None,
            cause: DeploymentCause::Rollback { from_release: from },
        };
        if let Some(d) = record_deployment(state, actor, intent, &deployments).await? {
            return Ok(d);
        }
    }
    Err(busy())
}

/// Where an application stands in every environment it was deployed to.
pub async fn status(state: &ApiState, app: &str) -> Result<ApplicationState> {
    objects::get::<berth_core::objects::ApplicationKind>(state, app).await?;
    let releases = objects::releases(state, app).await?;
    let mut deployments = objects::deployments(state, app).await?;
    // Deployments retired with an earlier application of this name are history only.
    deployments.retain(|d| d.status.retired_at.is_none());
    let mut envs: Vec<&str> = deployments.iter().map(|d| d.spec.environment.as_str()).collect();
    envs.sort_unstable();
    envs.dedup();
    let mut environments = Vec::new();
    for env in envs {
        let of_env: Vec<Deployment> = deployments
            .iter()
            .filter(|d| d.spec.environment == env)
            .cloned()
            .collect();
        let current = governing(&of_env);
        let release = current.map(|d| d.spec.release);
        let image = release
            .and_then(|n| releases.iter().find(|r| r.spec.number == n))
            .map(|r| r.spec.template.image.clone());
        let mut urls = Vec::new();
        if let (Some(port), Some(r)) = (
            state.router_port,
            release.and_then(|n| releases.iter().find(|r| r.spec.number == n)),
        ) {
            urls.push(format!(
                "http://{}:{port}/",
                default_host(app, env, &state.domain)
            ));
            if let Some(host) = r
                .spec
                .template
                .environments
                .get(env)
                .and_then(|o| o.hostname.as_ref())
            {
                urls.push(format!("http://{host}:{port}/"));
            }
        }
        environments.push(EnvironmentState {
            environment: env.to_owned(),
            release,
            image,
            deployment: current.map(|d| DeploymentSummary {
                name: d.metadata.name.clone(),
                phase: d.status.phase,
                message: d.status.message.clone(),
            }),
            clusters: current.map(|d| d.status.clusters.clone()).unwrap_or_default(),
            urls,
        });
    }
    Ok(ApplicationState {
        application: app.to_owned(),
        environments,
    })
}

/// Finds release `number` of `app`.
pub async fn release(state: &ApiState, app: &str, number: u64) -> Result<Release> {
    objects::get::<ReleaseKind>(state, &berth_core::objects::release_name(app, number)).await
}
