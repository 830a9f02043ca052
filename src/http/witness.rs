//! The HTTP face of `blindpass witness` (C2SP tlog-witness): `POST
//! /add-checkpoint` answers with the cosignature line, or with the status
//! the spec gives for each refusal (409 with the size held, as
//! `text/x.tlog.size`; the others as problem documents); `GET /key` serves
//! the witness's verifier key. Connections are served by the issuer's own
//! connection handler (a cap and a header read timeout). The issuer's
//! problem layer is left out: it would replace the 409's size body.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use super::problem::Problem;
use crate::protocol::api::{ProblemType, media, paths};
use crate::witness::{AddError, Witness};

/// Largest `add-checkpoint` body: a checkpoint with a few dozen signatures
/// and 63 proof lines is a few KiB.
pub const MAX_ADD_BODY_BYTES: usize = 64 * 1024;

/// Open connections at most.
const MAX_CONNECTIONS: usize = 256;

/// The witness's routes over `witness`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(paths::WITNESS_ADD_CHECKPOINT, post(add_checkpoint))
        .route(paths::WITNESS_KEY, get(key))
        .route(paths::HEALTHZ, get(|| async { "ok\n" }))
        .fallback(super::routes::not_found)
        .method_not_allowed_fallback(super::routes::method_not_allowed)
        .with_state(witness)
}

/// Serves the witness on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::accept_loop(
        listener,
        router(witness),
        MAX_CONNECTIONS,
        Duration::from_secs(10),
        || (),
        shutdown,
    )
    .await
}

async fn key(State(witness): State<Arc<Witness>>) -> Response {
    let mut response = (StatusCode::OK, format!("{}\n", witness.verifier_key())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Body) -> Response {
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_ADD_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ProblemType::PayloadTooLarge,
                "Request too large",
                format!("an add-checkpoint body is at most {MAX_ADD_BODY_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The check, an fsync and a rename: off the async workers.
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&bytes, now_s)).await;
    let result = match answer {
        Ok(result) => result,
        Err(_) => return Problem::internal().into_response(),
    };
    // A refusal may be evidence of a misbehaving log (the spec lets the
    // witness keep it): its kind goes to the log, nothing from the body.
    if let Err(e) = &result {
        tracing::info!(refusal = %e, "add-checkpoint refused");
    }
    match result {
        Ok(line) => {
            let mut response = (StatusCode::OK, line).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Err(AddError::Conflict(size)) => {
            let mut response = (StatusCode::CONFLICT, format!("{size}\n")).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media::TLOG_SIZE),
            );
            response
        }
        Err(e) => refusal(&e).into_response(),
    }
}

/// The problem document of a refusal other than a conflict.
fn refusal(error: &AddError) -> Problem {
    match error {
        AddError::BadRequest(why) => Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemType::BadRequest,
            "Bad request",
            *why,
        ),
        AddError::UnknownLog => Problem::new(
            StatusCode::NOT_FOUND,
            ProblemType::UnknownLog,
            "Unknown log",
            "this witness is not configured for the checkpoint's origin",
        ),
        AddError::BadSignature => Problem::new(
            StatusCode::FORBIDDEN,
            ProblemType::BadLogSignature,
            "Bad log signature",
            "no signature on the checkpoint verifies under the log's key",
        ),
        AddError::BadProof => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::BadConsistencyProof,
            "Bad consistency proof",
            "the proof does not show the checkpoint extends the one cosigned before",
        ),
        AddError::Conflict(_) | AddError::Store(_) => {
            tracing::error!(error = %error, "witness state failed");
            Problem::internal()
        }
    }
}
