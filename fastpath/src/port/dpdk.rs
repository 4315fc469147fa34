//! The DPDK port: a [`PacketIo`] over one DPDK ethdev (a NIC, or a virtual device such as
//! `net_ring0`), with what it stands on: the process's one EAL initialisation ([`Eal`]), the
//! port's mbuf pool, and its configuration (one receive queue, one transmit queue per handle,
//! promiscuous).
//!
//! **Queues and handles.** Every worker of an engine transmits on every port, and DPDK wants
//! no two threads on one queue, so a device is opened with one transmit queue per worker
//! ([`DpdkPort::open_queues`]): handle k transmits on queue k, and exactly one handle, the
//! one the worker serving the port gets, receives (queue 0); the others receive nothing. The
//! handles share the opened device, which is stopped and closed when the last one drops.
//! [`DpdkPort::open`] is the one-handle case.
//!
//! **Ring devices.** `--vdev=net_ring0` gives a device of 16 queues each way, where transmit
//! queue k loops back to receive queue k (the ring PMD makes one ring per queue pair). Only
//! queue 0 is read here, so a frame sent on another queue of such a device is never seen.
//! [`ring_cable`] makes two devices joined like a cable instead: every transmit queue of one
//! end feeds the other end's receive queue, which is what tests of multi-queue handles and
//! of a whole engine need.
//!
//! **Copies.** Received mbufs are copied into [`Frame`]s from the port's [`FramePool`] and
//! freed at once; transmitted [`TxFrame`]s (head, shared body, trailer) are copied into one
//! fresh mbuf each. The worker holds frames for as long as an exchange needs them (write data
//! waits for every leg's XFER_RDY) and shares them by reference count, so a `Frame` cannot
//! simply borrow an mbuf. Zero copy would need a `Frame` whose storage is an mbuf (its
//! reference count taken by `Frame::clone` through `rte_mbuf_refcnt_update`, the mbuf freed
//! with the last reference), and on transmit a chain of an mbuf for the head and indirect
//! mbufs attached to the shared body (`rte_pktmbuf_attach`), which every NIC queue must
//! accept as multi-segment. This version pays one copy of at most [`FRAME_CAPACITY`] bytes
//! per frame each way instead: on ring devices without hugepages the port's whole work is
//! about 500 ns a frame, as much as a plain forwarder's (docs/PERFORMANCE.md, "Stop 19"),
//! not yet split into the copies and the rest.
//!
//! **Threads.** `rte_eal_init` pins the calling thread to the main lcore's CPUs, and every
//! thread that thread creates afterwards inherits the pinning. Create other threads (the
//! tokio runtime of the control path, the workers' threads) before calling [`Eal::init`], or
//! name the CPUs with EAL's `-l`/`--lcores`. A worker thread that is not an EAL lcore works,
//! without the mempool's per-lcore cache.
//!
//! **Lifetimes.** EAL is never cleaned up (`rte_eal_cleanup` under other threads still using
//! DPDK would be unsound); an mbuf pool lives as long as the process and is reused when its
//! port is opened again, because mbufs may outlive their port (a ring device's ring, another
//! port's queue) and freeing a pool under them would be a use after free.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char, c_int, c_uint};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, PoisonError};

use dpdk_sys as sys;
use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FramePool, TxFrame};
use dve_fp_api::ids::PortId;
use dve_fp_api::port::PacketIo;
use dve_wire::ethernet::MacAddr;

/// Mbufs moved per `rte_eth_rx_burst`/`rte_eth_tx_burst` call.
const BURST: usize = 32;

/// An 802.1Q tag: FCoE runs in a VLAN.
const VLAN_TAG_LEN: usize = 4;

/// DPDK's `SOCKET_ID_ANY`: memory from any NUMA socket.
const SOCKET_ID_ANY: c_int = -1;

/// Linux's `ENOTSUP`, which DPDK returns negated for an operation a device lacks.
const ENOTSUP: c_int = 95;

/// Bytes of data an mbuf holds after its headroom: a whole frame, so that a frame is always
/// one segment on transmit, and one on receive on NICs that honour the MTU below.
const MBUF_FRAME_ROOM: usize = FRAME_CAPACITY;

/// What failed, and where.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DpdkError {
    /// `Eal::init` was given no arguments.
    #[error("EAL arguments are empty: the first one is the program name (e.g. \"dve\")")]
    EalNoArguments,
    /// An EAL argument cannot be passed to C.
    #[error("EAL argument {0:?} contains a NUL byte")]
    EalArgument(String),
    /// `rte_eal_init` failed.
    #[error("EAL initialisation with {args:?} failed: {reason}")]
    EalInit {
        /// The arguments given.
        args: Vec<String>,
        /// `rte_strerror` of `rte_errno`.
        reason: String,
    },
    /// A first initialisation failed; DPDK allows one attempt per process.
    #[error("EAL initialisation failed earlier in this process, and DPDK allows one attempt: {0}")]
    EalFailedEarlier(String),
    /// EAL runs already, with other arguments.
    #[error("EAL is already initialised with {existing:?}, so it cannot start with {requested:?}")]
    EalAlreadyInitialized {
        /// The arguments EAL runs with.
        existing: Vec<String>,
        /// The arguments of this call.
        requested: Vec<String>,
    },
    /// No ethdev has this name.
    #[error(
        "no DPDK device named {name:?} (devices present: {present:?}); virtual devices come from EAL's --vdev arguments"
    )]
    NoSuchDevice {
        /// The name asked for.
        name: String,
        /// The names of the ethdevs that exist.
        present: Vec<String>,
    },
    /// No ethdev has this port id.
    #[error("no DPDK port {port} (devices present: {present:?})")]
    NoSuchPort {
        /// The port id asked for.
        port: u16,
        /// The names of the ethdevs that exist.
        present: Vec<String>,
    },
    /// A `DpdkPort` already drives this ethdev.
    #[error("DPDK port {port} ({name}) is already open: its queues have one owner")]
    PortInUse {
        /// The DPDK port id.
        port: u16,
        /// The ethdev's name.
        name: String,
    },
    /// The device has fewer transmit queues than handles were asked for (one per worker).
    #[error(
        "DPDK port {port} ({name}) has at most {max} transmit queue(s), and {wanted} were asked for (one per worker)"
    )]
    TooManyTxQueues {
        /// The DPDK port id.
        port: u16,
        /// The ethdev's name.
        name: String,
        /// The transmit queues asked for.
        wanted: u16,
        /// The most the device has.
        max: u16,
    },
    /// The receiving handle named is not one of the handles asked for.
    #[error(
        "handle {receiver} cannot be the receiving one: there are {handles} handle(s), one per transmit queue"
    )]
    ReceiverOutOfRange {
        /// The receiving handle asked for.
        receiver: u16,
        /// The handles (transmit queues) asked for.
        handles: u16,
    },
    /// A ring cable could not be made.
    #[error("ring cable {name:?}: {reason}")]
    RingCable {
        /// The cable's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A DPDK call on the port failed.
    #[error("{call} failed on DPDK port {port} ({name}): {reason}")]
    PortCall {
        /// The DPDK function.
        call: &'static str,
        /// The DPDK port id.
        port: u16,
        /// The ethdev's name.
        name: String,
        /// `rte_strerror` of the error it returned.
        reason: String,
    },
}

/// The process's EAL, initialised once. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Eal {
    state: Arc<EalState>,
}

#[derive(Debug)]
struct EalState {
    args: Vec<String>,
    /// DPDK ports a [`DpdkPort`] drives now: a queue must have one owner.
    open_ports: Mutex<BTreeSet<u16>>,
    /// Each DPDK port's mbuf pool, kept for the process's life (see the module doc).
    pools: Mutex<BTreeMap<u16, MbufPool>>,
}

/// The EAL of this process: `None` before the first `Eal::init`, then its outcome (the
/// failure as text).
static EAL: Mutex<Option<Result<Eal, String>>> = Mutex::new(None);

impl Eal {
    /// Initialise EAL with `args` (`args[0]` is the program name, e.g. `["dve", "--no-huge",
    /// "--no-pci", "-m", "256", "--in-memory", "--vdev=net_ring0"]`), once per process. A
    /// later call with the same arguments returns the same EAL; with others, or after a
    /// failed first call, it is an error. Pins the calling thread (see the module doc).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let mut slot = EAL.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(Ok(eal)) if eal.state.args == args => return Ok(eal.clone()),
            Some(Ok(eal)) => {
                return Err(DpdkError::EalAlreadyInitialized {
                    existing: eal.state.args.clone(),
                    requested: args,
                });
            }
            Some(Err(first)) => return Err(DpdkError::EalFailedEarlier(first.clone())),
            None => {}
        }
        if args.is_empty() {
            return Err(DpdkError::EalNoArguments);
        }
        let mut c_args = Vec::with_capacity(args.len());
        for arg in &args {
            c_args.push(CString::new(arg.as_str()).map_err(|_| DpdkError::EalArgument(arg.clone()))?);
        }
        let argc = c_int::try_from(c_args.len())
            .map_err(|_| DpdkError::EalArgument(format!("{} arguments", args.len())))?;
        // EAL reorders argv and may keep pointers into it: the array and its strings are
        // leaked, to live as long as the process.
        let argv: &'static mut [*mut c_char] =
            c_args.into_iter().map(CString::into_raw).chain([ptr::null_mut()]).collect::<Vec<_>>().leak();
        // SAFETY: argv holds argc NUL-terminated strings then a null pointer, all leaked so
        // they outlive EAL; the EAL lock makes this the process's only call (nothing else in
        // the workspace calls rte_eal_init).
        let parsed = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if parsed < 0 {
            let error = DpdkError::EalInit { args, reason: rte_errno_text() };
            *slot = Some(Err(error.to_string()));
            return Err(error);
        }
        let eal = Eal {
            state: Arc::new(EalState {
                args,
                open_ports: Mutex::new(BTreeSet::new()),
                pools: Mutex::new(BTreeMap::new()),
            }),
        };
        *slot = Some(Ok(eal.clone()));
        Ok(eal)
    }

    /// The arguments EAL runs with.
    pub fn args(&self) -> &[String] {
        &self.state.args
    }

    /// Every ethdev, by DPDK port id, with its name.
    pub fn devices(&self) -> Vec<(u16, String)> {
        (0..sys::RTE_MAX_ETHPORTS as u16)
            .filter(|&port| port_is_valid(port))
            .map(|port| (port, port_name(port)))
            .collect()
    }

    fn device_names(&self) -> Vec<String> {
        self.devices().into_iter().map(|(_, name)| name).collect()
    }

    /// The DPDK port id of `device`.
    fn resolve(&self, device: &EthDevice) -> Result<u16, DpdkError> {
        match device {
            EthDevice::Id(port) if port_is_valid(*port) => Ok(*port),
            EthDevice::Id(port) => Err(DpdkError::NoSuchPort { port: *port, present: self.device_names() }),
            EthDevice::Name(name) => {
                let missing = || DpdkError::NoSuchDevice { name: name.clone(), present: self.device_names() };
                let c_name = CString::new(name.as_str()).map_err(|_| missing())?;
                let mut port = 0u16;
                // SAFETY: c_name is NUL-terminated and port a valid place for the id; both
                // outlive the call.
                let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port) };
                if ret == 0 { Ok(port) } else { Err(missing()) }
            }
        }
    }

    /// Take ownership of `port`'s queues until the claim drops.
    fn claim(&self, port: u16, name: &str) -> Result<PortClaim, DpdkError> {
        let mut open = self.state.open_ports.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.insert(port) {
            return Err(DpdkError::PortInUse { port, name: name.to_owned() });
        }
        Ok(PortClaim { eal: self.clone(), port })
    }

    /// `port`'s mbuf pool: the one made at its first opening, or a new one.
    fn pool_for(
        &self,
        port: u16,
        name: &str,
        mbufs: u32,
        cache: u32,
        socket: c_int,
    ) -> Result<MbufPool, DpdkError> {
        let mut pools = self.state.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(&port) {
            return Ok(*pool);
        }
        let pool_name = CString::new(format!("dve_mbufs_{port}")).expect("no NUL in a formatted number");
        let data_room = u16::try_from(sys::RTE_PKTMBUF_HEADROOM as usize + MBUF_FRAME_ROOM)
            .expect("an mbuf's room fits u16");
        // SAFETY: pool_name is NUL-terminated and outlives the call, which copies it.
        let raw =
            unsafe { sys::rte_pktmbuf_pool_create(pool_name.as_ptr(), mbufs, cache, 0, data_room, socket) };
        let pool = NonNull::new(raw)
            .map(MbufPool)
            .ok_or_else(|| call_error("rte_pktmbuf_pool_create", port, name, -rte_errno()))?;
        pools.insert(port, pool);
        Ok(pool)
    }
}

/// Ownership of a DPDK port's queues, given back on drop.
#[derive(Debug)]
struct PortClaim {
    eal: Eal,
    port: u16,
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        self.eal.state.open_ports.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.port);
    }
}

/// A pool of mbufs (`rte_mempool`), never freed.
#[derive(Clone, Copy, Debug)]
struct MbufPool(NonNull<sys::rte_mempool>);

// SAFETY: an mbuf pool is made for use from any thread (its ring is multi-producer and
// multi-consumer; per-lcore caches belong to one EAL thread each, and threads outside EAL use
// none), and the pointer stays valid because pools are never freed.
unsafe impl Send for MbufPool {}

/// Which ethdev to open.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum EthDevice {
    /// By DPDK port id.
    Id(u16),
    /// By name: a PCI address (`0000:03:00.0`) or a virtual device (`net_ring0`).
    Name(String),
}

impl From<u16> for EthDevice {
    fn from(port: u16) -> EthDevice {
        EthDevice::Id(port)
    }
}

impl From<&str> for EthDevice {
    fn from(name: &str) -> EthDevice {
        EthDevice::Name(name.to_owned())
    }
}

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct DpdkPortConfig {
    /// The engine's number for the port (what [`PacketIo::id`] returns).
    pub id: PortId,
    /// Where received frames are copied to.
    pub frame_pool: FramePool,
    /// Receive descriptors (adjusted to what the device allows).
    pub rx_descriptors: u16,
    /// Transmit descriptors (adjusted to what the device allows).
    pub tx_descriptors: u16,
    /// Mbufs in the port's pool: enough for what a ring device holds; raised to what the
    /// queues' descriptors and a burst per handle need. Used only when the port's pool is
    /// first made.
    pub mbufs: u32,
    /// Mbufs each EAL lcore keeps in its own cache of the pool.
    pub mbuf_cache: u32,
}

impl DpdkPortConfig {
    /// Defaults: 1024 descriptors each way, 4095 mbufs (a power of two less one is what
    /// mempools size best), a cache of 256.
    pub fn new(id: PortId, frame_pool: FramePool) -> DpdkPortConfig {
        DpdkPortConfig {
            id,
            frame_pool,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mbufs: 4095,
            mbuf_cache: 256,
        }
    }
}

/// What a port has done since it opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DpdkPortCounters {
    /// Frames received and handed to the caller.
    pub rx_frames: u64,
    /// Frames received but dropped: longer than a [`Frame`] holds, or segments that do not
    /// add up to the packet's length.
    pub rx_dropped: u64,
    /// Frames the device accepted for transmission.
    pub tx_frames: u64,
    /// Frames removed from a burst unsent: longer than an mbuf holds ([`FRAME_CAPACITY`]).
    pub tx_dropped: u64,
    /// Times the mbuf pool was empty on transmit (the burst stopped there).
    pub mbuf_alloc_failures: u64,
}

/// An opened and started ethdev, shared by the handles on it; stopped and closed when the
/// last handle drops.
#[derive(Debug)]
struct OpenDevice {
    port: u16,
    name: String,
    /// Held around the control calls a handle makes (link status, MAC address): DPDK's
    /// control functions are not thread-safe, and handles on one device live on different
    /// threads.
    control: Mutex<()>,
    /// Dropped after the device is closed (fields drop after `Drop::drop`).
    _claim: PortClaim,
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        // Failures leave nothing to do: the port is being given up either way.
        // SAFETY: plain call on our port; no handle is left to use its queues.
        unsafe { sys::rte_eth_dev_stop(self.port) };
        // SAFETY: plain call on our stopped port; no mbuf pointer of ours refers to it.
        unsafe { sys::rte_eth_dev_close(self.port) };
    }
}

/// A [`PacketIo`] over one DPDK ethdev: a handle transmitting on one transmit queue of the
/// device and, if it is the device's receiving handle, receiving on its receive queue 0.
pub struct DpdkPort {
    id: PortId,
    device: Arc<OpenDevice>,
    /// The transmit queue this handle alone uses.
    tx_queue: u16,
    /// Whether this handle is the one that receives (on queue 0).
    receives: bool,
    mbufs: MbufPool,
    frames: FramePool,
    counters: DpdkPortCounters,
    /// Mbufs of the burst in hand; holds pointers only during one call.
    burst: [*mut sys::rte_mbuf; BURST],
    /// For each mbuf of a transmit burst, the index of the frame it holds.
    burst_frames: [usize; BURST],
}

// SAFETY: DPDK ties no queue to a thread: rte_eth_rx_burst and rte_eth_tx_burst only need
// that no two threads use one queue at once. The handles of a device are made together by
// `open_queues`, each with a transmit queue of its own and only one of them with the receive
// queue, and the EAL's claims allow one opening of a device at a time; a handle uses its
// queues through &mut self only. The shared device's control calls go through its mutex;
// the mbuf pool is thread-safe (see MbufPool); `burst` holds pointers only within one call.
unsafe impl Send for DpdkPort {}

impl fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkPort")
            .field("id", &self.id)
            .field("port", &self.device.port)
            .field("name", &self.device.name)
            .field("tx_queue", &self.tx_queue)
            .field("receives", &self.receives)
            .field("counters", &self.counters)
            .finish()
    }
}

impl DpdkPort {
    /// Open `device` with one receive and one transmit queue: [`DpdkPort::open_queues`]
    /// with a single handle, which receives.
    pub fn open(
        eal: &Eal,
        device: impl Into<EthDevice>,
        config: DpdkPortConfig,
    ) -> Result<DpdkPort, DpdkError> {
        let mut handles = DpdkPort::open_queues(eal, device, config, 1, 0)?;
        Ok(handles.pop().expect("open_queues gives one handle per transmit queue"))
    }

    /// Open `device` with one receive queue and `tx_queues` transmit queues, the mbuf pool
    /// behind them, an MTU that lets a whole FCoE frame in, promiscuous mode (FCoE's
    /// fabric-provided MAC addresses are not the NIC's own), and start it. Returns one handle
    /// per transmit queue, in queue order: handle k transmits on queue k, and handle
    /// `receiver` alone receives. A device with fewer transmit queues than asked for is
    /// refused before it is touched. The device is stopped and closed when the last handle
    /// drops; DPDK then releases it, and it cannot be opened again in this process.
    pub fn open_queues(
        eal: &Eal,
        device: impl Into<EthDevice>,
        config: DpdkPortConfig,
        tx_queues: u16,
        receiver: u16,
    ) -> Result<Vec<DpdkPort>, DpdkError> {
        if receiver >= tx_queues {
            return Err(DpdkError::ReceiverOutOfRange { receiver, handles: tx_queues });
        }
        let port = eal.resolve(&device.into())?;
        let name = port_name(port);
        let claim = eal.claim(port, &name)?;
        let check = |call: &'static str, ret: c_int| {
            if ret < 0 { Err(call_error(call, port, &name, ret)) } else { Ok(()) }
        };

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid place for the device's information for the call.
        check("rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(port, &mut info) })?;
        if info.max_tx_queues < tx_queues {
            return Err(DpdkError::TooManyTxQueues {
                port,
                name,
                wanted: tx_queues,
                max: info.max_tx_queues,
            });
        }
        let mut conf = sys::rte_eth_conf::default();
        // The MTU leaves room for the Ethernet header and a VLAN tag within one Frame.
        let mtu = u16::try_from(FRAME_CAPACITY - sys::RTE_ETHER_HDR_LEN as usize - VLAN_TAG_LEN)
            .unwrap_or(u16::MAX);
        conf.rxmode.mtu = u32::from(mtu.min(info.max_mtu));
        // SAFETY: conf is a valid configuration, read during the call only.
        let configured = unsafe { sys::rte_eth_dev_configure(port, 1, tx_queues, &conf) };
        check("rte_eth_dev_configure", configured)?;
        let (mut rx_descriptors, mut tx_descriptors) = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: both counts are valid places the call may adjust.
        let adjusted =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_descriptors, &mut tx_descriptors) };
        check("rte_eth_dev_adjust_nb_rx_tx_desc", adjusted)?;
        // SAFETY: plain query of a valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port) };
        // Every transmit queue may hold its descriptors' worth of mbufs until the NIC is done
        // with them, and each handle a burst in hand.
        let needed = u32::from(rx_descriptors)
            + u32::from(tx_queues) * u32::from(tx_descriptors)
            + (u32::from(tx_queues) + 1) * BURST as u32;
        let mbufs = eal.pool_for(port, &name, config.mbufs.max(needed), config.mbuf_cache, socket)?;
        // SOCKET_ID_ANY (-1) means any socket in the unsigned parameter too.
        let queue_socket = socket as c_uint;
        // SAFETY: the pool is valid for the process's life; a null rxconf asks for the
        // device's defaults.
        let rx = unsafe {
            sys::rte_eth_rx_queue_setup(port, 0, rx_descriptors, queue_socket, ptr::null(), mbufs.0.as_ptr())
        };
        check("rte_eth_rx_queue_setup", rx)?;
        for queue in 0..tx_queues {
            // SAFETY: a null txconf asks for the device's defaults; queue is below the count
            // the device was configured with.
            let tx = unsafe {
                sys::rte_eth_tx_queue_setup(port, queue, tx_descriptors, queue_socket, ptr::null())
            };
            check("rte_eth_tx_queue_setup", tx)?;
        }
        // SAFETY: the port is configured with all its queues set up.
        check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(port) })?;
        // SAFETY: plain call on a started port.
        let promiscuous = unsafe { sys::rte_eth_promiscuous_enable(port) };
        // A device without the operation (some virtual ones) filters no address anyway.
        if promiscuous < 0 && promiscuous != -ENOTSUP {
            // SAFETY: plain call on a started port; undoes the start above.
            unsafe { sys::rte_eth_dev_stop(port) };
            return Err(call_error("rte_eth_promiscuous_enable", port, &name, promiscuous));
        }
        let device = Arc::new(OpenDevice { port, name, control: Mutex::new(()), _claim: claim });
        Ok((0..tx_queues)
            .map(|tx_queue| DpdkPort {
                id: config.id,
                device: Arc::clone(&device),
                tx_queue,
                receives: tx_queue == receiver,
                mbufs,
                frames: config.frame_pool.clone(),
                counters: DpdkPortCounters::default(),
                burst: [ptr::null_mut(); BURST],
                burst_frames: [0; BURST],
            })
            .collect())
    }

    /// The transmit queue this handle uses.
    pub fn tx_queue(&self) -> u16 {
        self.tx_queue
    }

    /// Whether this handle receives (the device's one receiving handle).
    pub fn receives(&self) -> bool {
        self.receives
    }

    /// The DPDK port id.
    pub fn dpdk_port(&self) -> u16 {
        self.device.port
    }

    /// The ethdev's name.
    pub fn name(&self) -> &str {
        &self.device.name
    }

    /// What the port has done since it opened.
    pub fn counters(&self) -> DpdkPortCounters {
        self.counters
    }

    /// The device's MAC address.
    pub fn mac(&self) -> Result<MacAddr, DpdkError> {
        let mut mac = sys::rte_ether_addr::default();
        let _control = self.device.control.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: mac is a valid place for the address for the call; the device's control
        // lock is held.
        let ret = unsafe { sys::rte_eth_macaddr_get(self.device.port, &mut mac) };
        if ret < 0 {
            return Err(call_error("rte_eth_macaddr_get", self.device.port, &self.device.name, ret));
        }
        Ok(MacAddr(mac.addr_bytes))
    }

    /// The packet in `mbuf` (one segment or a chain) copied into a frame from the pool;
    /// `None` if it is longer than a frame or its segments do not add up to its length.
    fn copy_received(&self, mbuf: *mut sys::rte_mbuf) -> Option<Frame> {
        // SAFETY: mbuf came from rx_burst and is ours until freed.
        let len = unsafe { sys::dve_shim_pktmbuf_pkt_len(mbuf) } as usize;
        let mut frame = self.frames.alloc(len)?;
        let buf = frame.as_mut_slice();
        let mut at = 0;
        let mut segment = mbuf;
        while !segment.is_null() {
            // SAFETY: segment is a segment of the chain we own.
            let segment_len = usize::from(unsafe { sys::dve_shim_pktmbuf_data_len(segment) });
            let end = at + segment_len;
            if end > len {
                return None;
            }
            if segment_len > 0 {
                // SAFETY: as above; its data pointer is non-null for a valid mbuf.
                let data = unsafe { sys::dve_shim_pktmbuf_data(segment) }.cast::<u8>().cast_const();
                // SAFETY: the segment holds segment_len bytes at data, unchanged until the
                // mbuf is freed after this copy.
                let bytes = unsafe { std::slice::from_raw_parts(data, segment_len) };
                buf[at..end].copy_from_slice(bytes);
            }
            at = end;
            // SAFETY: as above.
            segment = unsafe { sys::dve_shim_pktmbuf_next(segment) };
        }
        (at == len).then(|| frame.freeze())
    }

    /// A fresh mbuf holding `frame`'s pieces in order; `None` if the pool is empty. The
    /// caller has checked the frame fits (at most [`MBUF_FRAME_ROOM`] bytes).
    fn mbuf_holding(&self, frame: &TxFrame) -> Option<*mut sys::rte_mbuf> {
        // SAFETY: the pool is valid for the process's life.
        let mbuf = unsafe { sys::dve_shim_pktmbuf_alloc(self.mbufs.0.as_ptr()) };
        if mbuf.is_null() {
            return None;
        }
        let len = u16::try_from(frame.len()).expect("checked against MBUF_FRAME_ROOM");
        // SAFETY: mbuf is fresh and ours; a fresh mbuf's tailroom is MBUF_FRAME_ROOM, so the
        // append succeeds.
        let data = unsafe { sys::dve_shim_pktmbuf_append(mbuf, len) }.cast::<u8>();
        if data.is_null() {
            // SAFETY: mbuf is ours and goes back to its pool.
            unsafe { sys::dve_shim_pktmbuf_free(mbuf) };
            return None;
        }
        // SAFETY: append made len bytes at data ours to write; nothing else refers to them.
        let out = unsafe { std::slice::from_raw_parts_mut(data, usize::from(len)) };
        let mut at = 0;
        for piece in frame.pieces() {
            out[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        Some(mbuf)
    }
}

impl PacketIo for DpdkPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn rx_burst(&mut self, out: &mut Vec<Frame>, max: usize) -> usize {
        if !self.receives {
            return 0;
        }
        let mut received = 0;
        while received < max {
            let want = (max - received).min(BURST) as u16;
            // SAFETY: burst has room for want mbuf pointers; the receive queue is this
            // handle's alone (see Send).
            let got = usize::from(unsafe {
                sys::dve_shim_rx_burst(self.device.port, 0, self.burst.as_mut_ptr(), want)
            });
            for i in 0..got {
                let mbuf = self.burst[i];
                match self.copy_received(mbuf) {
                    Some(frame) => {
                        out.push(frame);
                        received += 1;
                        self.counters.rx_frames += 1;
                    }
                    None => self.counters.rx_dropped += 1,
                }
                // SAFETY: rx_burst gave us mbuf; its bytes are copied and nothing refers to it.
                unsafe { sys::dve_shim_pktmbuf_free(mbuf) };
            }
            if got < usize::from(want) {
                break;
            }
        }
        received
    }

    fn tx_burst(&mut self, frames: &mut Vec<TxFrame>) -> usize {
        let mut sent = 0;
        // Frames at the front dealt with: sent, or dropped as too long.
        let mut done = 0;
        while done < frames.len() {
            let mut built = 0;
            let mut next = done;
            let mut out_of_mbufs = false;
            while built < BURST && next < frames.len() {
                if frames[next].len() > MBUF_FRAME_ROOM {
                    next += 1;
                    continue;
                }
                let Some(mbuf) = self.mbuf_holding(&frames[next]) else {
                    self.counters.mbuf_alloc_failures += 1;
                    out_of_mbufs = true;
                    break;
                };
                self.burst[built] = mbuf;
                self.burst_frames[built] = next;
                built += 1;
                next += 1;
            }
            let accepted = if built == 0 {
                0
            } else {
                // SAFETY: the first `built` entries of burst are mbufs we own; the device
                // takes those it accepts. The transmit queue is this handle's alone (see Send).
                usize::from(unsafe {
                    sys::dve_shim_tx_burst(
                        self.device.port,
                        self.tx_queue,
                        self.burst.as_mut_ptr(),
                        built as u16,
                    )
                })
            };
            for &mbuf in &self.burst[accepted..built] {
                // SAFETY: the device refused this mbuf, so it is still ours.
                unsafe { sys::dve_shim_pktmbuf_free(mbuf) };
            }
            // A refused frame and those after it stay with the caller.
            let handled_to = if accepted < built { self.burst_frames[accepted] } else { next };
            self.counters.tx_dropped += (handled_to - done - accepted) as u64;
            self.counters.tx_frames += accepted as u64;
            sent += accepted;
            done = handled_to;
            if accepted < built || out_of_mbufs {
                break;
            }
        }
        frames.drain(..done);
        sent
    }

    fn link_up(&self) -> bool {
        let mut link = sys::rte_eth_link::default();
        let _control = self.device.control.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: link is a valid place for the status for the call; the device's control
        // lock is held.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.device.port, &mut link) };
        ret == 0 && u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP
    }
}

/// Frames each direction of a [`ring_cable`] holds (a ring of 4096 slots keeps one free).
pub const RING_CABLE_FRAMES: u32 = 4095;

/// The longest name [`ring_cable`] takes: its rings are named after it, and DPDK names are
/// short (`RTE_RING_NAMESIZE`, less the memzone's prefix).
pub const RING_CABLE_NAME_MAX: usize = 16;

/// Make a *cable* of two ring ethdevs, for tests: every transmit queue of each end (there are
/// `tx_queues`, at most the ring PMD's 16) feeds the other end's single receive queue, so
/// both ends can be opened with [`DpdkPort::open_queues`] (or [`DpdkPort::open`]) and what
/// either sends, on any queue, arrives at the other. Returns the two ends' device names
/// (`net_ring_<name>_a` and `net_ring_<name>_b`). A direction is one multi-producer ring of
/// [`RING_CABLE_FRAMES`]; like mbuf pools, the rings are kept for the process's life, since a
/// closed end's mbufs may still sit in them. Taking the [`Eal`] makes sure EAL runs.
pub fn ring_cable(_eal: &Eal, name: &str, tx_queues: u16) -> Result<[String; 2], DpdkError> {
    let refuse = |reason: String| DpdkError::RingCable { name: name.to_owned(), reason };
    let max_queues = sys::RTE_PMD_RING_MAX_TX_RINGS as u16;
    if !(1..=max_queues).contains(&tx_queues) {
        return Err(refuse(format!("{tx_queues} transmit queues: the ring PMD has 1 to {max_queues}")));
    }
    if name.is_empty() || name.len() > RING_CABLE_NAME_MAX || !name.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(refuse(format!("a cable's name is 1 to {RING_CABLE_NAME_MAX} ASCII letters and digits")));
    }
    let ring = |direction: &str| -> Result<NonNull<sys::rte_ring>, DpdkError> {
        let ring_name = CString::new(format!("dve_{name}_{direction}")).expect("checked: no NUL");
        // SAFETY: ring_name is NUL-terminated and outlives the call, which copies it; flags 0
        // ask for a multi-producer, multi-consumer ring, which every transmit queue of an end
        // may feed at once.
        let raw =
            unsafe { sys::rte_ring_create(ring_name.as_ptr(), RING_CABLE_FRAMES + 1, SOCKET_ID_ANY, 0) };
        NonNull::new(raw)
            .ok_or_else(|| refuse(format!("rte_ring_create({ring_name:?}): {}", rte_errno_text())))
    };
    let a_to_b = ring("ab")?;
    let b_to_a = ring("ba")?;
    let end = |suffix: &str, rx: NonNull<sys::rte_ring>, tx: NonNull<sys::rte_ring>| {
        let end_name = CString::new(format!("{name}_{suffix}")).expect("checked: no NUL");
        let rx_queues = [rx.as_ptr()];
        let tx_rings = vec![tx.as_ptr(); usize::from(tx_queues)];
        // SAFETY: end_name is NUL-terminated; both arrays hold as many valid rings as their
        // counts say and are copied by the call; the rings live for the process's life.
        // SOCKET_ID_ANY as the unsigned node is what rte_eth_from_ring passes too.
        let port = unsafe {
            sys::rte_eth_from_rings(
                end_name.as_ptr(),
                rx_queues.as_ptr(),
                1,
                tx_rings.as_ptr(),
                c_uint::from(tx_queues),
                SOCKET_ID_ANY as c_uint,
            )
        };
        match u16::try_from(port) {
            Ok(port) if port_is_valid(port) => Ok(port_name(port)),
            _ => Err(refuse(format!("rte_eth_from_rings({end_name:?}): {}", rte_errno_text()))),
        }
    };
    Ok([end("a", b_to_a, a_to_b)?, end("b", a_to_b, b_to_a)?])
}

fn port_is_valid(port: u16) -> bool {
    // SAFETY: plain query; any id may be asked about.
    let valid = unsafe { sys::rte_eth_dev_is_valid_port(port) };
    valid == 1
}

/// The ethdev's name, or its number if DPDK does not know it.
fn port_name(port: u16) -> String {
    let mut buf: [c_char; sys::RTE_ETH_NAME_MAX_LEN as usize] = [0; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: buf has the RTE_ETH_NAME_MAX_LEN bytes the call may write.
    let ret = unsafe { sys::rte_eth_dev_get_name_by_port(port, buf.as_mut_ptr()) };
    if ret != 0 {
        return format!("port {port}");
    }
    // SAFETY: on success the call wrote a NUL-terminated name into buf.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn rte_errno() -> c_int {
    // SAFETY: reads the calling thread's rte_errno.
    unsafe { sys::dve_shim_errno() }
}

/// `rte_strerror` of the calling thread's `rte_errno`.
fn rte_errno_text() -> String {
    error_text(rte_errno())
}

/// `rte_strerror` of `errnum` (positive), with its number.
fn error_text(errnum: c_int) -> String {
    // SAFETY: plain call; any number may be asked about.
    let text = unsafe { sys::rte_strerror(errnum) };
    // SAFETY: rte_strerror returns a NUL-terminated string (static, or the calling thread's
    // buffer), valid until this thread's next call, after the copy below.
    let text = unsafe { CStr::from_ptr(text) };
    format!("{} (errno {errnum})", text.to_string_lossy())
}

/// A failed DPDK call on a port; `ret` is the negative errno DPDK functions return.
fn call_error(call: &'static str, port: u16, name: &str, ret: c_int) -> DpdkError {
    DpdkError::PortCall { call, port, name: name.to_owned(), reason: error_text(-ret) }
}
