//! The web apps served by `okpay` itself: the wallet at `/` and the
//! risk-operations console at `/console`, small hand-written HTML, CSS and
//! JavaScript in `gateway/web/`, compiled into the binary (`include_str!`), so
//! there is no build step and nothing to deploy beside the server. Both apps talk
//! to the public API and its websockets like any other client.
//!
//! `POST /web/qr` draws a QR code as SVG for the wallet's TOTP enrolment (the
//! `otpauth://` URI never leaves the page for a third party).

use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use crate::error::{ApiError, ApiResult, Problem};

/// The longest text drawn as a QR code (an otpauth URI is ~120 characters).
pub const QR_MAX_CHARS: usize = 512;

/// Scripts and styles come from this server only; no inline script runs, so an
/// injected string cannot execute. Images may be blobs (KYC documents).
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'none'";

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CONTENT_SECURITY_POLICY, CSP))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(html)
}

/// The wallet (HTML).
#[utoipa::path(get, path = "/", tag = "web",
    responses((status = 200, description = "The wallet web app", content_type = "text/html")))]
#[get("/")]
pub async fn wallet() -> HttpResponse {
    page(include_str!("../web/wallet.html"))
}

/// The risk-operations console (HTML).
#[utoipa::path(get, path = "/console", tag = "web",
    responses((status = 200, description = "The operators' console web app", content_type = "text/html")))]
#[get("/console")]
pub async fn console() -> HttpResponse {
    page(include_str!("../web/console.html"))
}

/// The apps' scripts and stylesheet.
#[utoipa::path(get, path = "/assets/{file}", tag = "web",
    params(("file" = String, Path, description = "app.css, common.js, strings.js, wallet.js or console.js")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[get("/assets/{file}")]
pub async fn asset(file: web::Path<String>) -> ApiResult<HttpResponse> {
    let (body, kind) = match file.as_str() {
        "app.css" => (include_str!("../web/app.css"), "text/css; charset=utf-8"),
        "common.js" => (
            include_str!("../web/common.js"),
            "text/javascript; charset=utf-8",
        ),
        "strings.js" => (
            include_str!("../web/strings.js"),
            "text/javascript; charset=utf-8",
        ),
        "wallet.js" => (
            include_str!("../web/wallet.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.js" => (
            include_str!("../web/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return Err(ApiError::not_found("asset")),
    };
    Ok(HttpResponse::Ok()
        .content_type(kind)
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(body))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QrRequest {
    /// At most 512 characters.
    #[schema(
        example = "otpauth://totp/OKPay:ana%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=OKPay"
    )]
    pub text: String,
}

/// Draws `text` as a QR code (SVG), for the wallet's authenticator enrolment.
#[utoipa::path(post, path = "/web/qr", tag = "web", request_body = QrRequest,
    responses(
        (status = 200, description = "The QR code", content_type = "image/svg+xml"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: empty or too long"),
    ))]
#[post("/web/qr")]
pub async fn qr(body: web::Json<QrRequest>) -> ApiResult<HttpResponse> {
    let text = body.into_inner().text;
    if text.is_empty() || text.chars().count() > QR_MAX_CHARS {
        return Err(ApiError::validation(format!(
            "text must have 1 to {QR_MAX_CHARS} characters."
        )));
    }
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|_| ApiError::validation("text does not fit in a QR code."))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(svg))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(wallet)
        .service(console)
        .service(asset)
        .service(qr);
}

/// The OpenAPI part of the web apps' routes.
#[derive(OpenApi)]
#[openapi(
    paths(wallet, console, asset, qr),
    components(schemas(QrRequest)),
    tags((name = "web", description = "The wallet and console web apps")),
)]
pub struct Api;
