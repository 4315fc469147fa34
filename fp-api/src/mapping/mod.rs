//! The mapping model of seed 003 section 3: volumes and segments, the Rmap of variable
//! extents, redirect tables and storage descriptors, age lists and metadata chunks. The
//! control path owns the authoritative copy; the fast path caches parts of it.

pub mod age;
pub mod chunk;
pub mod descriptor;
pub mod extent_map;
pub mod redirect;
pub mod volume;
pub mod vseg_map;

pub use age::{Age, AgeList};
pub use chunk::ChunkGeometry;
pub use descriptor::{
    JournalRegion, JournaledLayout, Location, MirrorSet, MirrorSide, Placement, ReadPolicy, SideLayout,
    SideState, StorageDescriptor, StripeSet,
};
pub use extent_map::{Extent, ExtentMap};
pub use redirect::{RedirectEntry, RedirectIndex, RedirectTable};
pub use volume::{
    DevicePath, DiscoveredDevice, FabricRoute, HostSet, LunMapping, LunMask, LvDescriptor, PortLogin,
    TargetExposure, VsegDescriptor,
};
pub use vseg_map::{VsegLimits, VsegMap};
