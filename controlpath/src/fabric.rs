//! The switch's fabric services, sans-I/O: the fabric login server (FLOGI/FDISC address
//! assignment), the directory (name) server with its registrations and queries, the link
//! services of virtual targets (PLOGI, PRLI, LOGO, ABTS), and the control path's own logins
//! to physical FCP targets before it discovers their LUNs.

use std::collections::{BTreeMap, BTreeSet};

use dve_fp_api::frame::TxFrame;
use dve_fp_api::ids::{FcId, PortId, Wwn};
use dve_wire::bls::BlsRepr;
use dve_wire::ct::{CtHeaderRepr, NsAccept, NsRequest, PortIdList, fc4_types_contains};
use dve_wire::els::{
    ElsRepr, LoginParams, LogoRepr, LsRjtRepr, PrliPage, common_features, prli_fcp, prli_flags,
};
use dve_wire::els::{reject_explanation, reject_reason};
use dve_wire::emit::Concat;
use dve_wire::fc::{FcHeaderRepr, fc_type, r_ctl};
use dve_wire::stack::{FcPayload, Packet, parse_packet};

use crate::address::AddressPlan;
use crate::frames::{ControlExchangeIds, FrameBuilder};

/// How long the control path waits for a physical target's answer before retrying, in ns.
const LOGIN_TIMEOUT_NS: u64 = 200_000_000;
/// Attempts at logging in to a physical target before giving up.
const LOGIN_ATTEMPTS: u32 = 3;

/// A virtual target as the fabric shows it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VirtualTarget {
    /// Its address.
    pub fc_id: FcId,
    /// Port name.
    pub port_name: Wwn,
    /// Node name.
    pub node_name: Wwn,
    /// Hosts (port names) that may see it in the name server and log in to it.
    pub visible_to: BTreeSet<Wwn>,
}

/// An N_Port logged in to the fabric.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeLogin {
    /// Its address.
    pub fc_id: FcId,
    /// The port it is cabled to.
    pub port: PortId,
    /// Port name.
    pub port_name: Wwn,
    /// Node name.
    pub node_name: Wwn,
    /// Registered for FCP with the name server.
    pub fcp: bool,
}

/// What the fabric services did, for the control path to act on.
#[derive(Clone, PartialEq, Debug)]
pub enum FabricEvent {
    /// Transmit a frame on a port.
    Send {
        /// The port.
        port: PortId,
        /// The frame.
        frame: TxFrame,
    },
    /// An N_Port logged in to the fabric.
    LoggedIn(NodeLogin),
    /// An N_Port logged out of the fabric (or logged in again elsewhere).
    LoggedOut(NodeLogin),
    /// The control path is logged in to a physical FCP target (PLOGI and PRLI accepted, the
    /// target function offered): its LUNs can be discovered.
    TargetReady(NodeLogin),
    /// A host aborted an exchange with a virtual target (the worker has dropped its state).
    HostAbort {
        /// The host.
        host: FcId,
        /// The virtual target.
        target: FcId,
        /// The host's exchange id.
        ox_id: u16,
    },
}

/// The control path's login to a physical target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TargetLoginState {
    Plogi { ox_id: u16, deadline: u64, attempts: u32 },
    Prli { ox_id: u16, deadline: u64, attempts: u32 },
    Ready,
    Failed,
}

/// Counters of the fabric services.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FabricCounters {
    /// Fabric logins accepted.
    pub logins: u64,
    /// Name-server requests answered.
    pub name_server_requests: u64,
    /// Requests rejected (LS_RJT or CT reject).
    pub rejects: u64,
    /// Frames that could not be parsed or were not expected.
    pub dropped: u64,
}

/// The fabric services of one engine.
#[derive(Debug)]
pub struct Fabric {
    plan: AddressPlan,
    builder: FrameBuilder,
    switch_name: Wwn,
    ids: ControlExchangeIds,
    nodes: BTreeMap<u32, NodeLogin>,
    next_nport: BTreeMap<PortId, u32>,
    targets: BTreeMap<u32, VirtualTarget>,
    /// (host, virtual target) pairs with a port login.
    port_logins: BTreeSet<(u32, u32)>,
    target_logins: BTreeMap<u32, TargetLoginState>,
    counters: FabricCounters,
    events: Vec<FabricEvent>,
}

impl Fabric {
    /// The fabric of an engine with this address plan; `switch_name` is the fabric name.
    pub fn new(
        plan: AddressPlan,
        builder: FrameBuilder,
        switch_name: Wwn,
        ids: ControlExchangeIds,
    ) -> Fabric {
        Fabric {
            plan,
            builder,
            switch_name,
            ids,
            nodes: BTreeMap::new(),
            next_nport: BTreeMap::new(),
            targets: BTreeMap::new(),
            port_logins: BTreeSet::new(),
            target_logins: BTreeMap::new(),
            counters: FabricCounters::default(),
            events: Vec::new(),
        }
    }

    /// Counters as they stand.
    pub fn counters(&self) -> FabricCounters {
        self.counters
    }

    /// Events produced so far, drained.
    pub fn take_events(&mut self) -> Vec<FabricEvent> {
        std::mem::take(&mut self.events)
    }

    /// The N_Port logged in at `fc_id`.
    pub fn node(&self, fc_id: FcId) -> Option<&NodeLogin> {
        self.nodes.get(&fc_id.get())
    }

    /// The N_Port logged in with port name `name`.
    pub fn node_by_name(&self, name: Wwn) -> Option<&NodeLogin> {
        self.nodes.values().find(|n| n.port_name == name)
    }

    /// Every logged-in N_Port.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeLogin> + '_ {
        self.nodes.values()
    }

    /// Add or update a virtual target (registered in the name server like a physical one).
    pub fn set_virtual_target(&mut self, target: VirtualTarget) {
        self.targets.insert(target.fc_id.get(), target);
    }

    /// Remove a virtual target.
    pub fn remove_virtual_target(&mut self, fc_id: FcId) {
        self.targets.remove(&fc_id.get());
        self.port_logins.retain(|&(_, t)| t != fc_id.get());
    }

    /// Whether `host` has a port login with virtual target `target`.
    pub fn has_port_login(&self, host: FcId, target: FcId) -> bool {
        self.port_logins.contains(&(host.get(), target.get()))
    }

    /// Handle a frame the workers passed up. Returns false if it was not for the fabric
    /// services (the control path's other exchanges, e.g. FCP responses to its own I/O).
    pub fn handle_frame(&mut self, now: u64, port: PortId, bytes: &[u8]) -> bool {
        let Ok(Packet::Fcoe { frame, payload }) = parse_packet(bytes) else {
            self.counters.dropped += 1;
            return true;
        };
        let h = frame.header;
        let d_id = h.d_id.0;
        match payload {
            FcPayload::Els(els) if d_id == FcId::FABRIC_LOGIN.get() => self.login_server(port, &h, &els),
            FcPayload::Els(els) if d_id == FcId::NAME_SERVER.get() => self.name_server_login(port, &h, &els),
            FcPayload::Ct { request, header: ct, .. } if d_id == FcId::NAME_SERVER.get() => {
                self.name_server(port, &h, &ct, request)
            }
            FcPayload::Els(els) if self.targets.contains_key(&d_id) => {
                self.virtual_target_els(port, &h, &els)
            }
            FcPayload::Bls(BlsRepr::Abts) if self.targets.contains_key(&d_id) => {
                self.virtual_target_abts(port, &h)
            }
            FcPayload::Els(els) if self.is_own_initiator(d_id) => self.initiator_reply(now, &h, &els),
            FcPayload::Els(els) if els.is_reply() => {
                // A reply to something we no longer track.
                let _ = els;
                self.counters.dropped += 1;
            }
            FcPayload::Els(_) => {
                self.counters.rejects += 1;
                self.reject_els(port, &h, reject_reason::UNABLE_TO_PERFORM, reject_explanation::NONE);
            }
            _ => return false,
        }
        true
    }

    fn is_own_initiator(&self, d_id: u32) -> bool {
        self.plan.ports().iter().any(|p| p.initiator_fc_id.get() == d_id)
    }

    fn send(&mut self, port: PortId, frame: Option<TxFrame>) {
        if let Some(frame) = frame {
            self.events.push(FabricEvent::Send { port, frame });
        }
    }

    fn port_mac(&self, port: PortId) -> dve_wire::ethernet::MacAddr {
        self.plan.port(port).map(|p| p.mac).unwrap_or(dve_wire::ethernet::MacAddr([0x02, 0, 0, 0, 0, 0]))
    }

    fn reply_els(&mut self, port: PortId, h: &FcHeaderRepr, els: &ElsRepr) {
        let frame = self.builder.reply(self.port_mac(port), h, r_ctl::ELS_REPLY, fc_type::ELS, 0xFFFF, els);
        self.send(port, frame);
    }

    fn reject_els(&mut self, port: PortId, h: &FcHeaderRepr, reason: u8, explanation: u8) {
        self.reply_els(port, h, &ElsRepr::LsRjt(LsRjtRepr { reason, explanation, vendor: 0 }));
    }

    fn fabric_params(&self) -> LoginParams {
        let mut params = LoginParams::n_port(self.switch_name.0, self.switch_name.0);
        params.common_features |= common_features::F_PORT;
        params
    }

    /// FLOGI/FDISC at 0xFFFFFE: assign an N_Port ID on the port (the same one again for a
    /// port name that logs in again on the same port).
    fn login_server(&mut self, port: PortId, h: &FcHeaderRepr, els: &ElsRepr) {
        let params = match els {
            ElsRepr::Flogi(p) | ElsRepr::Fdisc(p) => *p,
            ElsRepr::Logo(logo) => {
                self.logout(logo.port_id.0);
                self.reply_els(port, h, &ElsRepr::Acc);
                return;
            }
            _ => {
                self.counters.rejects += 1;
                self.reject_els(port, h, reject_reason::COMMAND_NOT_SUPPORTED, reject_explanation::NONE);
                return;
            }
        };
        let name = Wwn(params.port_name);
        let existing = self.nodes.values().find(|n| n.port_name == name).copied();
        let fc_id = match existing {
            Some(n) if n.port == port => {
                // A port logging in again has lost every session: ours to it too.
                self.target_logins.remove(&n.fc_id.get());
                self.port_logins.retain(|&(host, _)| host != n.fc_id.get());
                Some(n.fc_id)
            }
            Some(n) => {
                self.logout(n.fc_id.get());
                self.assign(port)
            }
            None => self.assign(port),
        };
        let Some(fc_id) = fc_id else {
            self.counters.rejects += 1;
            self.reject_els(
                port,
                h,
                reject_reason::UNABLE_TO_PERFORM,
                reject_explanation::INSUFFICIENT_RESOURCES,
            );
            return;
        };
        let login = NodeLogin { fc_id, port, port_name: name, node_name: Wwn(params.node_name), fcp: false };
        self.nodes.insert(fc_id.get(), login);
        self.counters.logins += 1;
        // The accept goes to the newly assigned address.
        let mut reply_to = *h;
        reply_to.s_id = dve_wire::fc::FcId(fc_id.get());
        let frame = self.builder.reply(
            self.port_mac(port),
            &reply_to,
            r_ctl::ELS_REPLY,
            fc_type::ELS,
            0xFFFF,
            &ElsRepr::AccLogin(self.fabric_params()),
        );
        self.send(port, frame);
        if existing.is_none_or(|n| n.port != port) {
            self.events.push(FabricEvent::LoggedIn(login));
        }
    }

    fn assign(&mut self, port: PortId) -> Option<FcId> {
        let used: BTreeSet<u32> = self.nodes.keys().copied().collect();
        let start = *self.next_nport.get(&port).unwrap_or(&1);
        for step in 0..0xEF {
            let n = (start - 1 + step) % 0xEF + 1;
            let fc_id = self.plan.nport_address(port, n)?;
            if !used.contains(&fc_id.get()) {
                self.next_nport.insert(port, n % 0xEF + 1);
                return Some(fc_id);
            }
        }
        None
    }

    fn logout(&mut self, fc_id: u32) {
        if let Some(login) = self.nodes.remove(&fc_id) {
            self.port_logins.retain(|&(host, _)| host != fc_id);
            self.target_logins.remove(&fc_id);
            self.events.push(FabricEvent::LoggedOut(login));
        }
    }

    fn name_server_login(&mut self, port: PortId, h: &FcHeaderRepr, els: &ElsRepr) {
        match els {
            ElsRepr::Plogi(_) if self.nodes.contains_key(&h.s_id.0) => {
                let params = LoginParams::n_port(self.switch_name.0, self.switch_name.0);
                self.reply_els(port, h, &ElsRepr::AccLogin(params));
            }
            ElsRepr::Logo(_) => self.reply_els(port, h, &ElsRepr::Acc),
            _ => {
                self.counters.rejects += 1;
                self.reject_els(
                    port,
                    h,
                    reject_reason::UNABLE_TO_PERFORM,
                    reject_explanation::LOGIN_REQUIRED,
                );
            }
        }
    }

    fn ct_reply(&mut self, port: PortId, h: &FcHeaderRepr, accept: Result<NsAccept<'_>, (u8, u8)>) {
        let frame = match accept {
            Ok(body) => {
                let payload = Concat(CtHeaderRepr::name_server_accept(), body);
                self.builder.reply(
                    self.port_mac(port),
                    h,
                    r_ctl::SOLICITED_CONTROL,
                    fc_type::CT,
                    0xFFFF,
                    &payload,
                )
            }
            Err((reason, explanation)) => {
                self.counters.rejects += 1;
                let payload = CtHeaderRepr::name_server_reject(reason, explanation);
                self.builder.reply(
                    self.port_mac(port),
                    h,
                    r_ctl::SOLICITED_CONTROL,
                    fc_type::CT,
                    0xFFFF,
                    &payload,
                )
            }
        };
        self.send(port, frame);
    }

    /// The directory server. Hosts see the virtual targets exposed to them; physical FCP
    /// targets are visible only to the switch itself (its own zone).
    fn name_server(
        &mut self,
        port: PortId,
        h: &FcHeaderRepr,
        _ct: &CtHeaderRepr,
        request: Option<NsRequest>,
    ) {
        self.counters.name_server_requests += 1;
        let requester = h.s_id.0;
        let Some(me) = self.nodes.get(&requester).copied() else {
            self.ct_reply(
                port,
                h,
                Err((ct_code_reason::UNABLE, ct_code_explanation::PORT_ID_NOT_REGISTERED)),
            );
            return;
        };
        let Some(request) = request else {
            self.ct_reply(port, h, Err((ct_code_reason::NOT_SUPPORTED, ct_code_explanation::NONE)));
            return;
        };
        let own = |id: dve_wire::fc::FcId| id.0 == requester;
        match request {
            NsRequest::RftId { port_id, fc4_types } if own(port_id) => {
                let fcp = fc4_types_contains(&fc4_types, fc_type::FCP);
                if let Some(node) = self.nodes.get_mut(&requester) {
                    node.fcp = fcp;
                }
                self.ct_reply(port, h, Ok(NsAccept::Registered));
                if fcp {
                    self.start_target_login(me);
                }
            }
            NsRequest::RpnId { port_id, port_name } if own(port_id) && Wwn(port_name) == me.port_name => {
                self.ct_reply(port, h, Ok(NsAccept::Registered));
            }
            NsRequest::RnnId { port_id, node_name } if own(port_id) => {
                if let Some(node) = self.nodes.get_mut(&requester) {
                    node.node_name = Wwn(node_name);
                }
                self.ct_reply(port, h, Ok(NsAccept::Registered));
            }
            NsRequest::RftId { .. } | NsRequest::RpnId { .. } | NsRequest::RnnId { .. } => {
                self.ct_reply(port, h, Err((ct_code_reason::UNABLE, ct_code_explanation::ACCESS_DENIED)));
            }
            NsRequest::GidFt { fc_type: t, .. } => {
                let ids: Vec<dve_wire::fc::FcId> = if t == fc_type::FCP {
                    self.targets
                        .values()
                        .filter(|v| v.visible_to.contains(&me.port_name))
                        .map(|v| dve_wire::fc::FcId(v.fc_id.get()))
                        .collect()
                } else {
                    Vec::new()
                };
                if ids.is_empty() {
                    self.ct_reply(
                        port,
                        h,
                        Err((ct_code_reason::UNABLE, ct_code_explanation::FC4_TYPES_NOT_REGISTERED)),
                    );
                } else {
                    self.ct_reply(port, h, Ok(NsAccept::PortIds(PortIdList::Ids(&ids))));
                }
            }
            NsRequest::GpnId { port_id } | NsRequest::GnnId { port_id } => {
                let names = self
                    .targets
                    .get(&port_id.0)
                    .filter(|v| v.visible_to.contains(&me.port_name))
                    .map(|v| (v.port_name, v.node_name))
                    .or_else(|| (port_id.0 == requester).then_some((me.port_name, me.node_name)));
                match (names, request) {
                    (Some((p, _)), NsRequest::GpnId { .. }) => {
                        self.ct_reply(port, h, Ok(NsAccept::PortName(p.0)))
                    }
                    (Some((_, n)), _) => self.ct_reply(port, h, Ok(NsAccept::NodeName(n.0))),
                    (None, _) => self.ct_reply(
                        port,
                        h,
                        Err((ct_code_reason::UNABLE, ct_code_explanation::PORT_ID_NOT_REGISTERED)),
                    ),
                }
            }
        }
    }

    fn virtual_target_els(&mut self, port: PortId, h: &FcHeaderRepr, els: &ElsRepr) {
        let host = h.s_id.0;
        let target = h.d_id.0;
        let Some(vt) = self.targets.get(&target).cloned() else { return };
        let host_login = self.nodes.get(&host).copied();
        let visible = host_login.is_some_and(|n| vt.visible_to.contains(&n.port_name));
        match els {
            ElsRepr::Plogi(_) if visible => {
                self.port_logins.insert((host, target));
                let params = LoginParams::n_port(vt.port_name.0, vt.node_name.0);
                self.reply_els(port, h, &ElsRepr::AccLogin(params));
            }
            ElsRepr::Prli(page) if self.port_logins.contains(&(host, target)) => {
                let accept = PrliPage {
                    fc_type: fc_type::FCP,
                    type_ext: 0,
                    flags: prli_flags::IMAGE_PAIR_ESTABLISHED | 0x01,
                    originator_pa: 0,
                    responder_pa: 0,
                    service_params: prli_fcp::TARGET | prli_fcp::READ_XFER_RDY_DISABLED,
                };
                if page.fc_type == fc_type::FCP {
                    self.reply_els(port, h, &ElsRepr::AccPrli(accept));
                } else {
                    self.counters.rejects += 1;
                    self.reject_els(port, h, reject_reason::UNABLE_TO_PERFORM, reject_explanation::OPTIONS);
                }
            }
            ElsRepr::Logo(_) => {
                self.port_logins.remove(&(host, target));
                self.reply_els(port, h, &ElsRepr::Acc);
            }
            ElsRepr::Plogi(_) => {
                self.counters.rejects += 1;
                self.reject_els(
                    port,
                    h,
                    reject_reason::UNABLE_TO_PERFORM,
                    reject_explanation::INVALID_PORT_NAME,
                );
            }
            ElsRepr::Prli(_) => {
                self.counters.rejects += 1;
                self.reject_els(
                    port,
                    h,
                    reject_reason::UNABLE_TO_PERFORM,
                    reject_explanation::LOGIN_REQUIRED,
                );
            }
            _ => {
                self.counters.rejects += 1;
                self.reject_els(port, h, reject_reason::COMMAND_NOT_SUPPORTED, reject_explanation::NONE);
            }
        }
    }

    /// ABTS from a host to a virtual target: the worker has already dropped its exchange
    /// state; answer BA_ACC and tell the control path.
    fn virtual_target_abts(&mut self, port: PortId, h: &FcHeaderRepr) {
        let acc = BlsRepr::BaAcc {
            seq_id: None,
            ox_id: h.ox_id,
            rx_id: h.rx_id,
            low_seq_cnt: 0,
            high_seq_cnt: 0xFFFF,
        };
        let frame =
            self.builder.reply(self.port_mac(port), h, r_ctl::BLS_BA_ACC, fc_type::BLS, h.rx_id, &acc);
        self.send(port, frame);
        if let (Some(host), Some(target)) = (FcId::new(h.s_id.0), FcId::new(h.d_id.0)) {
            self.events.push(FabricEvent::HostAbort { host, target, ox_id: h.ox_id });
        }
    }

    /// Log in to an N_Port that registered for FCP: PLOGI then PRLI from the switch's
    /// initiator address on the port it is cabled to.
    fn start_target_login(&mut self, node: NodeLogin) {
        if matches!(self.target_logins.get(&node.fc_id.get()), Some(TargetLoginState::Ready)) {
            return;
        }
        self.send_plogi(node, 0, 1);
    }

    fn send_plogi(&mut self, node: NodeLogin, now: u64, attempts: u32) {
        let Some(p) = self.plan.port(node.port).copied() else { return };
        let ox_id = self.ids.allocate().0;
        let params = LoginParams::n_port(self.switch_name.0 | 0x1000_0000_0000_0000, self.switch_name.0);
        let frame = self.builder.request(
            p.mac,
            p.initiator_fc_id.get(),
            node.fc_id.get(),
            r_ctl::ELS_REQUEST,
            fc_type::ELS,
            ox_id,
            &ElsRepr::Plogi(params),
        );
        self.send(node.port, frame);
        self.target_logins.insert(
            node.fc_id.get(),
            TargetLoginState::Plogi { ox_id, deadline: now + LOGIN_TIMEOUT_NS, attempts },
        );
    }

    fn send_prli(&mut self, node: NodeLogin, now: u64, attempts: u32) {
        let Some(p) = self.plan.port(node.port).copied() else { return };
        let ox_id = self.ids.allocate().0;
        let page = PrliPage {
            fc_type: fc_type::FCP,
            type_ext: 0,
            flags: prli_flags::ESTABLISH_IMAGE_PAIR,
            originator_pa: 0,
            responder_pa: 0,
            service_params: prli_fcp::INITIATOR | prli_fcp::READ_XFER_RDY_DISABLED,
        };
        let frame = self.builder.request(
            p.mac,
            p.initiator_fc_id.get(),
            node.fc_id.get(),
            r_ctl::ELS_REQUEST,
            fc_type::ELS,
            ox_id,
            &ElsRepr::Prli(page),
        );
        self.send(node.port, frame);
        self.target_logins.insert(
            node.fc_id.get(),
            TargetLoginState::Prli { ox_id, deadline: now + LOGIN_TIMEOUT_NS, attempts },
        );
    }

    /// Replies to the control path's own PLOGI/PRLI, and link services physical ports send
    /// to the switch's initiator address.
    fn initiator_reply(&mut self, now: u64, h: &FcHeaderRepr, els: &ElsRepr) {
        let from = h.s_id.0;
        let Some(node) = self.nodes.get(&from).copied() else {
            self.counters.dropped += 1;
            return;
        };
        let state = self.target_logins.get(&from).copied();
        match (state, els) {
            (Some(TargetLoginState::Plogi { ox_id, .. }), ElsRepr::AccLogin(_)) if ox_id == h.ox_id => {
                self.send_prli(node, now, 1);
            }
            (Some(TargetLoginState::Prli { ox_id, .. }), ElsRepr::AccPrli(page)) if ox_id == h.ox_id => {
                let accepted = page.flags & prli_flags::RESPONSE_CODE_MASK == 0x01;
                if accepted && page.service_params & prli_fcp::TARGET != 0 {
                    self.target_logins.insert(from, TargetLoginState::Ready);
                    self.events.push(FabricEvent::TargetReady(node));
                } else {
                    // An initiator (a host): nothing to discover.
                    self.target_logins.insert(from, TargetLoginState::Failed);
                }
            }
            (
                Some(TargetLoginState::Plogi { ox_id, .. } | TargetLoginState::Prli { ox_id, .. }),
                ElsRepr::LsRjt(_),
            ) if ox_id == h.ox_id => {
                self.target_logins.insert(from, TargetLoginState::Failed);
            }
            (_, ElsRepr::Logo(LogoRepr { .. })) => {
                // The target logged us out: log in again.
                let port = node.port;
                self.reply_els(port, h, &ElsRepr::Acc);
                self.target_logins.remove(&from);
                self.send_plogi(node, now, 1);
            }
            _ => self.counters.dropped += 1,
        }
    }

    /// Retry logins that timed out; call periodically.
    pub fn tick(&mut self, now: u64) {
        let due: Vec<(u32, TargetLoginState)> = self
            .target_logins
            .iter()
            .filter(|(_, s)| match s {
                TargetLoginState::Plogi { deadline, .. } | TargetLoginState::Prli { deadline, .. } => {
                    *deadline <= now
                }
                _ => false,
            })
            .map(|(k, s)| (*k, *s))
            .collect();
        for (fc_id, state) in due {
            let Some(node) = self.nodes.get(&fc_id).copied() else {
                self.target_logins.remove(&fc_id);
                continue;
            };
            match state {
                TargetLoginState::Plogi { attempts, .. } | TargetLoginState::Prli { attempts, .. }
                    if attempts >= LOGIN_ATTEMPTS =>
                {
                    self.target_logins.insert(fc_id, TargetLoginState::Failed);
                }
                TargetLoginState::Plogi { attempts, .. } => self.send_plogi(node, now, attempts + 1),
                TargetLoginState::Prli { attempts, .. } => self.send_prli(node, now, attempts + 1),
                _ => {}
            }
        }
    }

    /// Log in to a physical target again (after its path failed and came back).
    pub fn relogin(&mut self, fc_id: FcId, now: u64) {
        if let Some(node) = self.nodes.get(&fc_id.get()).copied() {
            self.target_logins.remove(&fc_id.get());
            self.send_plogi(node, now, 1);
        }
    }
}

/// CT reject reason codes the name server uses.
mod ct_code_reason {
    pub const UNABLE: u8 = dve_wire::ct::reject_reason::UNABLE_TO_PERFORM;
    pub const NOT_SUPPORTED: u8 = dve_wire::ct::reject_reason::COMMAND_NOT_SUPPORTED;
}

/// CT reject explanations the name server uses.
mod ct_code_explanation {
    pub const NONE: u8 = dve_wire::ct::reject_explanation::NONE;
    pub const PORT_ID_NOT_REGISTERED: u8 = dve_wire::ct::reject_explanation::PORT_ID_NOT_REGISTERED;
    pub const FC4_TYPES_NOT_REGISTERED: u8 = dve_wire::ct::reject_explanation::FC4_TYPES_NOT_REGISTERED;
    pub const ACCESS_DENIED: u8 = dve_wire::ct::reject_explanation::ACCESS_DENIED;
}

#[cfg(test)]
mod tests {
    use dve_fp_api::ids::{ExchangeIdLayout, PortId, Wwn};
    use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
    use dve_wire::fc::{FcHeaderRepr, FcId as WireFcId, f_ctl, fc_type, r_ctl};
    use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
    use dve_wire::stack::{emit_fcoe_frame, parse_packet};
    use proptest::prelude::*;

    use super::*;
    use crate::address::AddressPlan;
    use crate::frames::{ControlExchangeIds, DEFAULT_FC_MAP, FrameBuilder};

    fn fabric() -> Fabric {
        let layout = ExchangeIdLayout::new(4).unwrap();
        Fabric::new(
            AddressPlan::new(1, 4, 2),
            FrameBuilder { fc_map: DEFAULT_FC_MAP },
            Wwn(0x10),
            ControlExchangeIds::new(layout),
        )
    }

    fn frame<P: dve_wire::emit::WireEmit + ?Sized>(
        s_id: u32,
        d_id: u32,
        r: u8,
        ty: u8,
        payload: &P,
    ) -> Vec<u8> {
        let header = FcHeaderRepr {
            r_ctl: r,
            d_id: WireFcId(d_id),
            cs_ctl: 0,
            s_id: WireFcId(s_id),
            fc_type: ty,
            f_ctl: f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            seq_id: 0,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id: 7,
            rx_id: 0xFFFF,
            parameter: 0,
        };
        let eth = EthernetRepr {
            dst_addr: MacAddr([0x0e, 0xfc, 0, 0xff, 0xff, 0xfe]),
            src_addr: MacAddr([2, 0, 0, 0, 0, 9]),
            vlan: None,
            ethertype: ETHERTYPE_FCOE,
        };
        let mut buf = vec![0u8; 2400];
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &header, payload)
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn sent(f: &mut Fabric) -> Vec<Vec<u8>> {
        f.take_events()
            .into_iter()
            .filter_map(|e| match e {
                FabricEvent::Send { frame, .. } => {
                    let mut out = Vec::new();
                    frame.write_to(&mut out);
                    Some(out)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn flogi_assigns_an_address_on_the_port_and_the_same_one_again() {
        let mut f = fabric();
        let flogi = frame(
            0,
            FcId::FABRIC_LOGIN.get(),
            r_ctl::ELS_REQUEST,
            fc_type::ELS,
            &ElsRepr::Flogi(LoginParams::n_port(0x21, 0x20)),
        );
        assert!(f.handle_frame(0, PortId(2), &flogi));
        let replies = sent(&mut f);
        assert_eq!(replies.len(), 1);
        let Ok(Packet::Fcoe { frame, payload: FcPayload::Els(ElsRepr::AccLogin(params)) }) =
            parse_packet(&replies[0])
        else {
            panic!("an LS_ACC with login parameters");
        };
        assert_eq!(frame.header.d_id.0, 0x01_03_01, "domain 1, area port+1, first N_Port");
        assert_ne!(params.common_features & common_features::F_PORT, 0);
        let node = *f.node(FcId::new(0x01_03_01).unwrap()).unwrap();
        assert_eq!(node.port_name, Wwn(0x21));
        // Logging in again on the same port keeps the address.
        assert!(f.handle_frame(0, PortId(2), &flogi));
        let again = sent(&mut f);
        let Ok(Packet::Fcoe { frame, .. }) = parse_packet(&again[0]) else { panic!() };
        assert_eq!(frame.header.d_id.0, 0x01_03_01);
        assert_eq!(f.nodes().count(), 1);
    }

    #[test]
    fn the_name_server_refuses_ports_that_did_not_log_in() {
        let mut f = fabric();
        let gid = (
            CtHeaderRepr::name_server_request(dve_wire::ct::code::GID_FT),
            NsRequest::GidFt { domain_scope: 0, area_scope: 0, fc_type: fc_type::FCP },
        );
        let q = frame(
            0x01_01_05,
            FcId::NAME_SERVER.get(),
            r_ctl::UNSOLICITED_CONTROL,
            fc_type::CT,
            &dve_wire::emit::Concat(gid.0, gid.1),
        );
        assert!(f.handle_frame(0, PortId(0), &q));
        let replies = sent(&mut f);
        let Ok(Packet::Fcoe { payload: FcPayload::Ct { header, .. }, .. }) = parse_packet(&replies[0]) else {
            panic!()
        };
        assert_eq!(header.command, dve_wire::ct::code::REJECT);
        assert_eq!(f.counters().rejects, 1);
    }

    proptest! {
        /// Any bytes at all, as a frame from any port: no panic, and nothing but replies.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), port in 0u16..6) {
            let mut f = fabric();
            f.handle_frame(0, PortId(port), &bytes);
            f.tick(1_000_000_000);
            for e in f.take_events() {
                let is_send = matches!(e, FabricEvent::Send { .. });
                prop_assert!(is_send, "only replies come out of garbage: {:?}", e);
            }
        }

        /// Well-formed headers around random ELS and CT payloads: no panic either.
        #[test]
        fn random_payloads_to_every_service_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            which in 0usize..4,
        ) {
            let mut f = fabric();
            let flogi = frame(0, FcId::FABRIC_LOGIN.get(), r_ctl::ELS_REQUEST, fc_type::ELS, &ElsRepr::Flogi(LoginParams::n_port(0x21, 0x20)));
            f.handle_frame(0, PortId(0), &flogi);
            let (d_id, r, ty) = [
                (FcId::FABRIC_LOGIN.get(), r_ctl::ELS_REQUEST, fc_type::ELS),
                (FcId::NAME_SERVER.get(), r_ctl::UNSOLICITED_CONTROL, fc_type::CT),
                (FcId::NAME_SERVER.get(), r_ctl::ELS_REQUEST, fc_type::ELS),
                (0x01_01_FE, r_ctl::ELS_REPLY, fc_type::ELS),
            ][which];
            let bytes = frame(0x01_01_01, d_id, r, ty, &payload[..]);
            f.handle_frame(1, PortId(0), &bytes);
            f.tick(2_000_000_000);
        }
    }
}
