//! What each tenant's guests hold of the shared pools: calls running and instances alive, each
//! capped so one tenant's slow or numerous components cannot take every slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// One tenant's use of the runtime.
#[derive(Debug, Default)]
pub(crate) struct TenantUse {
    calls: AtomicU32,
    instances: AtomicU32,
}

/// Every tenant's use, by tenant name.
#[derive(Debug, Default)]
pub(crate) struct TenantUses {
    by_tenant: Mutex<HashMap<Arc<str>, Arc<TenantUse>>>,
}

impl TenantUses {
    pub fn of(&self, tenant: &Arc<str>) -> Arc<TenantUse> {
        self.by_tenant
            .lock()
            .entry(tenant.clone())
            .or_default()
            .clone()
    }
}

/// Held while a call runs; gives its slot back when dropped.
pub(crate) struct CallSlot(Arc<TenantUse>);

/// Held by a live instance; gives its slot back when the instance is dropped.
pub(crate) struct InstanceSlot(Arc<TenantUse>);

impl TenantUse {
    /// A call slot, unless `cap` calls of this tenant already run.
    pub fn enter_call(self: &Arc<Self>, cap: u32) -> Option<CallSlot> {
        take(&self.calls, cap).then(|| CallSlot(self.clone()))
    }

    /// An instance slot, unless the tenant already has `cap` instances alive.
    pub fn enter_instance(self: &Arc<Self>, cap: u32) -> Option<InstanceSlot> {
        take(&self.instances, cap).then(|| InstanceSlot(self.clone()))
    }

    #[cfg(test)]
    pub fn instances(&self) -> u32 {
        self.instances.load(Ordering::Relaxed)
    }
}

fn take(counter: &AtomicU32, cap: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.instances.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_tenant_and_given_back() {
        let uses = TenantUses::default();
        let (a, b) = (uses.of(&"a".into()), uses.of(&"b".into()));
        let first = a.enter_call(2).expect("one");
        let second = a.enter_call(2).expect("two");
        assert!(
            a.enter_call(2).is_none(),
            "a third call of `a` is over the cap"
        );
        assert!(b.enter_call(2).is_some(), "another tenant is not held back");
        drop(first);
        assert!(
            a.enter_call(2).is_some(),
            "a finished call gives its slot back"
        );
        drop(second);
        let i = a.enter_instance(1).expect("an instance");
        assert_eq!(a.instances(), 1);
        assert!(a.enter_instance(1).is_none());
        drop(i);
        assert_eq!(a.instances(), 0);
        assert!(
            Arc::ptr_eq(&a, &uses.of(&"a".into())),
            "one record per tenant"
        );
    }
}
