//! The config file exactly as SREs write it (DESIGN.md §1): serde types, nothing more.
//! Every field is optional here so that one missing or mistyped key does not hide the others;
//! `validate.rs` turns these into checked values and reports what is missing or wrong.
//! Durations and sizes stay strings until validation, so their errors carry a path.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub endpoints: Option<Vec<String>>,
    pub max_inflight: Option<i64>,
    pub queue: Option<RawQueue>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max: Option<i64>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub host: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub pool: Option<String>,
    pub priority: Option<String>,
    pub cost: Option<i64>,
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, RawValueMatch>>,
    pub query: Option<BTreeMap<String, RawValueMatch>>,
}

/// How a header or query value is compared. Exactly one of the keys is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValueMatch {
    pub equals: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub one_of_file: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
}
