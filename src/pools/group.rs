//! A backend shared by several pools (`[groups.NAME]`): its own bulkhead (limit in cost units,
//! priority queue) and, with `adaptive`, its own learned limit fed by every member pool's
//! requests. A request of a member pool takes its units from its pool first (isolation: one
//! pool can never take the whole group) and then from the group (shared capacity: when the
//! shared backend is contended, the lowest priorities of any member are shed first).

use super::bulkhead::Bulkhead;
use crate::config::GroupSpec;
use crate::metrics::{Metrics, PoolMetrics};
use crate::protection::adaptive::{Adaptive, Sample};
use std::sync::Arc;

pub struct Group {
    pub spec: GroupSpec,
    pub bulkhead: Bulkhead,
    pub adaptive: Option<Adaptive>,
    pub metrics: PoolMetrics,
}

impl Group {
    pub fn new(spec: &GroupSpec, metrics: &Metrics) -> Arc<Group> {
        let (pm, bulkhead, adaptive) = super::limiter(
            &spec.name,
            spec.max_inflight,
            spec.queue_max,
            spec.queue_timeout,
            spec.adaptive.as_ref(),
            metrics,
        );
        Arc::new(Group {
            spec: spec.clone(),
            bulkhead,
            adaptive,
            metrics: pm,
        })
    }

    pub fn observe(&self, sample: Sample) {
        super::feed(self.adaptive.as_ref(), &self.bulkhead, sample);
    }
}
