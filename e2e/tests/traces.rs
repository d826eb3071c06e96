//! One answer is one trace, from the command API's request through the record on the broker to
//! the projector's fold, and on to the query API's delivery of the change to a dashboard. The services run as real processes exporting OTLP/HTTP to a receiver
//! this test runs, which decodes `opentelemetry-proto` as any collector would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use podium_e2e::game::{Acks, answer_all, create, host};
use podium_e2e::processes::{Processes, Service};
use podium_testkit::eventually;
use prost::Message;

/// A span as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    /// The trace ids of the spans this one links to.
    links: Vec<Vec<u8>>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP trace receiver on a free port; returns its endpoint.
async fn receiver(spans: Spans) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let spans = spans.clone();
            async move {
                if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                    let mut spans = spans.lock().unwrap_or_else(PoisonError::into_inner);
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref()?.value.as_ref())
                            .map(|v| match v {
                                Value::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            spans.push(Received {
                                service: service.clone(),
                                name: span.name,
                                trace: span.trace_id,
                                id: span.span_id,
                                parent: span.parent_span_id,
                                links: span.links.into_iter().map(|l| l.trace_id).collect(),
                            });
                        }
                    }
                }
                ""
            }
        }),
    );
    drop(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));
    Ok(endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_is_one_trace_from_the_request_to_the_dashboard() -> Result<()> {
    let spans: Spans = Arc::default();
    let endpoint = receiver(spans.clone()).await?;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("PODIUM_LOG_FORMAT", "json".to_owned()),
        // The request spans' own debug lines, to find the trace id in the logs.
        ("RUST_LOG", "info,tower_http=debug".to_owned()),
    ];
    let mut stack = Processes::start_with(
        None,
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    )
    .await?;
    let client = stack.client();
    let game = create(&client, 3, 1).await?;
    // A dashboard watching, so the query API delivers the changes (once the quiz is folded).
    let url = format!("{}/v1/quizzes/{}/events", stack.query_url(), game.quiz_id);
    let stream = eventually(
        "the quiz stream to open",
        Duration::from_secs(30),
        || async {
            let response = stack.http.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(response)
        },
    )
    .await?;
    // The question starts, and once its change reached the dashboard, one answer comes alone,
    // so the change it makes is delivered in its own trace.
    host(&client, &game, "questions/1/start").await?;
    eventually("the start delivered", Duration::from_secs(30), || async {
        let spans = spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans
            .iter()
            .any(|s| s.service == "podium-query-api" && s.name == "deliver changes")
            .then_some(())
    })
    .await?;
    let (_, token) = &game.players[0];
    let _ = client.answer(&game.quiz_id, token, 1, 0).await?;

    // The query API's delivery of a change, descending from the projector's fold of an answer's
    // record, descending from the command API's request for that answer: one trace.
    let crossing = eventually(
        "an answer's trace from the command API through the projector to the query API",
        Duration::from_secs(60),
        || async {
            let spans = spans.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let by_id: HashMap<&[u8], &Received> =
                spans.iter().map(|s| (s.id.as_slice(), s)).collect();
            let ancestor = |from: &Received, service: &str, name: &str| -> Option<Received> {
                let mut at = by_id.get(from.parent.as_slice())?;
                for _ in 0..8 {
                    if at.service == service && at.name == name {
                        return (at.trace == from.trace).then(|| (*at).clone());
                    }
                    at = by_id.get(at.parent.as_slice())?;
                }
                None
            };
            spans
                .iter()
                .filter(|s| s.service == "podium-query-api" && s.name == "deliver changes")
                .find_map(|deliver| {
                    let fold = ancestor(deliver, "podium-projector", "fold AnswerSubmitted")?;
                    ancestor(
                        &fold,
                        "podium-command-api",
                        "POST /v1/quizzes/{quiz_id}/answers",
                    )
                })
        },
    )
    .await
    .with_context(|| {
        let spans = spans.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen: Vec<String> = spans
            .iter()
            .map(|s| {
                format!(
                    "{} / {} (parent {})",
                    s.service,
                    s.name,
                    !s.parent.is_empty()
                )
            })
            .collect();
        seen.sort();
        seen.dedup();
        format!("spans received: {seen:#?}")
    })?;
    drop(stream);
    let acks = Acks::default();
    answer_all(&client, &game, 1, &acks).await?;
    host(&client, &game, "finish").await?;
    ensure!(!crossing.trace.iter().all(|b| *b == 0), "an empty trace id");
    // The projector's batch span links to the records' traces, the answer's among them.
    eventually(
        "a batch span linked to the answer's trace",
        Duration::from_secs(30),
        || async {
            spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|s| s.name == "apply batch" && s.links.contains(&crossing.trace))
                .then_some(())
        },
    )
    .await?;
    // The JSON log lines inside the request carry its trace id.
    let trace_id: String = crossing.trace.iter().map(|b| format!("{b:02x}")).collect();
    let logs = stack.log_of(Service::CommandApi);
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&trace_id)).collect();
    ensure!(
        lines
            .iter()
            .any(|l| serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["span"]["trace_id"] == serde_json::json!(trace_id))),
        "no JSON log line of the command API carries trace {trace_id}"
    );
    // Exporting services still drain and exit cleanly, flushing their last spans.
    for service in Service::ALL {
        stack.terminate(service).await?;
    }
    Ok(())
}
