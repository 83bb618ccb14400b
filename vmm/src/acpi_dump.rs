//! `--dump-acpi DIR`: each ACPI table as `DIR/<SIG>.dat`, the names
//! `iasl -d` expects.

use std::path::Path;

use anyhow::{Context, Result};
use dmavm_acpi::AcpiTables;

/// Writes `tables` into `dir`, creating it.
pub fn write(tables: &AcpiTables, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tables.dump_to_dir(dir).with_context(|| format!("cannot dump the ACPI tables into {}", dir.display()))?;
    Ok(())
}
