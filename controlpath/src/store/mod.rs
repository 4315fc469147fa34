//! Placeholder: the metadata store (being written).
