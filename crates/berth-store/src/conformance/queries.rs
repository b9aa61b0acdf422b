//! The targeted queries: each against the answer the core's decision functions give over
//! every object (`governing`, `last_succeeded`, `lineage`, `Demand::of`), with failed,
//! retired and deleted objects in the way.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::{
    build::{BuildKey, reusable},
    deployment::{governing, last_succeeded},
    meta::Kind,
    objects::{
        Application, Build, BuildPhase, Deployment, DeploymentCause, DeploymentPhase, DeploymentSpec,
        Promotion, Release, ReleaseOrigin, build_name, deployment_name,
    },
    ports::{DeploymentQuery, GoverningQuery, Store, StoreError, TeamQuery, Write},
    quota::{Demand, Usage},
    repo,
};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

// === Helpers ===

/// A digest made of one repeated hex digit.
fn digest(d: char) -> String {
    format!("sha256:{}", d.to_string().repeat(64))
}

/// An application spec from JSON.
fn spec(json: Value) -> Result<berth_core::objects::ApplicationSpec, StoreError> {
    serde_json::from_value(json).map_err(|e| broken("an application spec", &e))
}

/// A test fixture that cannot be built: the suite itself is wrong.
fn broken(what: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend {
        message: format!("conformance fixture: {what}: {e}"),
    }
}

/// An application of `team` with `replicas` replicas of 100m CPU and 64Mi each.
fn application(name: &str, team: &str, replicas: u32) -> Result<Application, StoreError> {
    Ok(Application::new(
        name,
        spec(json!({
            "image": "r/web:1", "team": team, "replicas": replicas,
            "resources": {"cpu": "100m", "memory": "64Mi"},
        }))?,
    ))
}

/// Release `number` of `app` on image digest `d`, `replicas` replicas.
fn release(app: &str, number: u64, d: char, replicas: u32) -> Result<Release, StoreError> {
    Ok(Release::of(
        app,
        number,
        spec(json!({
            "image": format!("r/{app}@{}", digest(d)), "replicas": replicas,
            "resources": {"cpu": "100m", "memory": "64Mi"},
        }))?,
        ReleaseOrigin::default(),
    ))
}

/// Deployment `number` of `app` to `env` running `release`, in `phase`.
fn deployment(app: &str, env: &str, number: u64, release: u64, phase: DeploymentPhase) -> Deployment {
    let mut d = Deployment::new(
        deployment_name(app, env, number),
        DeploymentSpec {
            application: app.to_owned(),
            environment: env.to_owned(),
            release,
            number,
            cause: DeploymentCause::Deploy,
            requested_by: None,
        },
    );
    d.status.phase = phase;
    d
}

/// The same deployment, retired (its application was deleted).
fn retired(mut d: Deployment) -> Deployment {
    d.status.retired_at = Utc.timestamp_opt(1_700_000_000, 0).single();
    d
}

/// A create of a typed object.
fn create<K: Kind>(object: &berth_core::meta::Resource<K>) -> Result<Write, StoreError> {
    repo::create(object).map_err(|e| broken("a create", &e))
}

/// Commits creates of `objects` in one commit.
async fn commit(store: &dyn Store, writes: Vec<Write>) -> Result<(), StoreError> {
    store.commit(writes, vec![]).await.map(|_| ())
}

/// Decodes a stored document.
fn typed<K: Kind>(document: &Value) -> Result<berth_core::meta::Resource<K>, StoreError> {
    serde_json::from_value(document.clone()).map_err(|e| broken("a stored document", &e))
}

/// `metadata.name` of a document.
fn name(document: &Value) -> &str {
    document["metadata"]["name"].as_str().unwrap_or("<no name>")
}

/// Names of documents.
fn names(documents: &[Value]) -> Vec<&str> {
    documents.iter().map(name).collect()
}

/// Every deployment stored, typed.
async fn all_deployments(store: &dyn Store) -> Result<Vec<Deployment>, StoreError> {
    repo::list_all(store, None)
        .await
        .map_err(|e| broken("listing deployments", &e))
}

/// Writes a realistic history: `web` in qa and production, `api` in qa, with failed,
/// superseded, retired deployments and another application whose name starts alike.
async fn history(store: &dyn Store) -> Result<(), StoreError> {
    use DeploymentPhase::{Failed, Pending, Progressing, Succeeded, Superseded};
    let mut writes = Vec::new();
    for (app, n) in [("web", 4), ("api", 3), ("webx", 1)] {
        for i in 1..=n {
            writes.push(create(&release(app, i, char::from(b'0' + i as u8), 2)?)?);
        }
    }
    for d in [
        deployment("web", "qa", 1, 1, Succeeded),
        deployment("web", "qa", 2, 2, Succeeded),
        deployment("web", "qa", 3, 3, Failed),
        deployment("web", "production", 1, 1, Succeeded),
        deployment("web", "production", 2, 2, Superseded),
        deployment("web", "production", 3, 4, Failed),
        deployment("api", "qa", 1, 1, Succeeded),
        deployment("api", "qa", 2, 2, Progressing),
        retired(deployment("api", "production", 1, 1, Succeeded)),
        deployment("webx", "qa", 1, 1, Pending),
    ] {
        writes.push(create(&d)?);
    }
    commit(store, writes).await
}

/// Checks governing and last succeeded of every key against the core's decision over
/// every deployment.
async fn agrees_with_core(store: &dyn Store, keys: &[(&str, &str)]) -> Result<(), StoreError> {
    let all = all_deployments(store).await?;
    for (app, env) in keys {
        let of_key: Vec<Deployment> = all
            .iter()
            .filter(|d| d.spec.application == *app && d.spec.environment == *env)
            .cloned()
            .collect();
        let expected = governing(&of_key).map(|d| d.metadata.name.clone());
        let actual = store.governing_deployment(app, env).await?;
        assert_eq!(
            actual.as_ref().map(|d| name(d).to_owned()),
            expected,
            "governing deployment of {app} in {env}"
        );
        let expected = last_succeeded(&of_key).map(|d| d.metadata.name.clone());
        let actual = store.last_succeeded_deployment(app, env).await?;
        assert_eq!(
            actual.as_ref().map(|d| name(d).to_owned()),
            expected,
            "last succeeded deployment of {app} in {env}"
        );
    }
    Ok(())
}

/// Every governing deployment, read page by page with pages of `limit`.
async fn every_governing(
    store: &dyn Store,
    application: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut query = GoverningQuery {
        application: application.map(str::to_owned),
        after: None,
        limit,
    };
    let mut out = Vec::new();
    loop {
        let page = store.governing_deployments(&query).await?;
        assert!(
            page.items.len() <= limit as usize,
            "a page holds at most its limit"
        );
        out.extend(page.items.iter().map(|d| name(d).to_owned()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}

const KEYS: [(&str, &str); 6] = [
    ("web", "qa"),
    ("web", "production"),
    ("api", "qa"),
    ("api", "production"),
    ("webx", "qa"),
    ("nothing", "qa"),
];

// === Deployments ===

/// The governing deployment is the newest that neither failed nor was retired (a
/// superseded one governs when everything after it failed); the last succeeded one the
/// newest Succeeded, not retired. Both follow phase changes and retirement.
pub async fn governing_and_last_succeeded(store: &dyn Store) -> Result<(), StoreError> {
    history(store).await?;
    agrees_with_core(store, &KEYS).await?;
    assert_eq!(
        store
            .governing_deployment("web", "production")
            .await?
            .as_ref()
            .map(name),
        Some("web-production-2"),
        "a superseded deployment governs when the newer one failed"
    );
    assert_eq!(
        store.governing_deployment("api", "production").await?,
        None,
        "a retired deployment governs nothing"
    );

    // web-qa-4 starts: it governs at once; it fails: web-qa-2 governs again.
    let d4 = deployment("web", "qa", 4, 4, DeploymentPhase::Pending);
    commit(store, vec![create(&d4)?]).await?;
    agrees_with_core(store, &KEYS).await?;
    assert_eq!(
        store.governing_deployment("web", "qa").await?.as_ref().map(name),
        Some("web-qa-4")
    );
    let mut d4: Deployment = typed(&store.get("Deployment", "web-qa-4").await?.unwrap_or_default())?;
    d4.status.phase = DeploymentPhase::Failed;
    commit(
        store,
        vec![repo::replace(&d4).map_err(|e| broken("a replace", &e))?],
    )
    .await?;
    agrees_with_core(store, &KEYS).await?;
    assert_eq!(
        store.governing_deployment("web", "qa").await?.as_ref().map(name),
        Some("web-qa-2")
    );

    // Deleting web retires its deployments: nothing governs, nothing counts as succeeded.
    let mut writes = Vec::new();
    for d in all_deployments(store).await? {
        if d.spec.application == "web" {
            writes.push(repo::replace(&retired(d)).map_err(|e| broken("a replace", &e))?);
        }
    }
    commit(store, writes).await?;
    agrees_with_core(store, &KEYS).await?;
    assert_eq!(store.governing_deployment("web", "qa").await?, None);
    assert_eq!(store.last_succeeded_deployment("web", "qa").await?, None);
    Ok(())
}

/// Deployments of one application in one environment come newest first, a page at a
/// time, failed and retired ones included, other environments and applications not.
pub async fn deployments_newest_first(store: &dyn Store) -> Result<(), StoreError> {
    history(store).await?;
    let mut query = DeploymentQuery {
        application: "web".to_owned(),
        environment: "production".to_owned(),
        before: None,
        limit: 2,
    };
    let first = store.deployments(&query).await?;
    assert_eq!(names(&first.items), ["web-production-3", "web-production-2"]);
    assert_eq!(
        first.next,
        Some(2),
        "the cursor is the number of the page's last deployment"
    );
    query.before = first.next;
    let second = store.deployments(&query).await?;
    assert_eq!(names(&second.items), ["web-production-1"]);
    assert_eq!(second.next, None);

    query.environment = "qa".to_owned();
    query.before = None;
    query.limit = 100;
    assert_eq!(
        names(&store.deployments(&query).await?.items),
        ["web-qa-3", "web-qa-2", "web-qa-1"]
    );
    query.application = "api".to_owned();
    query.environment = "production".to_owned();
    assert_eq!(
        names(&store.deployments(&query).await?.items),
        ["api-production-1"],
        "retired deployments stay as history"
    );
    query.application = "nothing".to_owned();
    assert_eq!(store.deployments(&query).await?.items, Vec::<Value>::new());
    Ok(())
}

/// Every governing deployment, one per key, page by page (whatever the page size), in
/// creation order; for one application only its own.
pub async fn governing_deployments_paged(store: &dyn Store) -> Result<(), StoreError> {
    history(store).await?;
    let expected = ["web-qa-2", "web-production-2", "api-qa-2", "webx-qa-1"];
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            every_governing(store, None, limit).await?,
            expected,
            "pages of {limit}"
        );
    }
    assert_eq!(
        every_governing(store, Some("web"), 1).await?,
        ["web-qa-2", "web-production-2"]
    );
    assert_eq!(
        every_governing(store, Some("nothing"), 10).await?,
        Vec::<String>::new()
    );

    // A newer deployment replaces the governing one of its key; a failed one does not.
    commit(
        store,
        vec![
            create(&deployment("web", "qa", 4, 4, DeploymentPhase::Pending))?,
            create(&deployment("api", "qa", 3, 3, DeploymentPhase::Failed))?,
        ],
    )
    .await?;
    assert_eq!(
        every_governing(store, None, 2).await?,
        ["web-production-2", "api-qa-2", "webx-qa-1", "web-qa-4"]
    );
    Ok(())
}

/// Governing deployments counted by phase: the phases of what the core decides governs
/// each key, absent phases left out, a deployment without a recorded phase `Pending`,
/// and a change of phase counted at once.
pub async fn governing_deployments_by_phase(store: &dyn Store) -> Result<(), StoreError> {
    use DeploymentPhase::{Pending, Progressing, Succeeded, Superseded};
    assert_eq!(store.governing_deployments_by_phase().await?, BTreeMap::new());
    history(store).await?;
    let counts = store.governing_deployments_by_phase().await?;
    assert_eq!(counts, core_counts(store).await?, "as the core decides");
    assert_eq!(
        counts,
        BTreeMap::from([(Pending, 1), (Progressing, 1), (Succeeded, 1), (Superseded, 1)])
    );

    // A newer deployment takes its key's count to its phase; a failed one does not; one
    // whose document has no status yet is pending.
    let unrecorded = json!({
        "apiVersion": "berth.dev/v1",
        "kind": "Deployment",
        "metadata": { "name": "api-staging-1" },
        "spec": { "application": "api", "environment": "staging", "release": 1, "number": 1 },
    });
    commit(
        store,
        vec![
            create(&deployment("web", "qa", 4, 4, Pending))?,
            create(&deployment("api", "qa", 3, 3, DeploymentPhase::Failed))?,
            Write::Create {
                kind: "Deployment".to_owned(),
                name: "api-staging-1".to_owned(),
                owner: Some("api".to_owned()),
                document: unrecorded,
            },
        ],
    )
    .await?;
    assert_eq!(
        store.governing_deployments_by_phase().await?,
        BTreeMap::from([(Pending, 3), (Progressing, 1), (Superseded, 1)])
    );

    // A phase changes: counted in its new phase by the next query.
    let stored = store.get("Deployment", "web-qa-4").await?;
    let mut web: Deployment = typed(stored.as_ref().unwrap_or(&Value::Null))?;
    web.status.phase = Succeeded;
    commit(
        store,
        vec![repo::replace(&web).map_err(|e| broken("a replace", &e))?],
    )
    .await?;
    let counts = store.governing_deployments_by_phase().await?;
    assert_eq!(
        counts,
        BTreeMap::from([(Pending, 2), (Progressing, 1), (Succeeded, 1), (Superseded, 1)])
    );
    assert_eq!(counts, core_counts(store).await?, "as the core decides");
    Ok(())
}

/// Governing deployments by phase as the core decides over every deployment stored.
async fn core_counts(store: &dyn Store) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
    let all = all_deployments(store).await?;
    let keys: BTreeSet<(&str, &str)> = all
        .iter()
        .map(|d| (d.spec.application.as_str(), d.spec.environment.as_str()))
        .collect();
    let mut counts = BTreeMap::new();
    for (app, env) in keys {
        let of_key: Vec<Deployment> = all
            .iter()
            .filter(|d| d.spec.application == app && d.spec.environment == env)
            .cloned()
            .collect();
        if let Some(d) = governing(&of_key) {
            *counts.entry(d.status.phase).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Deployments of given releases of one application, in any environment and phase.
pub async fn deployments_of_releases(store: &dyn Store) -> Result<(), StoreError> {
    history(store).await?;
    let found = store.deployments_of_releases("web", &[1, 4]).await?;
    assert_eq!(
        names(&found),
        ["web-qa-1", "web-production-1", "web-production-3"]
    );
    assert_eq!(
        store.deployments_of_releases("web", &[]).await?,
        Vec::<Value>::new()
    );
    assert_eq!(
        names(&store.deployments_of_releases("api", &[1]).await?),
        ["api-qa-1", "api-production-1"],
        "retired deployments are history too"
    );
    assert_eq!(
        store.deployments_of_releases("web", &[9]).await?,
        Vec::<Value>::new()
    );
    Ok(())
}

// === Releases ===

/// The newest release, the newest a build made (not a promotion of it), releases by
/// digest and by template hash (computed for releases that did not record it), newest
/// first.
pub async fn release_queries(store: &dyn Store) -> Result<(), StoreError> {
    assert_eq!(store.newest_release("web").await?, None);
    assert_eq!(store.newest_built_release("web").await?, None);
    let built = |mut r: Release| {
        r.spec.origin.build = Some(format!("web-build-{}", r.spec.number));
        r
    };
    let r1 = built(release("web", 1, 'a', 1)?);
    let r2 = release("web", 2, 'a', 3)?; // a config change on the built image: same template
    let mut r3 = built(release("web", 3, 'b', 1)?);
    let mut r4 = r3.clone();
    r4.metadata.name = "web-4".to_owned();
    r4.spec.number = 4;
    r4.spec.origin.promotion = Some(Promotion {
        from_environment: "qa".to_owned(),
        from_release: 3,
        to_environment: "production".to_owned(),
        promoted_by: "bob".to_owned(),
        promoted_at: Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default(),
    });
    r3.spec.template.command = Some(vec!["serve".to_owned()]);
    r3.spec.template_hash = Some(r3.template_hash());
    let r4_hash = r4.template_hash();
    // A release an older Berth made: no templateHash recorded.
    let mut legacy = create(&release("web", 5, 'a', 7)?)?;
    if let Write::Create { document, .. } = &mut legacy
        && let Some(spec) = document["spec"].as_object_mut()
    {
        spec.remove("templateHash");
    }
    let other = release("webx", 1, 'a', 1)?;
    commit(
        store,
        vec![
            create(&r1)?,
            create(&r2)?,
            create(&r3)?,
            create(&r4)?,
            legacy,
            create(&other)?,
        ],
    )
    .await?;
    assert!(
        store
            .get("Release", "web-5")
            .await?
            .is_some_and(|d| d["spec"].get("templateHash").is_none()),
        "the fixture stores a release without its template hash"
    );

    assert_eq!(
        store.newest_release("web").await?.as_ref().map(name),
        Some("web-5")
    );
    assert_eq!(
        store.newest_built_release("web").await?.as_ref().map(name),
        Some("web-3"),
        "a promotion copies a build's origin but is not a build"
    );
    assert_eq!(store.newest_built_release("webx").await?, None);
    assert_eq!(
        names(&store.releases_with_digest("web", &digest('a')).await?),
        ["web-5", "web-2", "web-1"]
    );
    assert_eq!(
        names(&store.releases_with_digest("web", &digest('b')).await?),
        ["web-4", "web-3"]
    );
    assert_eq!(
        store.releases_with_digest("web", &digest('c')).await?,
        Vec::<Value>::new()
    );
    // The lineage of digest a: the newest release a build made with it.
    let with_a: Vec<Release> = store
        .releases_with_digest("web", &digest('a'))
        .await?
        .iter()
        .map(typed)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        berth_core::promotion::lineage(&digest('a'), &with_a).map(|r| r.spec.number),
        Some(1)
    );

    assert_eq!(
        names(&store.releases_with_template("web", &r1.template_hash()).await?),
        ["web-5", "web-2", "web-1"],
        "replicas are not part of the template; the legacy release's hash is computed"
    );
    assert_eq!(
        names(&store.releases_with_template("web", &r4_hash).await?),
        ["web-4"],
        "another command is another template"
    );
    assert_eq!(
        store.releases_with_template("web", "sha256:none").await?,
        Vec::<Value>::new()
    );
    Ok(())
}

// === Teams ===

/// What a team's applications run in an environment: the release of each governing
/// deployment there, for the applications whose current team it is; applications of
/// other teams, failed and retired deployments and other environments do not count.
pub async fn team_releases(store: &dyn Store) -> Result<(), StoreError> {
    use DeploymentPhase::{Failed, Succeeded};
    let mut writes = Vec::new();
    for (app, team) in [
        ("a", "pay"),
        ("b", "pay"),
        ("c", "pay"),
        ("d", "shop"),
        ("e", "pay"),
    ] {
        writes.push(create(&application(app, team, 1)?)?);
        for n in 1..=2 {
            writes.push(create(&release(app, n, 'a', u32::try_from(n).unwrap_or(1) * 2)?)?);
        }
    }
    for d in [
        deployment("a", "qa", 1, 1, Succeeded),
        deployment("a", "qa", 2, 2, Succeeded),
        deployment("b", "qa", 1, 1, Succeeded),
        deployment("b", "qa", 2, 2, Failed),             // b runs release 1
        deployment("c", "production", 1, 2, Succeeded),  // another environment
        deployment("d", "qa", 1, 2, Succeeded),          // another team
        retired(deployment("e", "qa", 1, 2, Succeeded)), // deleted before
    ] {
        writes.push(create(&d)?);
    }
    commit(store, writes).await?;

    let runs = |documents: Vec<Value>| -> Result<Vec<(String, u64)>, StoreError> {
        documents
            .iter()
            .map(|d| {
                typed::<berth_core::objects::ReleaseKind>(d).map(|r| (r.spec.application, r.spec.number))
            })
            .collect()
    };
    assert_eq!(
        runs(store.team_releases_in("pay", "qa").await?)?,
        [("a".to_owned(), 2), ("b".to_owned(), 1)]
    );
    assert_eq!(
        runs(store.team_releases_in("pay", "production").await?)?,
        [("c".to_owned(), 2)]
    );
    assert_eq!(runs(store.team_releases_in("pay", "staging").await?)?, []);
    assert_eq!(runs(store.team_releases_in("nobody", "qa").await?)?, []);

    // The wrapper sums the demand as the quota check does, leaving out the deployed app.
    let usage = repo::team_usage(store, "pay", "qa", 3, "b")
        .await
        .map_err(|e| broken("team usage", &e))?;
    let mut expected = Usage::default();
    expected.add(&Demand::of(&release("a", 2, 'a', 4)?.spec.template, "qa", 3));
    assert_eq!(usage, expected);
    assert_eq!((usage.replicas, usage.cpu_millis), (12, 1200));

    // d moves to team pay: its runs count there now, no longer for shop.
    let mut d: Application = typed(&store.get("Application", "d").await?.unwrap_or_default())?;
    d.spec.team = "pay".to_owned();
    commit(
        store,
        vec![repo::replace(&d).map_err(|e| broken("a replace", &e))?],
    )
    .await?;
    assert_eq!(
        runs(store.team_releases_in("pay", "qa").await?)?,
        [("a".to_owned(), 2), ("b".to_owned(), 1), ("d".to_owned(), 2)]
    );
    assert_eq!(runs(store.team_releases_in("shop", "qa").await?)?, []);
    // a is deleted (its deployments retired, the application gone): it uses nothing.
    let mut writes = vec![Write::Delete {
        kind: "Application".to_owned(),
        name: "a".to_owned(),
        expected_version: None,
    }];
    for d in all_deployments(store).await? {
        if d.spec.application == "a" {
            writes.push(repo::replace(&retired(d)).map_err(|e| broken("a replace", &e))?);
        }
    }
    commit(store, writes).await?;
    assert_eq!(
        runs(store.team_releases_in("pay", "qa").await?)?,
        [("b".to_owned(), 1), ("d".to_owned(), 2)]
    );
    Ok(())
}

/// Applications of a team, in creation order, page by page.
pub async fn team_applications_paged(store: &dyn Store) -> Result<(), StoreError> {
    let mut writes = Vec::new();
    for i in 0..7 {
        let team = if i % 2 == 0 { "pay" } else { "shop" };
        writes.push(create(&application(&format!("app{i}"), team, 1)?)?);
    }
    commit(store, writes).await?;
    let mut query = TeamQuery {
        team: "pay".to_owned(),
        after: None,
        limit: 3,
    };
    let first = store.team_applications(&query).await?;
    assert_eq!(names(&first.items), ["app0", "app2", "app4"]);
    assert!(first.next.is_some());
    query.after = first.next;
    let second = store.team_applications(&query).await?;
    assert_eq!(names(&second.items), ["app6"]);
    assert_eq!(second.next, None);
    query.team = "nobody".to_owned();
    query.after = None;
    assert_eq!(store.team_applications(&query).await?.items, Vec::<Value>::new());
    Ok(())
}

// === Numbers ===

/// Next numbers count from 1 per application (per application and environment for
/// deployments), follow what is stored, skip nothing a failed commit tried, and never
/// hand out a number twice, even after the object that had it was deleted.
pub async fn next_numbers(store: &dyn Store) -> Result<(), StoreError> {
    assert_eq!(store.next_release_number("web").await?, 1);
    assert_eq!(store.next_build_number("web").await?, 1);
    assert_eq!(store.next_deployment_number("web", "qa").await?, 1);
    history(store).await?;
    assert_eq!(store.next_release_number("web").await?, 5);
    assert_eq!(store.next_release_number("webx").await?, 2);
    assert_eq!(store.next_release_number("we").await?, 1);
    assert_eq!(store.next_deployment_number("web", "qa").await?, 4);
    assert_eq!(store.next_deployment_number("web", "production").await?, 4);
    assert_eq!(
        store.next_deployment_number("api", "production").await?,
        2,
        "retired count"
    );
    assert_eq!(store.next_deployment_number("web", "staging").await?, 1);
    assert_eq!(
        store.next_build_number("web").await?,
        1,
        "releases do not number builds"
    );

    // A commit that fails takes nothing.
    let failed = store
        .commit(
            vec![
                create(&release("web", 5, 'e', 1)?)?,
                create(&release("web", 1, 'e', 1)?)?, // exists
            ],
            vec![],
        )
        .await;
    assert!(
        matches!(failed, Err(StoreError::AlreadyExists { .. })),
        "{failed:?}"
    );
    assert_eq!(store.next_release_number("web").await?, 5);

    // Builds.
    let build: berth_core::objects::Build = serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1", "kind": "Build", "metadata": {"name": "web-build-7"},
        "spec": {"application": "web", "number": 7, "builder": {"dockerfile": {}},
                 "builderHash": "h", "image": "r/web"},
    }))
    .map_err(|e| broken("a build", &e))?;
    commit(store, vec![create(&build)?]).await?;
    assert_eq!(store.next_build_number("web").await?, 8);

    // Deleting the newest objects (and the application) does not give their numbers out
    // again.
    let delete = |kind: &str, name: &str| Write::Delete {
        kind: kind.to_owned(),
        name: name.to_owned(),
        expected_version: None,
    };
    commit(
        store,
        vec![
            delete("Release", "web-4"),
            delete("Deployment", "web-qa-3"),
            delete("Build", "web-build-7"),
        ],
    )
    .await?;
    assert_eq!(store.next_release_number("web").await?, 5);
    assert_eq!(store.next_deployment_number("web", "qa").await?, 4);
    assert_eq!(store.next_build_number("web").await?, 8);
    commit(store, vec![create(&release("web", 5, 'e', 1)?)?]).await?;
    assert_eq!(store.next_release_number("web").await?, 6);

    // The numbers are those of what is stored: the set of names agrees.
    let stored: BTreeSet<String> = repo::list_all::<berth_core::objects::ReleaseKind>(store, Some("web"))
        .await
        .map_err(|e| broken("listing releases", &e))?
        .into_iter()
        .map(|r| r.metadata.name)
        .collect();
    assert_eq!(
        stored,
        ["web-1", "web-2", "web-3", "web-5"].map(str::to_owned).into()
    );
    Ok(())
}

// === Builds ===

/// A build of `app` numbered `number` of `revision` (a commit, or for the image builder
/// the digest it resolved) with builder hash `hash`, in `phase`.
fn build(
    app: &str,
    number: u64,
    revision: &str,
    hash: &str,
    image_builder: bool,
    phase: BuildPhase,
) -> Result<Build, StoreError> {
    let builder = if image_builder {
        json!("image")
    } else {
        json!({"dockerfile": {}})
    };
    let mut b: Build = serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1", "kind": "Build", "metadata": {"name": build_name(app, number)},
        "spec": {"application": app, "number": number, "builder": builder, "builderHash": hash,
                 "image": format!("r/{app}")},
    }))
    .map_err(|e| broken("a build", &e))?;
    if image_builder {
        b.status.digest = Some(revision.to_owned());
    } else {
        b.spec.commit = Some(revision.to_owned());
    }
    b.status.phase = phase;
    Ok(b)
}

/// The build that stands for a key is the newest of that revision and builder hash
/// that did not fail (as the core's `reusable` decides); unfinished builds come in
/// creation order, page by page, and leave once they end.
pub async fn build_queries(store: &dyn Store) -> Result<(), StoreError> {
    use BuildPhase::{Failed, Pending, Running, Succeeded};
    let d1 = digest('d');
    let builds = [
        build("web", 1, "c1", "h", false, Succeeded)?,
        build("web", 2, "c1", "h", false, Failed)?,
        build("web", 3, "c2", "h", false, Running)?,
        build("web", 4, &d1, "h", true, Pending)?,
        build("web", 5, "c1", "other", false, Succeeded)?,
        build("webx", 1, "c1", "h", false, Running)?,
    ];
    commit(store, builds.iter().map(create).collect::<Result<_, _>>()?).await?;
    let key = |revision: &str, hash: &str| BuildKey {
        revision: revision.to_owned(),
        builder_hash: hash.to_owned(),
    };
    let of_web: Vec<Build> = builds
        .iter()
        .filter(|b| b.spec.application == "web")
        .cloned()
        .collect();
    for (revision, hash, expected) in [
        ("c1", "h", Some("web-build-1")),
        ("c1", "other", Some("web-build-5")),
        ("c2", "h", Some("web-build-3")),
        (d1.as_str(), "h", Some("web-build-4")),
        ("c3", "h", None),
    ] {
        let found = store.reusable_build("web", revision, hash).await?;
        assert_eq!(found.as_ref().map(name), expected, "build of {revision} {hash}");
        assert_eq!(
            reusable(&of_web, &key(revision, hash)).map(|b| b.metadata.name.as_str()),
            expected,
            "the core agrees for {revision} {hash}"
        );
    }

    let mut after = None;
    let mut unfinished = Vec::new();
    loop {
        let page = store.unfinished_builds(after, 1).await?;
        unfinished.extend(page.items.iter().map(|b| name(b).to_owned()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(unfinished, ["web-build-3", "web-build-4", "webx-build-1"]);
    let mut ended: Build = typed(&store.get("Build", "web-build-3").await?.unwrap_or_default())?;
    ended.status.phase = Failed;
    commit(
        store,
        vec![repo::replace(&ended).map_err(|e| broken("a replace", &e))?],
    )
    .await?;
    let left = repo::unfinished_builds(store)
        .await
        .map_err(|e| broken("unfinished builds", &e))?;
    assert_eq!(names_of(&left), ["web-build-4", "webx-build-1"]);
    assert_eq!(
        store.reusable_build("web", "c2", "h").await?,
        None,
        "a failed build is not reused"
    );
    Ok(())
}

/// Names of typed objects.
fn names_of<K: Kind>(objects: &[berth_core::meta::Resource<K>]) -> Vec<&str> {
    objects.iter().map(|o| o.metadata.name.as_str()).collect()
}
