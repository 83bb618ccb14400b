//! Writing the tables to files, for inspection with `iasl -d` (the `describe` front end, tests).

use std::fs;
use std::path::{Path, PathBuf};

use crate::blob::AcpiTables;
use crate::error::Error;

impl AcpiTables {
    /// Writes every blob to `dir/<SIG>.dat` (see [`crate::Blob::dump_file_name`]), creating
    /// `dir` if needed, and returns the paths written, in blob order.
    pub fn dump_to_dir(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        fs::create_dir_all(dir).map_err(|source| Error::Dump { path: dir.to_owned(), source })?;
        self.blobs
            .iter()
            .map(|blob| {
                let path = dir.join(blob.dump_file_name());
                fs::write(&path, &blob.bytes).map_err(|source| Error::Dump { path: path.clone(), source })?;
                Ok(path)
            })
            .collect()
    }
}
