//! The participant API (JSON over mTLS). Handlers are thin: they take the caller's
//! identity from the connection and hand off to the broker.

pub mod limits;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use renkei_crypto::consent_statement::RevocationList;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};

use crate::audit;
use crate::broker::{
    self, Hub, bounded, consents, enroll, events, grants, ingest, links, records, unreadable,
};
use crate::error::{Error, Result, retry};
use crate::registry;
use crate::server::PeerIdentity;
use renkei_protocol::{
    AckBody, Acknowledged, CosignatureBody, EnrollmentList, EventList, GrantsBody, Keys, LinksBody,
    Page, ReasonBody, ReportList, Reported, RequestList, UploadBody,
};

/// The OpenAPI document, checked in beside this module.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The caller, from the client certificate of this connection.
#[derive(Debug, Clone)]
pub struct Caller(pub ParticipantId);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        match parts.extensions.get::<PeerIdentity>() {
            Some(PeerIdentity::Participant(id)) => Ok(Caller(id.clone())),
            Some(PeerIdentity::Invalid(reason)) => Err(Error::Unauthenticated(format!(
                "client certificate: {reason}"
            ))),
            None => Err(Error::Unauthenticated(
                "a client certificate is required".into(),
            )),
        }
    }
}

/// JSON body extraction with errors in the hub's format (never axum's plain text).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge("request body is too large".into()))
            }
            Err(e) => Err(Error::bad_request(format!(
                "request body: {}",
                bounded::text(&e.body_text(), 300)
            ))),
        }
    }
}

/// Query-string extraction with errors in the hub's format.
#[derive(Debug)]
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| {
                Error::bad_request(format!("query: {}", bounded::text(&e.body_text(), 300)))
            })
    }
}

/// Path-parameter extraction with errors in the hub's format.
#[derive(Debug)]
pub struct P<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| {
                Error::bad_request(format!("path: {}", bounded::text(&e.body_text(), 300)))
            })
    }
}

/// The participant API router.
pub fn router(hub: Arc<Hub>, max_body: usize, rate: Arc<limits::RateLimiter>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/records", post(upload_records))
        .route("/v1/feed", get(feed))
        .route("/v1/records/{id}", get(read_record))
        .route("/v1/records/{id}/unreadable", post(report_unreadable))
        .route("/v1/source/unreadable", get(unreadable_reports))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}/ack", post(ack_event))
        .route("/v1/consents", post(grant_consent))
        .route("/v1/consents/{id}/revoke", post(revoke_consent))
        .route("/v1/enrollments", post(submit_enrollment))
        .route("/v1/enrollments/{id}", get(get_enrollment))
        .route("/v1/source/key-grant-requests", get(grant_requests))
        .route("/v1/source/key-grants", post(upload_grants))
        .route("/v1/source/enrollments", get(source_enrollments))
        .route("/v1/subjects/links", post(link_subjects))
        .route("/v1/source/resolve", post(resolve_pseudonym))
        .route(
            "/v1/evaluation/reports",
            post(deliver_evaluation).get(collect_evaluations),
        )
        .route(
            "/v1/source/enrollments/{id}/result",
            post(enrollment_result),
        )
        .route(
            "/v1/participants/{kind}/{id}/keys",
            get(participant_keys).put(publish_keys),
        )
        .route(
            "/v1/participants/{kind}/{id}/revocations",
            get(revocation_list).put(publish_revocation_list),
        )
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/log/checkpoint", get(log_checkpoint))
        .route("/v1/log/tile/{*path}", get(log_tile))
        .route("/v1/log/cosignature", post(log_cosignature))
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            rate,
            limits::per_participant,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::Tracked {
                listener: "participant",
                metrics: hub.metrics.clone(),
            },
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(hub)
}

type Hs = State<Arc<Hub>>;

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn upload_records(
    State(hub): Hs,
    Caller(who): Caller,
    Body(body): Body<UploadBody>,
) -> Result<Json<ingest::IngestReport>> {
    let mut batch = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.iter().enumerate() {
        let sealed = data_encoding::BASE64
            .decode(r.sealed.as_bytes())
            .map_err(|e| Error::bad_request_from(format!("records[{i}].sealed: not base64"), e))?;
        batch.push(ingest::Upload {
            sealed,
            subject: r.subject.clone(),
        });
    }
    Ok(Json(retry(|| ingest::ingest(&hub, &who, &batch)).await?))
}

async fn feed(
    State(hub): Hs,
    Caller(who): Caller,
    Q(p): Q<Page>,
) -> Result<Json<records::FeedPage>> {
    Ok(Json(
        retry(|| records::feed(&hub, &who, p.cursor.unwrap_or(0), p.limit.unwrap_or(100))).await?,
    ))
}

async fn read_record(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<String>,
) -> Result<Json<records::FeedItem>> {
    bounded::record_id(&id)?;
    Ok(Json(retry(|| records::read(&hub, &who, &id)).await?))
}

async fn report_unreadable(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<String>,
    Body(b): Body<ReasonBody>,
) -> Result<Json<Reported>> {
    bounded::record_id(&id)?;
    let new = retry(|| unreadable::report(&hub, &who, &id, &b.reason)).await?;
    Ok(Json(Reported { reported: id, new }))
}

async fn unreadable_reports(
    State(hub): Hs,
    Caller(who): Caller,
    Q(p): Q<Page>,
) -> Result<Json<ReportList>> {
    let reports = retry(|| unreadable::for_source(&hub, &who, p.limit.unwrap_or(100))).await?;
    Ok(Json(ReportList { reports }))
}

async fn list_events(
    State(hub): Hs,
    Caller(who): Caller,
    Q(p): Q<Page>,
) -> Result<Json<EventList>> {
    let events = retry(|| events::list(&hub, &who, p.limit.unwrap_or(100))).await?;
    Ok(Json(EventList { events }))
}

async fn ack_event(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<i64>,
    Body(b): Body<AckBody>,
) -> Result<Json<Acknowledged>> {
    retry(|| events::ack(&hub, &who, id, b.deleted)).await?;
    Ok(Json(Acknowledged { acknowledged: id }))
}

async fn grant_consent(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<consents::GrantBody>,
) -> Result<Json<consents::Granted>> {
    Ok(Json(consents::grant(&hub, &who, b).await?))
}

async fn revoke_consent(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<String>,
    Body(b): Body<ReasonBody>,
) -> Result<Json<renkei_consent::Consent>> {
    Ok(Json(consents::revoke(&hub, &who, &id, &b.reason).await?))
}

async fn submit_enrollment(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<enroll::SubmitBody>,
) -> Result<Json<enroll::Enrollment>> {
    Ok(Json(retry(|| enroll::submit(&hub, &who, &b)).await?))
}

async fn get_enrollment(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<String>,
) -> Result<Json<enroll::Enrollment>> {
    bounded::uuid("enrollment id", &id)?;
    Ok(Json(retry(|| enroll::get(&hub, &who, &id)).await?))
}

async fn grant_requests(
    State(hub): Hs,
    Caller(who): Caller,
    Q(p): Q<Page>,
) -> Result<Json<RequestList>> {
    let requests = retry(|| grants::pending(&hub, &who, p.limit.unwrap_or(100))).await?;
    Ok(Json(RequestList { requests }))
}

async fn upload_grants(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<GrantsBody>,
) -> Result<Json<grants::GrantReport>> {
    Ok(Json(retry(|| grants::upload(&hub, &who, &b.grants)).await?))
}

async fn source_enrollments(
    State(hub): Hs,
    Caller(who): Caller,
    Q(p): Q<Page>,
) -> Result<Json<EnrollmentList>> {
    let list = retry(|| enroll::pending(&hub, &who, p.limit.unwrap_or(100))).await?;
    Ok(Json(EnrollmentList { enrollments: list }))
}

async fn enrollment_result(
    State(hub): Hs,
    Caller(who): Caller,
    P(id): P<String>,
    Body(b): Body<enroll::EnrollmentResult>,
) -> Result<Json<enroll::Enrollment>> {
    bounded::uuid("enrollment id", &id)?;
    Ok(Json(retry(|| enroll::answer(&hub, &who, &id, &b)).await?))
}

async fn resolve_pseudonym(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<broker::resolve::ResolveBody>,
) -> Result<Json<broker::resolve::Resolved>> {
    Ok(Json(
        retry(|| broker::resolve::resolve(&hub, &who, &b)).await?,
    ))
}

async fn deliver_evaluation(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<broker::evaluation::DeliverBody>,
) -> Result<Json<broker::evaluation::Delivered>> {
    Ok(Json(
        retry(|| broker::evaluation::deliver(&hub, &who, &b)).await?,
    ))
}

/// `?after=`: where a page of evaluation reports starts.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct After {
    after: Option<String>,
}

async fn collect_evaluations(
    State(hub): Hs,
    Caller(who): Caller,
    Q(q): Q<After>,
) -> Result<Json<broker::evaluation::DeliveredList>> {
    let after = q.after.as_deref();
    Ok(Json(
        retry(|| broker::evaluation::collect(&hub, &who, after)).await?,
    ))
}

async fn link_subjects(
    State(hub): Hs,
    Caller(who): Caller,
    Body(b): Body<LinksBody>,
) -> Result<Json<links::LinkReport>> {
    Ok(Json(retry(|| links::link(&hub, &who, &b.links)).await?))
}

async fn participant_keys(
    State(hub): Hs,
    Caller(who): Caller,
    P((kind, id)): P<(String, String)>,
) -> Result<Json<Keys>> {
    let target = bounded::participant("path", &format!("{kind}:{id}"))?;
    let mut tx = hub.db.begin().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    let p = registry::get(&mut tx, &target)
        .await?
        .filter(|p| !p.suspended());
    tx.commit().await?;
    let p = p.ok_or_else(|| Error::NotFound(format!("participant `{target}` not found")))?;
    let statement = p
        .key_statement
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::internal_from("stored key statement", e))?;
    Ok(Json(Keys {
        grant_key: p.grant_pk,
        enrollment_key: p.enrollment_pk,
        statement,
    }))
}

/// `GET /v1/participants/{kind}/{id}/revocations`: the participant's newest signed
/// revocation list.
async fn revocation_list(
    State(hub): Hs,
    Caller(who): Caller,
    P((kind, id)): P<(String, String)>,
) -> Result<Json<RevocationList>> {
    let target = bounded::participant("path", &format!("{kind}:{id}"))?;
    Ok(Json(broker::revocations::get(&hub, &who, &target).await?))
}

/// `PUT /v1/participants/{kind}/{id}/revocations`: the caller's own newer list.
async fn publish_revocation_list(
    State(hub): Hs,
    Caller(who): Caller,
    P((kind, id)): P<(String, String)>,
    Body(list): Body<RevocationList>,
) -> Result<Json<serde_json::Value>> {
    if bounded::participant("path", &format!("{kind}:{id}"))? != who {
        return Err(Error::Forbidden(
            "a participant may publish only its own revocation list".into(),
        ));
    }
    retry(|| broker::revocations::publish(&hub, &who, &list, hub.now())).await?;
    Ok(Json(serde_json::json!({
        "signer": list.signer,
        "issued_at": list.issued_at,
        "revoked": list.revoked.len(),
    })))
}

/// Longest certificate (base64 DER) a key statement may carry: participant certificates
/// are about 1 KiB; the statement is copied into every key-grant request for its owner.
const MAX_STATEMENT_CERTIFICATE: usize = 8 * 1024;

async fn publish_keys(
    State(hub): Hs,
    Caller(who): Caller,
    P((kind, id)): P<(String, String)>,
    Body(k): Body<Keys>,
) -> Result<Json<Keys>> {
    if bounded::participant("path", &format!("{kind}:{id}"))? != who {
        return Err(Error::Forbidden(
            "a participant may publish only its own keys".into(),
        ));
    }
    for (name, key) in [
        ("grant_key", &k.grant_key),
        ("enrollment_key", &k.enrollment_key),
    ] {
        if let Some(key) = key {
            renkei_crypto::grant::RecipientPublicKey::from_base64(key)
                .map_err(|e| Error::bad_request_from(name, e))?;
        }
    }
    if let Some(st) = &k.statement {
        // Those who seal to these keys check the statement against their own pinned CA;
        // the hub keeps only statements that say what the request says, for the caller,
        // signed under the participant CA, and small: the statement goes out with every
        // key-grant request for the caller.
        if st.participant != who.to_string()
            || st.grant_key != k.grant_key
            || st.enrollment_key != k.enrollment_key
        {
            return Err(Error::bad_request(
                "statement: must name the caller and the same keys as the request",
            ));
        }
        if st.certificate.len() > MAX_STATEMENT_CERTIFICATE {
            return Err(Error::bad_request(format!(
                "statement: the certificate is longer than {MAX_STATEMENT_CERTIFICATE} bytes"
            )));
        }
        st.verify(&hub.participant_ca, hub.now())
            .map_err(|e| Error::bad_request_from("statement", e))?;
    }
    if k.enrollment_key.is_some() && who.kind() != ParticipantKind::Source {
        return Err(Error::Forbidden(
            "only a source publishes an enrollment key".into(),
        ));
    }
    let statement = k
        .statement
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::internal_from("key statement", e))?;
    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    registry::set_keys(
        &mut tx,
        &who,
        k.grant_key.as_deref(),
        k.enrollment_key.as_deref(),
        statement.as_deref(),
        now,
    )
    .await?;
    broker::grants::due_now_for_recipient(&mut tx, &who.to_string()).await?;
    audit::append(
        &mut tx,
        now,
        &audit::Entry::allow(&who.to_string(), "participant.keys", &who.to_string()),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(k))
}

/// The latest checkpoint, signing one first if there is none yet.
async fn latest_or_new(hub: &Hub) -> Result<audit::Checkpoint> {
    match audit::latest_checkpoint(&hub.db).await? {
        Some(cp) if !cp.note.is_empty() => Ok(cp),
        _ => {
            audit::checkpoint_as(&hub.db, &hub.signing_key, &hub.log_origin, hub.now()).await?;
            audit::latest_checkpoint(&hub.db)
                .await?
                .ok_or_else(|| Error::NotFound("no audit checkpoint yet".into()))
        }
    }
}

/// `GET /v1/log/checkpoint`: the latest checkpoint as a C2SP signed note (text).
async fn log_checkpoint(State(hub): Hs, Caller(who): Caller) -> Result<impl IntoResponse> {
    let mut tx = hub.db.begin_read().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    tx.commit().await?;
    let cp = latest_or_new(&hub).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        cp.note,
    ))
}

/// `GET /v1/log/tile/<L>/<N>[.p/<W>]` and `/v1/log/tile/entries/<N>[.p/<W>]` (C2SP
/// tlog-tiles). An entries tile holds each entry's 32-byte chain hash, not its content.
async fn log_tile(
    State(hub): Hs,
    Caller(who): Caller,
    P(path): P<String>,
) -> Result<impl IntoResponse> {
    let tile = renkei_crypto::tlog::tile_from_path(&format!("tile/{path}"))
        .map_err(|e| Error::NotFound(e.to_string()))?;
    let mut tx = hub.db.begin_read().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    let data = audit::tree::tile(&mut tx, &tile).await?;
    tx.commit().await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        data,
    ))
}

/// `POST /v1/log/cosignature`: a witness returns its cosignature (C2SP
/// tlog-cosignature/v1 signature line) of the checkpoint of `size` entries.
async fn log_cosignature(
    State(hub): Hs,
    Caller(who): Caller,
    Body(body): Body<CosignatureBody>,
) -> Result<Json<serde_json::Value>> {
    let mut tx = hub.db.begin().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    tx.commit().await?;
    let time = audit::log::add_cosignature(
        &hub.db,
        &who.to_string(),
        &body.vkey,
        body.size,
        &body.cosignature,
        hub.now(),
    )
    .await?;
    Ok(Json(serde_json::json!({"size": body.size, "time": time})))
}

async fn checkpoint(State(hub): Hs, Caller(who): Caller) -> Result<Json<audit::Checkpoint>> {
    let mut tx = hub.db.begin().await?;
    broker::authorize_caller(&mut tx, &who, broker::ANY_PARTICIPANT).await?;
    tx.commit().await?;
    let cp = match audit::latest_checkpoint(&hub.db).await? {
        Some(cp) => cp,
        None => audit::checkpoint(&hub.db, &hub.signing_key, hub.now())
            .await?
            .ok_or_else(|| Error::NotFound("no audit checkpoint yet".into()))?,
    };
    Ok(Json(cp))
}
