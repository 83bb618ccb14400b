//! Building an allow-list: system calls allowed outright or only with given
//! arguments, merged from the lists of [`super::common`] and a thread's own.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// An allow-list under construction.
#[derive(Debug, Default)]
pub struct AllowList {
    /// Per call: `None` allows it with any arguments, `Some(rules)` when
    /// one of the rules matches.
    calls: BTreeMap<i64, Option<Vec<SeccompRule>>>,
}

impl AllowList {
    /// Allows `nr` with any arguments.
    pub fn call(&mut self, nr: libc::c_long) -> &mut Self {
        self.calls.insert(nr, None);
        self
    }

    /// Allows `nr` when every (argument index, operation, value) holds;
    /// several `when`s on one call allow it when any of them holds.
    pub fn when(&mut self, nr: libc::c_long, conditions: &[(u8, SeccompCmpOp, u64)]) -> Result<&mut Self> {
        let conditions = conditions
            .iter()
            .map(|(arg, op, value)| SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value))
            .collect::<Result<Vec<_>, _>>()
            .context("invalid seccomp condition")?;
        let rule = SeccompRule::new(conditions).context("invalid seccomp rule")?;
        // `None`: already allowed with any arguments.
        if let Some(rules) = self.calls.entry(nr).or_insert_with(|| Some(Vec::new())) {
            rules.push(rule);
        }
        Ok(self)
    }

    /// Allows `ioctl` with each of `requests` on any descriptor.
    pub fn ioctls(&mut self, requests: &[u64]) -> Result<&mut Self> {
        for &request in requests {
            self.when(libc::SYS_ioctl, &[(1, SeccompCmpOp::Eq, request)])?;
        }
        Ok(self)
    }

    /// The list as seccompiler takes it (no rules: allowed outright).
    pub fn into_rules(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.calls.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect()
    }

    /// Whether `nr` is on the list in any form (for tests).
    #[cfg(test)]
    pub fn contains(&self, nr: libc::c_long) -> bool {
        self.calls.contains_key(&nr)
    }
}

/// Memory protections without `PROT_EXEC`: the third argument of `mmap`
/// and `mprotect`.
pub fn no_exec() -> (u8, SeccompCmpOp, u64) {
    (2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)
}
