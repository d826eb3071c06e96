//! Every service, run as a real process, serves `/metrics`, `/livez` and `/readyz` on an admin
//! listener apart from its public one, and its readiness follows its dependencies: the command
//! API's the broker, the query API's Redis, the projector's both. The dashboard and alerts under
//! `deploy/observability` query only metrics the services export.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use podium_e2e::game::{Acks, answer_all, create, host, play_question};
use podium_e2e::processes::{Processes, Service};
use podium_testkit::eventually;

async fn status_is(stack: &Processes, service: Service, want: u16) -> Result<()> {
    eventually(
        &format!("{service:?} /readyz to answer {want}"),
        Duration::from_secs(60),
        || async { (stack.ready(service).await == Some(want)).then_some(()) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_reports_requests_and_health_that_follow_its_dependencies() -> Result<()> {
    let mut stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 20, 2).await?;
    play_question(&client, &game, 1, &acks).await?;
    for service in Service::ALL {
        status_is(&stack, service, 200).await?;
        let live = stack
            .http
            .get(format!("{}/livez", stack.admin_url(service)))
            .send()
            .await?;
        ensure!(
            live.status() == 200,
            "{service:?} /livez: {}",
            live.status()
        );
    }

    // Requests are counted by route template and status, errors by their problem code.
    let answers = r#"route="/v1/quizzes/{quiz_id}/answers",status="201""#;
    let counted = stack
        .metric(Service::CommandApi, "podium_http_requests_total", answers)
        .await?;
    ensure!(
        counted >= 20.0,
        "the command API counted {counted} accepted answers, not 20"
    );
    let unknown = format!("{}/v1/quizzes/no-such-quiz", stack.query_url());
    let response = stack.http.get(&unknown).send().await?;
    ensure!(response.status() == 404);
    let not_found = r#"service="query-api",status="404",code="quiz_not_found""#;
    ensure!(
        stack
            .metric(Service::QueryApi, "podium_http_requests_total", not_found)
            .await?
            >= 1.0,
        "the query API did not count the 404 by its code"
    );
    ensure!(
        stack
            .metric(
                Service::CommandApi,
                "podium_command_append_seconds_count",
                ""
            )
            .await?
            >= 20.0,
        "the command API did not time its appends"
    );
    // Metrics are not on the public listeners.
    for url in [stack.command_url(), stack.query_url()] {
        let public = stack.http.get(format!("{url}/metrics")).send().await?;
        ensure!(public.status() == 404, "{url}/metrics: {}", public.status());
    }

    // Redis away: the query API and the projector say so; the command API does not need it.
    stack.redis.stop().await?;
    status_is(&stack, Service::QueryApi, 503).await?;
    status_is(&stack, Service::Projector, 503).await?;
    ensure!(stack.ready(Service::CommandApi).await == Some(200));
    stack.redis.start_again().await?;
    status_is(&stack, Service::QueryApi, 200).await?;
    status_is(&stack, Service::Projector, 200).await?;

    // The broker away while players answer: the command API is not ready until appends
    // succeed again.
    host(&client, &game, "questions/2/start").await?;
    stack.broker.kill().await?;
    let answering = answer_all(&client, &game, 2, &acks);
    let outage = async {
        status_is(&stack, Service::CommandApi, 503).await?;
        stack.broker.restart().await?;
        anyhow::Ok(())
    };
    let (answered, outage) = tokio::join!(answering, outage);
    outage?;
    answered?;
    status_is(&stack, Service::CommandApi, 200).await?;

    // A dashboard watching, so the stream gauges exist too.
    let stream = stack
        .http
        .get(format!(
            "{}/v1/quizzes/{}/events",
            stack.query_url(),
            game.quiz_id
        ))
        .send()
        .await?;
    ensure!(
        stream.status() == 200,
        "the quiz stream: {}",
        stream.status()
    );
    every_metric_the_dashboard_and_alerts_query_is_exported(&stack).await?;
    drop(stream);
    Ok(())
}

/// The metric names `deploy/observability` queries: every `podium_…` token, a histogram's
/// `_bucket`, `_sum` and `_count` series standing for the histogram.
fn queried_metrics() -> Result<BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability");
    let mut names = BTreeSet::new();
    for file in ["grafana-dashboard.json", "alerts.yaml"] {
        let text = std::fs::read_to_string(dir.join(file))?;
        let mut rest = text.as_str();
        while let Some(at) = rest.find("podium_") {
            let token: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + token.len()..];
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(&token);
            let _ = names.insert(name.to_owned());
        }
    }
    ensure!(
        names.len() >= 10,
        "only {} metrics found in deploy/observability",
        names.len()
    );
    Ok(names)
}

async fn every_metric_the_dashboard_and_alerts_query_is_exported(stack: &Processes) -> Result<()> {
    let mut exported = BTreeSet::new();
    for service in Service::ALL {
        let text = stack
            .http
            .get(format!("{}/metrics", stack.admin_url(service)))
            .send()
            .await?
            .text()
            .await?;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map_or(name.clone(), str::to_owned);
            let _ = exported.insert(name);
        }
    }
    let missing: Vec<String> = queried_metrics()?
        .into_iter()
        .filter(|name| !exported.contains(name))
        .collect();
    ensure!(
        missing.is_empty(),
        "deploy/observability queries metrics no service exports: {missing:?}"
    );
    Ok(())
}
