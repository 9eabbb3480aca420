//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations. Each route module declares its own `Api` doc;
//! [`document`] merges them with the shared parts (security scheme, error schema).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCode, Problem};

/// Adds the bearer-token security schemes (sessions and admin).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A session token from POST /v1/sessions"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token (--admin-token)"))
                    .build(),
            ),
        );
    }
}

/// The shared parts and the routes of the core modules.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OKPay API",
        version = "1",
        description = "The public HTTP and websocket API of the OKPay e-wallet. Errors are RFC 9457 problem details (application/problem+json) with a machine-readable `code`."
    ),
    paths(
        crate::routes::health::healthz,
        crate::routes::health::system_status,
        crate::routes::health::metrics_text,
        crate::routes::account::register,
        crate::routes::account::get_account,
        crate::routes::sessions::create_session,
        crate::routes::sessions::list,
        crate::routes::sessions::logout,
        crate::routes::sessions::revoke_one,
        crate::routes::sessions::revoke_others,
    ),
    components(schemas(Problem, ErrorCode)),
    modifiers(&Security),
    tags(
        (name = "system", description = "Health, status, metrics"),
        (name = "accounts", description = "Registration and the account"),
        (name = "sessions", description = "Login and sessions"),
    )
)]
pub struct ApiDoc;

/// The whole document: the core doc merged with every route module's doc.
pub fn document() -> utoipa::openapi::OpenApi {
    let doc = ApiDoc::openapi();
    crate::routes::extra_docs()
        .into_iter()
        .fold(doc, |mut doc, part| {
            doc.merge(part);
            doc
        })
}
