//! Every use case and the admission chain, against the recording fakes of
//! berth-test-support: a real in-memory store that records reads and injects commit
//! failures, a tag table for the registry, a clock that moves only when told.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{
    Kind, Resource,
    authz::Principal,
    delivery::DeliveryError,
    objects::{
        Application, ApplicationKind, Build, BuildKind, BuildLayer, BuildPhase, BuildSpec, Builder,
        Deployment, DeploymentCause, DeploymentKind, DeploymentPhase, Environment, ReleaseKind, SecretKind,
        Team, TeamKind,
    },
    ports::{Clock, Store, StoreError, Write},
    promotion::PromotionError,
    repo,
};
use berth_service::{
    ATTEMPTS, Actor, Admission, AutoRollback, CreateRelease, DeleteApplication, Delivery, Deploy, Error,
    Policy, Promote, ReleaseFromBuild, ReleaseWanted, Rollback,
};
use berth_test_support::{FakeImages, Read, RecordingStore, SettableClock};
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const IMAGE: &str = "127.0.0.1:5000/web:1";

struct World {
    store: Arc<RecordingStore>,
    images: Arc<FakeImages>,
    clock: Arc<SettableClock>,
    delivery: Delivery,
}

fn doc<K: Kind>(value: Value) -> Resource<K> {
    Resource::<K>::from_json(&value).unwrap()
}

fn environment(name: &str, production: bool, extra: Value) -> Environment {
    let mut spec = json!({"clusters": [{"cluster": "local"}], "production": production});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    doc(
        json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": name}, "spec": spec}),
    )
}

fn team(quotas: Value) -> Team {
    doc(
        json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "pay"}, "spec": {
        "members": [{"user": "rita", "roles": ["releaser"]}, {"user": "dev", "roles": ["developer"]},
            {"user": "ada", "roles": ["developer", "releaser"]}],
        "quotas": quotas}}),
    )
}

fn application(name: &str, extra: Value) -> Application {
    let mut spec = json!({"image": IMAGE, "team": "pay"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    doc(
        json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": name}, "spec": spec}),
    )
}

/// Team `pay` (rita releases, dev develops, ada does both), environments `qa` and `production`,
/// application `web`, and a registry where web:1 and web:2 exist.
async fn world_with(production: Environment, app: Application, team: Team) -> World {
    let store = RecordingStore::new().await;
    store.put(&team).await;
    store.put(&environment("qa", false, json!({}))).await;
    store.put(&production).await;
    store.put(&app).await;
    let images = Arc::new(
        FakeImages::default()
            .with(IMAGE, D1)
            .with("127.0.0.1:5000/web:2", D2),
    );
    let clock = Arc::new(SettableClock::default());
    let delivery = Delivery::new(store.clone(), images.clone(), clock.clone());
    store.forget_reads();
    World {
        store,
        images,
        clock,
        delivery,
    }
}

async fn world() -> World {
    world_with(
        environment("production", true, json!({})),
        application("web", json!({})),
        team(json!({})),
    )
    .await
}

impl World {
    async fn user(&self, name: &str) -> Actor {
        let team = self.store.peek::<TeamKind>("pay").await.unwrap();
        Actor::User(Principal::new(name, false, &[team]))
    }

    async fn deploy(&self, env: &str, release: ReleaseWanted) -> Result<Deployment, Error> {
        self.delivery
            .deploy(Deploy {
                actor: self.user("rita").await,
                application: "web".into(),
                environment: env.into(),
                release,
            })
            .await
    }

    /// Marks deployment `name` as `phase`, as the reconciler would.
    async fn set_phase(&self, name: &str, phase: DeploymentPhase) {
        let mut d = self.store.peek::<DeploymentKind>(name).await.unwrap();
        d.status.phase = phase;
        self.store
            .commit(vec![repo::replace(&d).unwrap()], Vec::new())
            .await
            .unwrap();
    }

    async fn deployments(&self) -> Vec<Deployment> {
        self.store.peek_all::<DeploymentKind>(Some("web")).await
    }
}

fn taken() -> StoreError {
    StoreError::AlreadyExists {
        kind: "Deployment".into(),
        name: "web-qa-1".into(),
    }
}

#[tokio::test]
async fn a_deploy_numbers_its_release_and_deployment_and_reuses_a_matching_release() {
    let w = world().await;
    let first = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    assert_eq!((first.spec.number, first.spec.release), (1, 1));
    assert_eq!(first.spec.requested_by.as_deref(), Some("rita"));
    let release = w.store.peek::<ReleaseKind>("web-1").await.unwrap();
    assert_eq!(
        release.spec.template.image,
        format!("127.0.0.1:5000/web@{D1}"),
        "pinned by digest"
    );
    let second = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    assert_eq!(
        (second.spec.number, second.spec.release),
        (2, 1),
        "same spec, same release"
    );
    assert_eq!(second.status.previous_release, Some(1));
    let other = w
        .deploy("qa", ReleaseWanted::Image("127.0.0.1:5000/web:2".into()))
        .await
        .unwrap();
    assert_eq!((other.spec.number, other.spec.release), (3, 2));
    assert_eq!(w.images.lookups(), [IMAGE, "127.0.0.1:5000/web:2"]);
    let first_prod = w.deploy("production", ReleaseWanted::Existing(2)).await.unwrap();
    assert_eq!(first_prod.spec.number, 1, "deployments count per environment");
}

#[tokio::test]
async fn a_deploy_reads_only_what_it_needs() {
    let w = world().await;
    w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    let reads = w.store.reads();
    assert!(
        !reads.iter().any(|r| matches!(r, Read::List { owner: None, .. })),
        "a deploy without a quota lists no whole kind: {reads:?}"
    );
}

#[tokio::test]
async fn a_deploy_that_loses_a_race_decides_again() {
    let w = world().await;
    w.store.fail_next_commits([taken()]);
    let d = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    assert_eq!(d.spec.number, 1);
    assert_eq!(w.store.commits(), 2, "one lost, one won");
}

#[tokio::test]
async fn a_deploy_that_keeps_losing_is_busy_and_changes_nothing() {
    let w = world().await;
    w.store
        .fail_next_commits(std::iter::repeat_with(taken).take(ATTEMPTS));
    let e = w.deploy("qa", ReleaseWanted::Current).await.unwrap_err();
    assert!(
        matches!(e, Error::Busy { ref application } if application == "web"),
        "{e:?}"
    );
    assert_eq!(w.store.commits(), ATTEMPTS);
    assert!(w.deployments().await.is_empty());
    assert!(w.store.peek::<ReleaseKind>("web-1").await.is_none());
}

#[tokio::test]
async fn a_store_failure_is_not_retried() {
    let w = world().await;
    w.store.fail_next_commits([StoreError::Backend {
        message: "disk full".into(),
    }]);
    let e = w.deploy("qa", ReleaseWanted::Current).await.unwrap_err();
    assert!(matches!(e, Error::Store(StoreError::Backend { .. })), "{e:?}");
    assert_eq!(w.store.commits(), 1);
}

#[tokio::test]
async fn a_missing_environment_is_a_missing_reference_and_a_missing_release_a_delivery_error() {
    let w = world().await;
    let e = w.deploy("staging", ReleaseWanted::Current).await.unwrap_err();
    assert!(
        matches!(e, Error::MissingReference { ref path, .. } if path == "environment"),
        "{e:?}"
    );
    let e = w.deploy("qa", ReleaseWanted::Existing(7)).await.unwrap_err();
    assert!(
        matches!(e, Error::Delivery(DeliveryError::NoSuchRelease { number: 7, .. })),
        "{e:?}"
    );
    let e = w
        .deploy("qa", ReleaseWanted::Image("127.0.0.1:5000/web:9".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Resolve(_)), "{e:?}");
}

#[tokio::test]
async fn authorization_is_decided_for_exactly_the_environment_written() {
    let w = world().await;
    let dev = w.user("dev").await;
    let to = |env: &str| Deploy {
        actor: dev.clone(),
        application: "web".into(),
        environment: env.into(),
        release: ReleaseWanted::Current,
    };
    w.delivery.deploy(to("qa")).await.unwrap();
    let e = w.delivery.deploy(to("production")).await.unwrap_err();
    let Error::Forbidden(denied) = e else {
        panic!("{e:?}")
    };
    assert_eq!(denied.permission.name(), "deploy.production");
    assert_eq!(w.deployments().await.len(), 1, "the refused deploy wrote nothing");
}

#[tokio::test]
async fn a_release_needs_its_secrets_set_for_the_environment() {
    let w = world_with(
        environment("production", true, json!({})),
        application("web", json!({"secrets": [{"name": "db", "env": "DB_PASSWORD"}]})),
        team(json!({})),
    )
    .await;
    let e = w.deploy("qa", ReleaseWanted::Current).await.unwrap_err();
    assert!(
        matches!(e, Error::MissingSecrets { ref names, .. } if names == &["db".to_owned()]),
        "{e:?}"
    );
    let [all_envs, _] = berth_core::objects::secret_candidates("web", "db", "qa");
    // Only existence counts for admission: the value's shape is the secrets module's.
    w.store
        .commit(
            vec![Write::Create {
                kind: SecretKind::KIND.into(),
                name: all_envs.clone(),
                owner: Some("web".into()),
                document: json!({"metadata": {"name": all_envs}}),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    w.deploy("qa", ReleaseWanted::Current).await.unwrap();
}

#[tokio::test]
async fn a_release_must_fit_the_team_quota() {
    let w = world_with(
        environment("production", true, json!({})),
        application("web", json!({"replicas": 3})),
        team(json!({"qa": {"replicas": 2}})),
    )
    .await;
    let e = w.deploy("qa", ReleaseWanted::Current).await.unwrap_err();
    assert!(matches!(e, Error::Quota(_)), "{e:?}");
    assert!(w.deployments().await.is_empty());
    assert!(
        !w.store.listed_whole(ApplicationKind::KIND),
        "the team's usage is one query, not a list of every application: {:?}",
        w.store.reads()
    );
}

#[tokio::test]
async fn the_quota_counts_what_the_team_s_other_applications_run() {
    let w = world_with(
        environment("production", true, json!({})),
        application("web", json!({"replicas": 2})),
        team(json!({"qa": {"replicas": 3}})),
    )
    .await;
    w.store.put(&application("api", json!({"replicas": 2}))).await;
    w.delivery
        .deploy(Deploy {
            actor: w.user("rita").await,
            application: "api".into(),
            environment: "qa".into(),
            release: ReleaseWanted::Current,
        })
        .await
        .unwrap();
    let e = w.deploy("qa", ReleaseWanted::Current).await.unwrap_err();
    let Error::Quota(q) = e else { panic!("{e:?}") };
    assert_eq!(q.problems.len(), 1, "{q:?}");
}

#[tokio::test]
async fn production_requires_the_release_verified_in_qa() {
    let w = world_with(
        environment(
            "production",
            true,
            json!({"policies": {"requireVerifiedIn": ["qa"]}}),
        ),
        application("web", json!({})),
        team(json!({})),
    )
    .await;
    let qa = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    let e = w
        .deploy("production", ReleaseWanted::Existing(1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Promotion(PromotionError::NotVerified(_))),
        "{e:?}"
    );
    w.set_phase(qa.name(), DeploymentPhase::Succeeded).await;
    w.deploy("production", ReleaseWanted::Existing(1)).await.unwrap();
}

struct Freeze;

#[async_trait]
impl Policy for Freeze {
    fn name(&self) -> &'static str {
        "freeze"
    }

    async fn admit(&self, _: &dyn Store, a: &Admission<'_>) -> berth_service::Result<()> {
        if a.environment.spec.production {
            return Err(Error::Refused {
                policy: "freeze",
                message: "production is frozen".into(),
                hint: "wait for the freeze to end".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_added_policy_runs_after_the_built_in_ones_for_every_entry() {
    let w = world().await;
    let frozen = w.delivery.clone().with_policy(Arc::new(Freeze));
    let rita = w.user("rita").await;
    frozen
        .deploy(Deploy {
            actor: rita.clone(),
            application: "web".into(),
            environment: "qa".into(),
            release: ReleaseWanted::Current,
        })
        .await
        .unwrap();
    let e = frozen
        .promote(Promote {
            actor: rita,
            application: "web".into(),
            from: "qa".into(),
            to: "production".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { policy: "freeze", .. }), "{e:?}");
}

#[tokio::test]
async fn a_rollback_goes_to_the_newest_other_release_that_succeeded() {
    let w = world().await;
    let one = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    w.set_phase(one.name(), DeploymentPhase::Succeeded).await;
    let two = w
        .deploy("qa", ReleaseWanted::Image("127.0.0.1:5000/web:2".into()))
        .await
        .unwrap();
    w.set_phase(two.name(), DeploymentPhase::Succeeded).await;
    let back = w
        .delivery
        .rollback(Rollback {
            actor: w.user("rita").await,
            application: "web".into(),
            environment: "qa".into(),
            to: None,
        })
        .await
        .unwrap();
    assert_eq!((back.spec.number, back.spec.release), (3, 1));
    assert_eq!(back.spec.cause, DeploymentCause::Rollback { from_release: 2 });
    let e = w
        .delivery
        .rollback(Rollback {
            actor: w.user("rita").await,
            application: "web".into(),
            environment: "production".into(),
            to: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Delivery(DeliveryError::NothingDeployed { .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_promotion_copies_the_running_release_at_the_clock_time() {
    let w = world().await;
    let qa = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    w.set_phase(qa.name(), DeploymentPhase::Succeeded).await;
    w.clock.advance(chrono::Duration::hours(3));
    let d = w
        .delivery
        .promote(Promote {
            actor: w.user("rita").await,
            application: "web".into(),
            from: "qa".into(),
            to: "production".into(),
        })
        .await
        .unwrap();
    assert_eq!((d.spec.environment.as_str(), d.spec.release), ("production", 2));
    let copy = w.store.peek::<ReleaseKind>("web-2").await.unwrap();
    let source = w.store.peek::<ReleaseKind>("web-1").await.unwrap();
    assert_eq!(
        copy.spec.template, source.spec.template,
        "a copy, never a rebuild"
    );
    let p = copy.spec.origin.promotion.unwrap();
    assert_eq!((p.from_release, p.promoted_by.as_str()), (1, "rita"));
    assert_eq!(p.promoted_at, w.clock.now());
    assert_eq!(w.images.lookups().len(), 1, "a promotion resolves nothing");
}

/// Release 1 succeeded in qa, then release 2's deployment failed; returns it as failed.
async fn failed_second_release(w: &World) -> Deployment {
    let one = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    w.set_phase(one.name(), DeploymentPhase::Succeeded).await;
    let mut two = w
        .deploy("qa", ReleaseWanted::Image("127.0.0.1:5000/web:2".into()))
        .await
        .unwrap();
    two.status.phase = DeploymentPhase::Failed;
    two
}

#[tokio::test]
async fn an_automatic_rollback_goes_back_to_the_last_success_in_the_same_commit() {
    let w = world().await;
    let failed = failed_second_release(&w).await;
    let commits = w.store.commits();
    w.store.forget_reads();
    let back = w
        .delivery
        .auto_rollback(AutoRollback {
            failed: failed.clone(),
            events: Vec::new(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.store.commits(), commits + 1, "one commit");
    let reads = w.store.reads();
    assert!(
        !reads.iter().any(|r| matches!(r, Read::List { .. })),
        "targeted queries only: {reads:?}"
    );
    assert_eq!((back.spec.number, back.spec.release), (3, 1));
    assert_eq!(
        back.spec.cause,
        DeploymentCause::AutoRollback {
            failed_deployment: failed.metadata.name.clone()
        }
    );
    assert_eq!(back.spec.requested_by.as_deref(), Some("berth"));
    let stored = w.store.peek::<DeploymentKind>(failed.name()).await.unwrap();
    assert_eq!(stored.status.phase, DeploymentPhase::Failed);
}

#[tokio::test]
async fn an_automatic_rollback_retries_a_taken_number_but_not_a_changed_deployment() {
    let w = world().await;
    let failed = failed_second_release(&w).await;
    w.store.fail_next_commits([taken()]);
    let back = w
        .delivery
        .auto_rollback(AutoRollback {
            failed: failed.clone(),
            events: Vec::new(),
        })
        .await
        .unwrap();
    assert!(back.is_some());
    // The failed deployment as read is now stale: the caller decides again.
    let e = w
        .delivery
        .auto_rollback(AutoRollback {
            failed,
            events: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Store(StoreError::Conflict { .. })), "{e:?}");
}

#[tokio::test]
async fn without_auto_rollback_or_an_earlier_success_only_the_failure_is_recorded() {
    let w = world_with(
        environment("production", true, json!({"rollout": {"autoRollback": false}})),
        application("web", json!({})),
        team(json!({})),
    )
    .await;
    let mut d = w.deploy("production", ReleaseWanted::Current).await.unwrap();
    d.status.phase = DeploymentPhase::Failed;
    let back = w
        .delivery
        .auto_rollback(AutoRollback {
            failed: d.clone(),
            events: Vec::new(),
        })
        .await
        .unwrap();
    assert!(back.is_none(), "the environment does not roll back automatically");
    let mut first = w.deploy("qa", ReleaseWanted::Current).await.unwrap();
    first.status.phase = DeploymentPhase::Failed;
    let back = w
        .delivery
        .auto_rollback(AutoRollback {
            failed: first.clone(),
            events: Vec::new(),
        })
        .await
        .unwrap();
    assert!(back.is_none(), "nothing succeeded there before");
    let stored = w.store.peek::<DeploymentKind>(first.name()).await.unwrap();
    assert_eq!(stored.status.phase, DeploymentPhase::Failed);
}

#[tokio::test]
async fn deleting_an_application_in_production_needs_force_and_keeps_history() {
    let w = world().await;
    let prod = w.deploy("production", ReleaseWanted::Current).await.unwrap();
    let w = &w;
    let delete = |force| async move {
        w.delivery
            .delete_application(DeleteApplication {
                actor: w.user("ada").await,
                application: "web".into(),
                force,
            })
            .await
    };
    let e = delete(false).await.unwrap_err();
    assert!(
        matches!(e, Error::RunsInProduction { ref production, .. } if production == &["production".to_owned()]),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("?force=true"));
    w.clock.advance(chrono::Duration::minutes(5));
    let gone = delete(true).await.unwrap();
    assert_eq!(gone.name(), "web");
    assert!(w.store.peek::<ApplicationKind>("web").await.is_none());
    assert!(
        w.store.peek::<ReleaseKind>("web-1").await.is_some(),
        "releases stay"
    );
    let retired = w.store.peek::<DeploymentKind>(prod.name()).await.unwrap();
    assert_eq!(retired.status.retired_at, Some(w.clock.now()));
}

#[tokio::test]
async fn deleting_needs_deploy_rights_where_the_application_runs() {
    let w = world().await;
    w.deploy("production", ReleaseWanted::Current).await.unwrap();
    let e = w
        .delivery
        .delete_application(DeleteApplication {
            actor: w.user("dev").await,
            application: "web".into(),
            force: true,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Forbidden(ref d) if d.permission.name() == "deploy.production"),
        "{e:?}"
    );
    assert!(w.store.peek::<ApplicationKind>("web").await.is_some());
}

#[tokio::test]
async fn create_release_numbers_after_the_highest() {
    let w = world().await;
    let make = |image: Option<&str>| CreateRelease {
        actor: Actor::Berth,
        application: "web".into(),
        image: image.map(str::to_owned),
        description: Some("why".into()),
    };
    let one = w.delivery.create_release(make(None)).await.unwrap();
    let two = w
        .delivery
        .create_release(make(Some("127.0.0.1:5000/web:2")))
        .await
        .unwrap();
    assert_eq!((one.spec.number, two.spec.number), (1, 2));
    assert_eq!(
        two.spec.origin.requested_image.as_deref(),
        Some("127.0.0.1:5000/web:2")
    );
    let e = w
        .delivery
        .create_release(CreateRelease {
            application: "nope".into(),
            ..make(None)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                kind: "Application",
                ..
            }
        ),
        "{e:?}"
    );
}

fn pending_build(number: u64) -> Build {
    Build::new(
        berth_core::objects::build_name("web", number),
        BuildSpec {
            application: "web".into(),
            number,
            git: None,
            git_ref: None,
            commit: Some("abc123".into()),
            builder: Builder::Image,
            builder_hash: "h".into(),
            image: IMAGE.into(),
            requested_by: Some("dev".into()),
        },
    )
}

#[tokio::test]
async fn a_successful_build_and_its_release_commit_together() {
    let w = world().await;
    w.delivery
        .create_release(CreateRelease {
            actor: Actor::Berth,
            application: "web".into(),
            image: None,
            description: None,
        })
        .await
        .unwrap();
    let build = pending_build(1);
    w.store.put(&build).await;
    w.store.fail_next_commits([taken()]);
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |line: &str| {
        lines.lock().unwrap().push(line.to_owned());
        lines.lock().unwrap().join("\n")
    };
    let release = w
        .delivery
        .release_from_build(ReleaseFromBuild {
            build: build.name().into(),
            digest: D2.into(),
            layers: vec![BuildLayer {
                role: "app".into(),
                digest: D2.into(),
                size: 1,
                pushed: true,
            }],
            log: &log,
        })
        .await
        .unwrap();
    assert_eq!(release.spec.number, 2, "after the existing release");
    assert_eq!(release.spec.origin.build.as_deref(), Some(build.name()));
    assert_eq!(release.spec.origin.commit.as_deref(), Some("abc123"));
    let stored = w.store.peek::<BuildKind>(build.name()).await.unwrap();
    assert_eq!(stored.status.phase, BuildPhase::Succeeded);
    assert_eq!(stored.status.release, Some(2));
    assert_eq!(stored.status.finished_at, Some(w.clock.now()));
    assert!(
        stored.status.log.contains("release 2 pins"),
        "{}",
        stored.status.log
    );
}

#[tokio::test]
async fn a_build_of_a_deleted_application_is_unreleasable() {
    let w = world().await;
    let build = pending_build(1);
    w.store.put(&build).await;
    let app = w.store.peek::<ApplicationKind>("web").await.unwrap();
    w.store
        .commit(vec![repo::delete(&app)], Vec::new())
        .await
        .unwrap();
    let e = w
        .delivery
        .release_from_build(ReleaseFromBuild {
            build: build.name().into(),
            digest: D2.into(),
            layers: Vec::new(),
            log: &|_: &str| String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unreleasable { ref message, .. } if message.contains("deleted")),
        "{e:?}"
    );
}

#[tokio::test]
async fn authorization_comes_first_in_the_chain() {
    let w = world_with(
        environment("production", true, json!({})),
        application("web", json!({"secrets": [{"name": "db", "env": "DB_PASSWORD"}]})),
        team(json!({})),
    )
    .await;
    let e = w
        .delivery
        .deploy(Deploy {
            actor: w.user("dev").await,
            application: "web".into(),
            environment: "production".into(),
            release: ReleaseWanted::Current,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Forbidden(_)),
        "refused before secrets are looked at: {e:?}"
    );
    assert!(
        !w.store
            .reads()
            .iter()
            .any(|r| matches!(r, Read::Get { kind, .. } if kind == SecretKind::KIND)),
        "{:?}",
        w.store.reads()
    );
}

#[tokio::test]
async fn berth_itself_needs_no_permission() {
    let w = world().await;
    let d = w
        .delivery
        .deploy(Deploy {
            actor: Actor::Berth,
            application: "web".into(),
            environment: "production".into(),
            release: ReleaseWanted::Current,
        })
        .await
        .unwrap();
    assert_eq!(d.spec.requested_by.as_deref(), Some("berth"));
}
