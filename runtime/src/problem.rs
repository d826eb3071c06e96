//! RFC 9457 problem details: the one shape of every error response.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem document with Podium's extension members. `code` is stable and machine-readable;
/// `detail` is for people and may change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(
    as = ProblemDetails,
    description = "RFC 9457 problem details, served as application/problem+json."
)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    /// Extension members, flattened into the document (for example `errors` or `original`).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://podium.invalid/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
            headers: Vec::new(),
        }
    }

    /// Adds an extension member; values that do not serialise are left out.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            let _ = self.extensions.insert(name.to_owned(), value);
        }
        self
    }

    #[must_use]
    pub fn header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        let _ = headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            let _ = headers.insert(name, value);
        }
        // For the request metrics, which count errors by code.
        let _ = response.extensions_mut().insert(ProblemCode(self.code));
        response
    }
}

/// The `code` of a problem response, kept in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_every_member_but_the_headers() {
        let schema =
            serde_json::to_value(<Problem as utoipa::PartialSchema>::schema()).unwrap_or_default();
        // The flattened extensions make it an `allOf` of an open object and the members.
        let parts = schema["allOf"].as_array().cloned().unwrap_or_default();
        let mut names: Vec<String> = parts
            .iter()
            .filter_map(|part| part["properties"].as_object())
            .flat_map(|properties| properties.keys().cloned())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["code", "detail", "status", "title", "type"]);
    }
}
