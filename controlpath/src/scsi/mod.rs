//! Placeholder: SCSI emulation for virtual LUNs (being written).
