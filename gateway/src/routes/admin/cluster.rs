//! `GET /v1/admin/cluster`: the nodes sharing this store, who owns each shard
//! at which fencing epoch, and how far each shard's log runs ahead of its
//! checkpoint (the log a new owner would replay).
//!
//! On the memory and embedded stores (and on a Redis no node has registered
//! with), this node is the deployment: it is listed alone, owning every shard.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// One node.
#[derive(Serialize, ToSchema)]
pub struct ClusterNode {
    #[schema(example = "okpay-1")]
    pub id: String,
    /// Milliseconds since its last heartbeat, by Redis's clock (0 for a single
    /// node, which needs none).
    pub heartbeat_age_ms: u64,
    /// Milliseconds until its registration expires without a new heartbeat
    /// (`null` for a single node).
    pub expires_in_ms: Option<i64>,
    /// Shards whose lease it holds.
    pub shards: usize,
    /// Whether this is the node that answered.
    pub this_node: bool,
}

/// One shard.
#[derive(Serialize, ToSchema)]
pub struct ClusterShard {
    pub shard: u16,
    /// The node holding its lease (`null`: nobody; the next tick of a live node
    /// takes it).
    pub owner: Option<String>,
    /// Its fencing epoch (0 before any lease).
    pub epoch: u64,
    /// The last frame appended to its log.
    pub head: u64,
    /// The frame its checkpoint covers.
    pub checkpoint: u64,
    /// `head - checkpoint`: frames a new owner replays.
    pub lag: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    /// The node that answered (nodes are listed by id).
    pub node: String,
    /// `single` (the store serves one node) or `shared` (a Redis several nodes may share).
    #[schema(example = "shared")]
    pub mode: String,
    pub nodes: Vec<ClusterNode>,
    pub shards: Vec<ClusterShard>,
    /// The sum of every shard's lag.
    pub total_lag: u64,
}

/// The nodes, shard owners, epochs and lag.
#[utoipa::path(get, path = "/v1/admin/cluster", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = ClusterView),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/cluster")]
pub async fn cluster(_admin: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let layout = state.engine.layout();
    let heads = state.engine.shard_heads().await?;
    let membership = state
        .coord
        .membership(layout.shards)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let me = state.node.clone();
    // A registration expires a lease time after its heartbeat: this node's
    // (every node of one deployment runs the same settings), else the default.
    let ttl = match &state.settings.runtime.cluster {
        Some(c) => c.leases.ttl,
        None => okpay_engine::cluster::LeaseConfig::default().ttl,
    };
    let ttl_ms = ttl.as_millis() as i64;
    let registered = membership.as_ref().is_some_and(|m| !m.nodes.is_empty());
    let owners: Vec<(Option<String>, u64)> = match &membership {
        Some(m) if registered => m.shards.clone(),
        _ => vec![(Some(me.clone()), 0); usize::from(layout.shards)],
    };
    let shards: Vec<ClusterShard> = heads
        .iter()
        .zip(&owners)
        .map(|((shard, head), (owner, epoch))| ClusterShard {
            shard: shard.0,
            owner: owner.clone(),
            epoch: *epoch,
            head: head.head,
            checkpoint: head.checkpoint,
            lag: head.head.saturating_sub(head.checkpoint),
        })
        .collect();
    let held = |id: &str| {
        shards
            .iter()
            .filter(|s| s.owner.as_deref() == Some(id))
            .count()
    };
    let mut nodes: Vec<ClusterNode> = match &membership {
        Some(m) if registered => m
            .nodes
            .iter()
            .map(|(id, expires_in)| ClusterNode {
                id: id.clone(),
                heartbeat_age_ms: u64::try_from(ttl_ms - expires_in).unwrap_or(0),
                expires_in_ms: Some(*expires_in),
                shards: held(id),
                this_node: *id == me,
            })
            .collect(),
        _ => vec![ClusterNode {
            id: me.clone(),
            heartbeat_age_ms: 0,
            expires_in_ms: None,
            shards: shards.len(),
            this_node: true,
        }],
    };
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let total_lag = shards.iter().map(|s| s.lag).sum();
    Ok(HttpResponse::Ok().json(ClusterView {
        node: me,
        mode: if state.coord.is_shared() {
            "shared"
        } else {
            "single"
        }
        .into(),
        nodes,
        shards,
        total_lag,
    }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(cluster);
}

/// The OpenAPI part of the cluster route.
#[derive(OpenApi)]
#[openapi(
    paths(cluster),
    components(schemas(ClusterView, ClusterNode, ClusterShard)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
