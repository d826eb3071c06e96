//! The command API's OpenAPI document: the top level lives here; the operations come from the
//! handlers' `#[utoipa::path]` attributes as they are routed (see `http::documented_routes`), so
//! a route cannot exist without its operation, nor an operation without its route.

use utoipa::Modify;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    version = "3.1.0",
    info(
        title = "Podium command API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Hosts create and drive quizzes; players join and answer. Every accepted \
            command is an event in the log, acknowledged before the response. Every error is \
            RFC 9457 problem+json with a stable `code`."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "host", description = "Creating a quiz and driving it; needs the host token it returned."),
        (name = "player", description = "Joining a quiz and answering its questions."),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme: host and player tokens are JWTs issued by this API.
#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            // Operations name it literally: `security(("bearer" = []))`.
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`host_token` from quiz creation, or `player_token` from joining.",
                    ))
                    .build(),
            ),
        );
    }
}
