//! Interactive API documentation: Swagger UI at `/docs/`, reading this server's
//! own `/openapi.json`. The UI's files are compiled into the binary
//! (`utoipa-swagger-ui` with its `vendored` feature), so nothing is fetched when
//! building or serving it and it works offline.

use actix_web::{web, HttpResponse};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// `/docs` → `/docs/` (the UI's assets are relative to the trailing slash).
async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs", web::get().to(redirect)).service(
        SwaggerUi::new("/docs/{_:.*}")
            .config(Config::from("/openapi.json").try_it_out_enabled(true)),
    );
}
