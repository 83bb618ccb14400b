//! Bytes that are already AML, so they can be nested among `acpi_tables` objects (which take
//! children as `&dyn Aml`) without re-encoding.

use acpi_tables::{Aml, AmlSink};

/// Pre-encoded AML.
pub(crate) struct RawAml(pub(crate) Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}
