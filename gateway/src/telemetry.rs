//! Metrics and logs. Metrics use the `metrics` facade with one process-wide
//! Prometheus recorder (`/metrics`); every request is counted by route pattern and
//! status and timed. Logs use `tracing`; handlers never log secrets (passwords,
//! tokens, codes, card or ID numbers), only ids and outcomes.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpRequest;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// The process-wide Prometheus handle (installed on first use: several servers in
/// one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                // unwrap: the bucket list is a non-empty constant.
                .unwrap()
                .set_buckets_for_metric(
                    Matcher::Full("okpay_journal_batch_size".into()),
                    &[
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                    ],
                )
                // unwrap: as above.
                .unwrap()
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests); the handle still works
            // for what this recorder sees.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Installs the tracing subscriber (once).
pub fn init_logs(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Middleware: counts requests by route pattern, method and status, and times
/// them. Every label is a `&'static str` from a bounded set and the metric handles
/// are kept per worker thread, so a request allocates nothing for its metrics.
///
/// The route is labelled from the answered request, once the router has matched
/// it: actix then finds the resource by the path it recorded while routing. Asked
/// before routing, it matches the path against every pattern again (a regex each),
/// which cost more than the rest of the middleware together. A request that fails
/// without an answer (an error from a middleware inside this one; a handler's
/// error is an answer) has no request left to ask and is labelled `other`.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    // Not a clone of the request kept for later: routing needs it unshared.
    let res = next.call(req).await;
    let (route, status) = match &res {
        Ok(r) => (route_label(r.request()), r.status().as_u16()),
        Err(e) => (OTHER, e.as_response_error().status_code().as_u16()),
    };
    let (requests, seconds) = handles(route, method, status_label(status));
    requests.increment(1);
    seconds.record(started.elapsed().as_secs_f64());
    res
}

/// The label of a path no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The label of anything beyond a bounded set (a method nobody uses, a route
/// beyond [`MAX_ROUTES`], a status nobody answers).
pub const OTHER: &str = "other";
/// Route patterns labelled by name at most; the app has about a hundred.
pub const MAX_ROUTES: usize = 256;

/// The method as a label: the standard ones by name, any other `other` (a client
/// may send any token as a method; each must not become a new series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

/// The status as a label: each code the API answers by number, any other by class.
pub fn status_label(status: u16) -> &'static str {
    match status {
        101 => "101",
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        409 => "409",
        410 => "410",
        411 => "411",
        413 => "413",
        414 => "414",
        415 => "415",
        422 => "422",
        423 => "423",
        428 => "428",
        429 => "429",
        431 => "431",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => OTHER,
        },
    }
}

/// Strings turned into `&'static str` labels: the same label for the same
/// string, at most `max` of them (each leaked once, for the life of the process),
/// `other` beyond.
struct Interner {
    labels: Mutex<FxHashMap<String, &'static str>>,
    max: usize,
}

impl Interner {
    fn new(max: usize) -> Self {
        Interner {
            labels: Mutex::new(FxHashMap::default()),
            max,
        }
    }

    fn intern(&self, text: &str) -> &'static str {
        let mut labels = self.labels.lock();
        if let Some(label) = labels.get(text) {
            return label;
        }
        if labels.len() >= self.max {
            return OTHER;
        }
        let label: &'static str = Box::leak(text.to_owned().into_boxed_str());
        labels.insert(text.to_owned(), label);
        label
    }
}

/// Route patterns as labels.
fn intern(pattern: String) -> &'static str {
    static PATTERNS: OnceLock<Interner> = OnceLock::new();
    PATTERNS
        .get_or_init(|| Interner::new(MAX_ROUTES))
        .intern(&pattern)
}

/// Resource names, kept beside their labels (see `ROUTES`).
fn intern_name(name: &str) -> &'static str {
    static NAMES: OnceLock<Interner> = OnceLock::new();
    NAMES.get_or_init(|| Interner::new(MAX_ROUTES)).intern(name)
}

/// Route, method and status labels of one series.
type LabelSet = (&'static str, &'static str, &'static str);

thread_local! {
    /// Route labels by the address of the matched resource's name. Actix names
    /// every `#[get(..)]`-style resource after its handler, and names repeat across
    /// modules (`list`), but each resource's name is its own string in this
    /// worker's route table, alive as long as the worker: its address identifies
    /// the resource without computing (and allocating) the full pattern again. The
    /// name itself is kept too and compared, in case a new app reuses the address.
    static ROUTES: RefCell<FxHashMap<usize, (&'static str, &'static str)>> =
        RefCell::new(FxHashMap::default());
    /// Metric handles by label set, so recording allocates no key.
    static HANDLES: RefCell<FxHashMap<LabelSet, (Counter, Histogram)>> =
        RefCell::new(FxHashMap::default());
}

/// The route pattern of a request as a label: `unmatched` when no route takes it.
fn route_label(req: &HttpRequest) -> &'static str {
    let Some(name) = req.match_name() else {
        // An unnamed resource (allocates its pattern; none of the API's is
        // unnamed) or no route at all (no allocation).
        return req.match_pattern().map_or(UNMATCHED, intern);
    };
    let key = name.as_ptr() as usize;
    let cached = ROUTES.with(|routes| {
        routes
            .borrow()
            .get(&key)
            .and_then(|(known, label)| (*known == name).then_some(*label))
    });
    if let Some(label) = cached {
        return label;
    }
    let label = req.match_pattern().map_or(UNMATCHED, intern);
    let name = intern_name(name);
    ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        // Bounded like the patterns: a worker has one entry per resource.
        if routes.len() < 4 * MAX_ROUTES {
            routes.insert(key, (name, label));
        }
    });
    label
}

/// The request counter and latency histogram of a label set.
fn handles(
    route: &'static str,
    method: &'static str,
    status: &'static str,
) -> (Counter, Histogram) {
    HANDLES.with(|handles| {
        handles
            .borrow_mut()
            .entry((route, method, status))
            .or_insert_with(|| {
                (
                    metrics::counter!("okpay_http_requests_total", "route" => route, "method" => method, "status" => status),
                    metrics::histogram!("okpay_http_request_seconds", "route" => route, "method" => method),
                )
            })
            .clone()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use actix_web::middleware::from_fn;
    use actix_web::test as web_test;
    use actix_web::{web, App, HttpResponse};

    use super::*;

    #[test]
    fn methods_and_statuses_make_a_bounded_label_set() {
        let standard = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::CONNECT,
            Method::TRACE,
        ];
        for m in &standard {
            assert_eq!(method_label(m), m.as_str());
        }
        for odd in ["BREW", "PROPFIND", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(odd.as_bytes()).unwrap()),
                OTHER
            );
        }
        let statuses: HashSet<&str> = (0..=u16::MAX).map(status_label).collect();
        assert!(statuses.len() <= 40, "{} status labels", statuses.len());
        assert_eq!(status_label(201), "201");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(999), OTHER);
    }

    #[test]
    fn interned_labels_are_shared_and_bounded() {
        let interner = Interner::new(8);
        let a = interner.intern("/x/{id}");
        let b = interner.intern("/x/{id}");
        assert!(std::ptr::eq(a, b), "one label per pattern");
        let labels: HashSet<&str> = (0..100)
            .map(|i| interner.intern(&format!("/flood/{i}")))
            .collect();
        assert_eq!(labels.len(), 8, "7 patterns after /x/{{id}}, then `other`");
        assert!(labels.contains(OTHER));
    }

    async fn ok() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn same_named_routes_keep_their_own_patterns_and_odd_requests_share_labels() {
        let handle = prometheus();
        let app = web_test::init_service(
            App::new()
                .wrap(from_fn(track))
                // Two resources named alike, as `#[get]` handlers called `list` are.
                .service(web::resource("/label-a/{id}").name("list").to(ok))
                .service(web::resource("/label-b").name("list").to(ok)),
        )
        .await;
        for path in [
            "/label-a/1",
            "/label-a/2",
            "/label-b",
            "/label-a/3",
            "/nowhere/9",
        ] {
            web_test::call_service(&app, web_test::TestRequest::get().uri(path).to_request()).await;
        }
        let brew = Method::from_bytes(b"BREW").unwrap();
        web_test::call_service(
            &app,
            web_test::TestRequest::default()
                .method(brew)
                .uri("/label-b")
                .to_request(),
        )
        .await;
        let text = handle.render();
        let count = |route: &str, method: &str, status: &str| -> f64 {
            let series = format!(
                "okpay_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .map_or(0.0, |v| v.trim().parse().unwrap())
        };
        assert_eq!(count("/label-a/{id}", "GET", "200"), 3.0, "{text}");
        assert_eq!(count("/label-b", "GET", "200"), 1.0, "{text}");
        assert_eq!(count(UNMATCHED, "GET", "404"), 1.0, "{text}");
        assert!(
            count("/label-b", OTHER, "200") + count("/label-b", OTHER, "405") >= 1.0,
            "{text}"
        );
    }
}
