//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations. Each route module declares its own `Api` doc;
//! [`document`] merges them with the shared parts (security schemes, the error
//! schema and its code table) and then [`complete`]s every operation with what
//! the server does for all routes alike, so a route's annotation only has to say
//! what is particular to it:
//!
//! - every error answer is `application/problem+json` with the `Problem` schema
//!   (and an example drawn from the code table), whatever the annotation wrote;
//! - 400 wherever there is a parameter or a body to get wrong, 413 wherever there
//!   is a body, 401 (and 403) wherever a token is required, 404 wherever the path
//!   has an id, 503 (maintenance, overload, storage) on every `/v1` route, with
//!   `Retry-After` documented on 429 and 503.
//!
//! The same document drives the 405 answer for undeclared methods ([`allowed`]).

use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCode, Problem};
use crate::integrations::webhooks;

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
        crate::routes::account::update_profile,
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

/// The whole document: the core doc merged with every route module's doc, then
/// completed. Built once (it is a pure function of the code).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc =
            crate::routes::extra_docs()
                .into_iter()
                .fold(ApiDoc::openapi(), |mut doc, part| {
                    doc.merge(part);
                    doc
                });
        // unwrap: the utoipa model always serializes.
        let mut value = serde_json::to_value(doc).unwrap();
        complete(&mut value);
        value
    })
}

/// Text with no control characters (what the server calls "printable").
const PRINTABLE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// Printable text with at least one character that is neither a control
/// character nor white space as Rust's `trim` sees it (the server trims and
/// refuses blank text). The classes spell Unicode White_Space out, since regex
/// engines disagree on `\s`.
const PRINTABLE_NONBLANK: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// Text with at least one character that is not white space.
const NONBLANK: &str =
    "[^\\t-\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";
/// An ASCII email as `normalize_email` accepts it: a local part, `@`, a domain
/// with a dot that neither starts nor ends it.
const EMAIL: &str = "^[!-?A-~]+@[!-\\-/-~][!-~]*\\.[!-~]*[!-\\-/-~]$";
/// A positive amount with at most two decimals and at most 15 integer digits
/// (`Amount::parse` and the policy's currencies, all of scale 2).
const AMOUNT: &str = "^([1-9][0-9]{0,14}(\\.[0-9]{1,2})?|0\\.([1-9][0-9]?|0[1-9]))$";
/// A base64 JPEG (`FF D8 FF`) or PNG (its 8-byte signature) in canonical
/// standard base64, as the KYC route decodes and sniffs it.
const IMAGE_BASE64: &str = "^(/9j/|iVBORw0KGgoA)([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// The constraints the server's validation enforces on request fields, by
/// schema and property, added to the generated schemas: utoipa can't derive
/// them from the handlers' checks, and a client (or a fuzzer) must know them. A
/// unit test checks every entry names an existing property.
fn field_rules() -> Vec<(&'static str, &'static str, Value)> {
    let currencies: Vec<String> = okpay_engine::policy::Policy::default()
        .currencies
        .iter()
        .map(|c| c.code.clone())
        .collect();
    let amount = json!({ "pattern": AMOUNT, "example": "25.00" });
    let currency = json!({ "enum": currencies, "example": "CNY" });
    let locales: Vec<&str> = okpay_engine::domain::Locale::ALL
        .iter()
        .map(|l| l.code())
        .collect();
    let locales = json!({ "enum": locales });
    vec![
        (
            "RegisterRequest",
            "email",
            json!({ "pattern": EMAIL, "maxLength": 254 }),
        ),
        (
            "RegisterRequest",
            "phone",
            json!({ "pattern": "^\\+[0-9]{8,15}$" }),
        ),
        (
            "RegisterRequest",
            "password",
            json!({ "minLength": 8, "maxLength": 128 }),
        ),
        (
            "RegisterRequest",
            "display_name",
            json!({ "pattern": NONBLANK, "maxLength": 64 }),
        ),
        ("RegisterRequest", "locale", locales.clone()),
        ("ProfileUpdate", "locale", locales),
        (
            "LoginRequest",
            "device_id",
            json!({ "minLength": 1, "maxLength": 128 }),
        ),
        ("LoginRequest", "device_name", json!({ "maxLength": 128 })),
        ("LoginRequest", "country", json!({ "maxLength": 2 })),
        (
            "ResetConfirm",
            "new_password",
            json!({ "minLength": 8, "maxLength": 128 }),
        ),
        (
            "KycRequest",
            "full_name",
            json!({ "pattern": PRINTABLE_NONBLANK, "maxLength": 128 }),
        ),
        (
            "KycRequest",
            "id_number",
            json!({ "pattern": "^[A-Za-z0-9-]{5,32}$" }),
        ),
        (
            "KycRequest",
            "document_front",
            json!({ "pattern": IMAGE_BASE64, "maxLength": 7_000_000 }),
        ),
        (
            "KycRequest",
            "document_back",
            json!({ "pattern": IMAGE_BASE64, "maxLength": 7_000_000 }),
        ),
        ("DepositRequest", "amount", amount.clone()),
        ("DepositRequest", "currency", currency.clone()),
        (
            "DepositRequest",
            "card_number",
            json!({ "pattern": "^[0-9]{12,19}$" }),
        ),
        ("WithdrawalRequest", "amount", amount.clone()),
        ("WithdrawalRequest", "currency", currency.clone()),
        (
            "WithdrawalRequest",
            "destination",
            json!({ "pattern": PRINTABLE_NONBLANK, "maxLength": 128 }),
        ),
        ("TransferRequest", "amount", amount),
        ("TransferRequest", "currency", currency),
        (
            "TransferRequest",
            "to",
            json!({ "pattern": NONBLANK, "maxLength": 320 }),
        ),
        (
            "TransferRequest",
            "memo",
            json!({ "pattern": PRINTABLE, "maxLength": 140 }),
        ),
        (
            "ContactRequest",
            "alias",
            json!({ "pattern": PRINTABLE_NONBLANK, "maxLength": 64 }),
        ),
        (
            "ContactRequest",
            "login_or_account",
            json!({ "pattern": NONBLANK, "maxLength": 320 }),
        ),
        (
            "StatusChangeRequest",
            "reason",
            json!({ "pattern": NONBLANK, "maxLength": 500 }),
        ),
        (
            "RejectRequest",
            "reason",
            json!({ "pattern": NONBLANK, "maxLength": 500 }),
        ),
        ("MaintenanceRequest", "message", json!({ "maxLength": 500 })),
        (
            "ManualPayout",
            "reason",
            json!({ "pattern": NONBLANK, "maxLength": 500 }),
        ),
        (
            "NewEndpoint",
            "url",
            json!({ "pattern": "^https?://[!-~]*$", "maxLength": webhooks::MAX_URL_LEN }),
        ),
        (
            "NewEndpoint",
            "events",
            json!({
                "minItems": 1,
                "maxItems": webhooks::EVENT_TYPES.len(),
                "items": { "type": "string", "enum": webhooks::EVENT_TYPES },
            }),
        ),
        (
            "QrRequest",
            "text",
            json!({ "minLength": 1, "maxLength": crate::webapp::QR_MAX_CHARS }),
        ),
        (
            "PayoutCallback",
            "type",
            json!({ "enum": ["payout.completed", "payout.failed"] }),
        ),
        (
            "PayoutCallback",
            "payout_id",
            json!({ "pattern": "^wd_[0-9a-f]{32}$" }),
        ),
        (
            "ChargeCallback",
            "type",
            json!({ "enum": ["charge.succeeded", "charge.failed"] }),
        ),
        (
            "NewOperator",
            "name",
            json!({ "pattern": "^[A-Za-z0-9._-]{1,64}$" }),
        ),
    ]
}

/// Applies [`field_rules`]; returns the rules whose property does not exist.
fn apply_field_rules(doc: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (schema, property, rule) in field_rules() {
        let target = doc
            .pointer_mut(&format!(
                "/components/schemas/{schema}/properties/{property}"
            ))
            .and_then(Value::as_object_mut);
        let Some(target) = target else {
            missing.push(format!("{schema}.{property}"));
            continue;
        };
        // An optional field is `{"type": ["string", "null"]}` or a oneOf; the
        // constraints apply to the string either way.
        if let Some(rule) = rule.as_object() {
            for (k, v) in rule {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    missing
}

/// Constraints on query and path parameters, by path and name (like
/// [`field_rules`] for bodies).
fn parameter_rules() -> Vec<(&'static str, &'static str, Value)> {
    let currencies: Vec<String> = okpay_engine::policy::Policy::default()
        .currencies
        .iter()
        .map(|c| c.code.clone())
        .collect();
    vec![
        (
            "/v1/quotes",
            "operation",
            json!({ "type": "string", "enum": ["deposit", "withdrawal", "transfer"] }),
        ),
        // Every method of any operation: which ones an operation takes is in the
        // description (a pair it does not take is a 422, not a 400).
        (
            "/v1/quotes",
            "method",
            json!({ "type": "string", "enum": ["bank_card", "credit_card", "third_party", "wallet"] }),
        ),
        (
            "/v1/quotes",
            "amount",
            json!({ "type": "string", "pattern": AMOUNT, "example": "25.00" }),
        ),
        (
            "/v1/quotes",
            "currency",
            json!({ "type": "string", "enum": currencies, "example": "CNY" }),
        ),
        (
            "/v1/admin/deliveries",
            "state",
            json!({ "type": "string", "enum": ["queued", "dead"] }),
        ),
        (
            "/v1/admin/reconciliation",
            "date",
            json!({ "type": "string", "format": "date", "example": "2026-11-29" }),
        ),
        (
            "/v1/admin/kyc",
            "status",
            json!({ "type": "string", "enum": ["pending"] }),
        ),
        (
            "/v1/admin/accounts",
            "q",
            json!({ "type": "string", "pattern": NONBLANK, "maxLength": 320 }),
        ),
        (
            "/v1/admin/audit",
            "after",
            json!({ "type": "string", "pattern": "^aud_" }),
        ),
        (
            "/v1/admin/audit",
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 500 }),
        ),
    ]
}

/// Applies [`parameter_rules`]; returns the rules whose parameter does not exist.
fn apply_parameter_rules(doc: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, name, schema) in parameter_rules() {
        let mut found = false;
        if let Some(item) = doc
            .pointer_mut(&format!(
                "/paths/{}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        {
            for op in item.values_mut() {
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for p in params {
                    if p.get("name").and_then(Value::as_str) == Some(name) {
                        p["schema"] = schema.clone();
                        found = true;
                    }
                }
            }
        }
        if !found {
            missing.push(format!("{path} {name}"));
        }
    }
    missing
}

/// The `Idempotency-Key` header as the server checks it.
fn idempotency_key_parameter(op: &mut Map<String, Value>) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        if p.get("name").and_then(Value::as_str) == Some("Idempotency-Key") {
            p["required"] = json!(true);
            p["schema"] = json!({ "type": "string", "pattern": "^[!-~]{1,255}$", "example": "7f1c2a9e-4b1d-4c55-9a1e-0c6f1f2f8d10" });
        }
    }
}

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds the answers every route shares and rewrites every error answer as
/// problem+json (see the module doc).
pub fn complete(doc: &mut Value) {
    let mut missing = apply_field_rules(doc);
    missing.extend(apply_parameter_rules(doc));
    // A rule left behind by a renamed field is a bug the unit test reports; the
    // server still serves the document.
    if !missing.is_empty() {
        tracing::warn!(?missing, "OpenAPI rules name no field or parameter");
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(*method).and_then(Value::as_object_mut) else {
                continue;
            };
            idempotency_key_parameter(op);
            let has_body = op.contains_key("requestBody");
            let has_params = op
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            let has_id = path.contains('{');
            let schemes: Vec<String> = op
                .get("security")
                .and_then(Value::as_array)
                .map(|reqs| {
                    reqs.iter()
                        .filter_map(Value::as_object)
                        .flat_map(|r| r.keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else { continue };
            let mut add = |status: u16, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| json!({ "description": description }));
            };
            if has_body || has_params || has_id {
                add(
                    400,
                    "The request is malformed (a field, the body, a header or the query).",
                );
            }
            if !schemes.is_empty() {
                add(401, "The token is missing, invalid, expired or revoked.");
                add(403, "The token does not allow this (a user's token on an operator route), or the account may not do it.");
            }
            if has_id {
                add(404, "No such resource (or a malformed id).");
            }
            if has_body {
                add(413, "The body is larger than the server accepts.");
            }
            if path.starts_with("/v1/") {
                add(
                    503,
                    "Maintenance, a full queue, or storage unavailable: retry later.",
                );
            }
            for (status, response) in responses.iter_mut() {
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                if code >= 400 {
                    problem_response(code, response);
                }
            }
        }
    }
}

/// Makes one error answer problem+json, names the codes it can carry, and
/// documents `Retry-After` where the server sends it.
fn problem_response(status: u16, response: &mut Value) {
    let Some(response) = response.as_object_mut() else {
        return;
    };
    let codes: Vec<ErrorCode> = ErrorCode::ALL
        .iter()
        .copied()
        .filter(|c| c.status().as_u16() == status)
        .collect();
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let described = response
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| "An error.".into());
    if !names.is_empty() && !described.contains("Codes with this status") {
        response.insert(
            "description".into(),
            Value::String(format!(
                "{described} Codes with this status: {}.",
                names.join(", ")
            )),
        );
    }
    let mut media = Map::new();
    media.insert(
        "schema".into(),
        json!({ "$ref": "#/components/schemas/Problem" }),
    );
    if let Some(code) = codes.first() {
        let e = crate::error::ApiError::new(*code, code.title());
        // unwrap: a Problem always serializes.
        media.insert("example".into(), serde_json::to_value(e.problem()).unwrap());
    }
    response.insert(
        "content".into(),
        json!({ "application/problem+json": Value::Object(media) }),
    );
    if status == 429 || status == 503 {
        let headers = response.entry("headers").or_insert_with(|| json!({}));
        if let Some(headers) = headers.as_object_mut() {
            headers.entry("Retry-After").or_insert_with(|| {
                json!({
                    "description": "Seconds to wait before retrying, when known.",
                    "required": false,
                    "schema": { "type": "integer", "minimum": 0 }
                })
            });
        }
    }
}

/// The methods the document declares for a concrete request path (its templates
/// matched segment by segment, `{x}` matching any one segment), upper-case; `None`
/// when no documented path matches.
pub fn allowed(path: &str) -> Option<&'static [String]> {
    static TABLE: OnceLock<Vec<(Vec<String>, Vec<String>)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = Vec::new();
        if let Some(paths) = document().get("paths").and_then(Value::as_object) {
            for (template, item) in paths {
                let segments = template.split('/').map(str::to_owned).collect();
                let methods = METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| m.to_ascii_uppercase())
                    .collect();
                table.push((segments, methods));
            }
        }
        table
    });
    let wanted: Vec<&str> = path.split('/').collect();
    table
        .iter()
        .find(|(segments, _)| {
            segments.len() == wanted.len()
                && segments.iter().zip(&wanted).all(|(t, w)| {
                    (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                })
        })
        .map(|(_, methods)| methods.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_rule_names_a_property_of_the_document() {
        let mut doc = serde_json::to_value(crate::routes::extra_docs().into_iter().fold(
            ApiDoc::openapi(),
            |mut doc, part| {
                doc.merge(part);
                doc
            },
        ))
        .unwrap();
        assert_eq!(apply_field_rules(&mut doc), Vec::<String>::new());
        assert_eq!(apply_parameter_rules(&mut doc), Vec::<String>::new());
    }

    #[test]
    fn every_error_answer_is_problem_json_and_ids_have_404() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for (status, r) in responses {
                    if status.as_str() >= "400" {
                        assert!(
                            r["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
                if path.starts_with("/v1/") {
                    assert!(responses.contains_key("503"), "{method} {path}");
                }
                if path.contains('{') {
                    assert!(responses.contains_key("404"), "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn allowed_matches_templates_segment_by_segment() {
        assert_eq!(
            allowed("/v1/transactions").map(|m| m.to_vec()),
            Some(vec!["GET".to_owned()])
        );
        assert!(allowed("/v1/withdrawals/wd_x").is_some());
        assert!(
            allowed("/v1/withdrawals/").is_none(),
            "an empty id is no id"
        );
        assert!(allowed("/v1/nothing-here").is_none());
    }
}
