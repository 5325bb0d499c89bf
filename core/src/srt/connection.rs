//! One live-mode SRT connection after the handshake: data in both
//! directions with ARQ, TSBPD delivery, ACK/ACKACK/NAK, keep-alive, idle
//! timeout and shutdown (draft-sharabayko-srt-01 §4.4–§4.10).
//!
//! The machine deals in decoded [`Packet`]s for one peer; the endpoint
//! (or a test) moves them to and from datagrams. Inputs:
//! [`Connection::handle_packet`], [`Connection::send`],
//! [`Connection::handle_timeout`], [`Connection::close`]. Outputs, drained
//! until `None`: [`Connection::poll_packet`] (control first, then data),
//! [`Connection::poll_delivered`] (payloads due under TSBPD) and
//! [`Connection::poll_timeout`].
//!
//! Timers (all from `now` arguments): a full ACK every
//! [`rtt::ACK_PERIOD`](super::rtt::ACK_PERIOD) when there is something new
//! to acknowledge; a NAK on each detected gap and a periodic NAK of the
//! whole loss list every [`Connection::nak_period`]; a keep-alive after
//! [`KEEPALIVE_PERIOD`] without sending; closed after [`IDLE_TIMEOUT`]
//! without receiving. Packets the sender drops unacknowledged are announced
//! with a DROPREQ (§3.2.9); a received DROPREQ takes its range off the
//! loss list. Encryption is the endpoint's job (per connection keys, see
//! [`super::crypto`]); not here: congestion control (live mode paces at
//! the application's rate).
//!
//! Flow control (§3.2.4, libsrt semantics): new data packets go out only
//! while the packets in flight (sent, not acknowledged) number fewer than
//! the peer's flow window and the free buffer the peer advertised in its
//! last ACK ("Available Buffer Size"); our ACKs advertise the real free
//! space of our receive buffer, which is sized separately from the flow
//! window ([`ConnectionConfig::recv_buffer`], libsrt `SRTO_RCVBUF`), so
//! packets acknowledged but still held for TSBPD delivery occupy buffer
//! space, not the peer's flight window.
//!
//! Proof of life of a receiving peer (an arcly rule anchored on libsrt's
//! peer-idle timeout, `SRTO_PEERIDLETIMEO`): a libsrt receiver acknowledges
//! new data every 10 ms (a full ACK per SYN interval, §4.8.1), so data sent
//! and not acknowledged for long means nobody is reading it. Until the
//! peer's first ACK that acknowledges data, at most
//! [`INITIAL_UNACKED_WINDOW`] packets are in flight (a silent viewer's
//! two-packet handshake costs a few dozen packets, not seconds of stream);
//! when sent data sees no acknowledging ACK for [`ACK_STALL_PAUSE`] the
//! sender pauses (one probe packet per pause period, so a receiver whose
//! ACKs were lost is asked again); after [`ACK_STALL_CLOSE`] without one the
//! connection closes with [`Closed::Unresponsive`]. KEEPALIVEs and other
//! control packets keep the peer-idle timer alive but are no proof of
//! reading: a KEEPALIVE-only viewer is not streamed to.
//!
//! Invariants: the control queue holds at most [`MAX_CONTROL_QUEUE`]
//! packets (the oldest NAK/ACK is superseded by newer ones anyway); the
//! send buffer is bounded by the flow window and the receive buffer by
//! [`ConnectionConfig::recv_buffer`].

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::packet::{Ack, AckKind, AckStats, Control, ControlPacket, LossList, Packet, SocketId};
use super::recv_buffer::{Delivered, Received, RecvBuffer, RecvStats};
use super::rtt::{AckHistory, RttEstimator, ACK_PERIOD};
use super::send_buffer::{SendBuffer, SendError, SendStats};
use super::seq::{SeqNo, Timestamp};
use crate::time::Instant;

/// Keep-alive period when nothing else is sent (§3.2.3; libsrt: 1 s).
pub const KEEPALIVE_PERIOD: Duration = Duration::from_secs(1);
/// Peer idle timeout (libsrt `SRTO_PEERIDLETIMEO` default 5 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Data packets in flight before the peer's first acknowledging ACK (see
/// the module docs, proof of life).
pub const INITIAL_UNACKED_WINDOW: u32 = 64;
/// Sent data unacknowledged this long pauses the sender (one probe packet
/// per period after that).
pub const ACK_STALL_PAUSE: Duration = Duration::from_secs(1);
/// Sent data unacknowledged this long closes the connection
/// ([`Closed::Unresponsive`]); libsrt's peer idle timeout.
pub const ACK_STALL_CLOSE: Duration = IDLE_TIMEOUT;
/// Most control packets queued for sending.
pub const MAX_CONTROL_QUEUE: usize = 64;
/// Default receive buffer size in packets (libsrt `SRTO_RCVBUF` default:
/// 8192 buffers).
pub const DEFAULT_RECV_BUFFER: u32 = 8192;
/// Smallest available buffer size an ACK advertises, and the smallest
/// send window the sender uses: libsrt never advertises less than 2, so
/// that a full receiver still lets packets through that trigger the next
/// ACK (no flow-control deadlock).
pub const MIN_FLOW_WINDOW: u32 = 2;

/// Extra wait of a graceful close after the peer's TSBPD time of the last
/// packet. A libsrt receiver discards whatever its application has not read
/// yet when SHUTDOWN arrives, and it plays packets on its own estimate of our
/// clock, which trails ours by the one-way delay and drift; closing exactly
/// at the TSBPD time cut the last 5–6 frames (200 ms) off ffprobe viewers in
/// the interop tests, closing 500 ms later cut none.
pub const DRAIN_MARGIN: Duration = Duration::from_millis(500);

/// Parameters agreed in the handshake.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The peer's socket id (destination of everything we send).
    pub peer_socket: SocketId,
    /// Our initial sequence number (first data packet we send).
    pub send_isn: SeqNo,
    /// The peer's initial sequence number (first data packet we expect).
    pub recv_isn: SeqNo,
    /// Negotiated TSBPD latency.
    pub latency: Duration,
    /// The peer's flow window in packets ("Maximum Flow Window Size" of
    /// its handshake, §3.2.1): at most this many packets in flight; also
    /// the send buffer's capacity.
    pub flow_window: u32,
    /// Our receive buffer size in packets (libsrt `SRTO_RCVBUF`, default
    /// [`DEFAULT_RECV_BUFFER`]); its free space is advertised in ACKs.
    pub recv_buffer: u32,
    /// Connection start: packet timestamps count µs from here (§4.5).
    pub start: Instant,
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer sent SHUTDOWN.
    ByPeer,
    /// We called [`Connection::close`].
    Locally,
    /// Nothing received for [`IDLE_TIMEOUT`].
    IdleTimeout,
    /// Data we sent was not acknowledged for [`ACK_STALL_CLOSE`] (the
    /// peer sends, e.g. KEEPALIVEs, but reads nothing).
    Unresponsive,
}

/// The live-mode connection machine (see the module docs).
#[derive(Debug)]
pub struct Connection {
    cfg: ConnectionConfig,
    send: SendBuffer,
    recv: RecvBuffer,
    rtt: RttEstimator,
    acks: AckHistory,
    control: VecDeque<ControlPacket>,
    next_ack_no: u32,
    last_acked: Option<SeqNo>,
    /// The peer's last advertised available buffer, and the ACK it came in.
    peer_available: u32,
    peer_acked: Option<SeqNo>,
    /// Set by [`Connection::close_after_drain`]: close once the send
    /// buffer is acknowledged, or at this instant at the latest.
    drain_deadline: Option<Instant>,
    /// When the last payload was queued (its timestamp's instant).
    last_queued: Option<Instant>,
    next_ack_at: Instant,
    last_nak_at: Instant,
    last_sent: Instant,
    last_recv: Instant,
    /// The peer acknowledged data at least once.
    ack_seen: bool,
    /// Since when sent data waits for an acknowledging ACK (`None`: nothing
    /// in flight, or the last ACK acknowledged everything sent).
    ack_wait_since: Option<Instant>,
    /// While paused: when the next probe packet may go out.
    next_probe_at: Instant,
    closed: Option<Closed>,
}

impl Connection {
    /// A connection that starts at `cfg.start`.
    pub fn new(cfg: ConnectionConfig) -> Self {
        let now = cfg.start;
        Self::new_at(cfg, now)
    }

    /// A connection whose timers start at `now` while its packet
    /// timestamps count from `cfg.start` (an earlier instant): a caller
    /// keeps the time base of its handshake, because libsrt takes the
    /// peer's start time from the HSREQ's timestamp (§4.5).
    pub fn new_at(cfg: ConnectionConfig, now: Instant) -> Self {
        let window = cfg.flow_window.max(1);
        Connection {
            send: SendBuffer::new(
                cfg.send_isn,
                cfg.peer_socket,
                window as usize,
                cfg.latency + Duration::from_secs(1),
            ),
            recv: RecvBuffer::new(
                cfg.recv_isn,
                cfg.latency,
                cfg.recv_buffer.max(MIN_FLOW_WINDOW),
            ),
            rtt: RttEstimator::default(),
            acks: AckHistory::new(),
            control: VecDeque::new(),
            next_ack_no: 1,
            last_acked: None,
            peer_available: window,
            peer_acked: None,
            drain_deadline: None,
            last_queued: None,
            next_ack_at: now + ACK_PERIOD,
            last_nak_at: now,
            last_sent: now,
            last_recv: now,
            ack_seen: false,
            ack_wait_since: None,
            next_probe_at: now,
            closed: None,
            cfg,
        }
    }

    /// Why the connection closed, if it did.
    pub fn closed(&self) -> Option<Closed> {
        self.closed
    }

    /// The RTT estimate.
    pub fn rtt(&self) -> RttEstimator {
        self.rtt
    }

    /// Receive-path counters.
    pub fn recv_stats(&self) -> RecvStats {
        self.recv.stats()
    }

    /// Send-path counters.
    pub fn send_stats(&self) -> SendStats {
        self.send.stats()
    }

    /// `true` once everything queued with [`Connection::send`] was
    /// acknowledged by the peer (or given up by too-late drop): closing
    /// now loses nothing.
    pub fn is_send_drained(&self) -> bool {
        self.send.is_drained()
    }

    /// Packets sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.send.in_flight()
    }

    /// Most packets the sender may have in flight now: the peer's flow
    /// window and its last advertised available buffer, whichever is
    /// smaller, but at least [`MIN_FLOW_WINDOW`].
    pub fn send_window(&self) -> u32 {
        self.cfg
            .flow_window
            .min(self.peer_available)
            .max(MIN_FLOW_WINDOW)
    }

    fn timestamp(&self, now: Instant) -> Timestamp {
        Timestamp(now.saturating_duration_since(self.cfg.start).as_micros() as u32)
    }

    fn queue_control(&mut self, now: Instant, body: Control) {
        if self.control.len() >= MAX_CONTROL_QUEUE {
            self.control.pop_front();
        }
        self.control.push_back(ControlPacket {
            timestamp: self.timestamp(now),
            dest: self.cfg.peer_socket,
            body,
        });
    }

    /// Periodic NAK interval: the RTT-based period of §4.8.2, capped at a
    /// quarter of the latency (an arcly choice) so that a lost NAK or a lost
    /// retransmission still gets further chances within the latency budget
    /// before the RTT estimate has converged from its 100 ms start.
    pub fn nak_period(&self) -> Duration {
        self.rtt
            .nak_period()
            .min(self.cfg.latency / 4)
            .max(super::rtt::MIN_NAK_PERIOD)
    }

    /// Queues one payload (a live-mode message of at most one packet).
    pub fn send(&mut self, now: Instant, payload: Bytes) -> Result<SeqNo, SendError> {
        let ts = self.timestamp(now);
        let seq = self.send.push(now, ts, payload)?;
        self.last_queued = Some(now);
        Ok(seq)
    }

    /// Feeds one packet from the peer.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        if self.closed.is_some() {
            return;
        }
        self.last_recv = now;
        match packet {
            Packet::Data(d) => {
                if let Received::StoredWithGap { first, last } = self.recv.handle_data(now, &d) {
                    let mut list = LossList::new();
                    list.push(first, last);
                    self.queue_control(now, Control::Nak(list));
                }
            }
            Packet::Control(c) => match c.body {
                Control::Ack(ack) => {
                    let acked = self.send.stats().acked;
                    self.send.handle_ack(ack.last_ack);
                    if self.send.stats().acked > acked {
                        // Proof of life: restart the stall timer.
                        self.ack_seen = true;
                        self.ack_wait_since = (self.send.in_flight() > 0).then_some(now);
                    }
                    if let AckKind::Small(s) | AckKind::Full(s, _) = ack.kind {
                        self.rtt.update(s.rtt);
                        // A reordered older ACK must not reopen the window.
                        if self.peer_acked.map_or(true, |p| !ack.last_ack.is_before(p)) {
                            self.peer_acked = Some(ack.last_ack);
                            self.peer_available = s.buffer_available;
                        }
                    }
                    if ack.ack_no != 0 {
                        self.queue_control(now, Control::AckAck { ack_no: ack.ack_no });
                    }
                }
                Control::AckAck { ack_no } => {
                    if let Some(sample) = self.acks.on_ackack(ack_no, now) {
                        self.rtt
                            .update(sample.as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                }
                Control::Nak(list) => {
                    let bogus = self.send.stats().bogus_nak;
                    self.send.handle_nak(&list);
                    // A NAK naming packets we sent is proof of reading too
                    // (it knows their sequence numbers): the repair goes on.
                    if list.count() > 0
                        && self.send.stats().bogus_nak == bogus
                        && self.ack_wait_since.is_some()
                    {
                        self.ack_wait_since = Some(now);
                    }
                }
                Control::DropReq { first, last, .. } => {
                    self.recv.drop_request(first, last);
                }
                Control::Shutdown => self.closed = Some(Closed::ByPeer),
                _ => {}
            },
        }
        self.check_drain(now);
    }

    /// Closes the connection, queueing a SHUTDOWN for the peer. Data not
    /// yet acknowledged is dropped; see [`Connection::close_after_drain`].
    pub fn close(&mut self, now: Instant) {
        if self.closed.is_none() {
            self.queue_control(now, Control::Shutdown);
            self.closed = Some(Closed::Locally);
        }
    }

    /// Graceful close: keeps sending (and retransmitting) until everything
    /// queued is acknowledged and the last packet's TSBPD delivery time
    /// (queued + latency) has passed, then closes as [`Connection::close`]
    /// does; at `now + max_wait` at the latest (libsrt `SRTO_LINGER`
    /// semantics). Waiting for the delivery time matters because a libsrt
    /// receiver discards packets still held for TSBPD when SHUTDOWN
    /// arrives. Closes at once if already drained. A later call can only
    /// shorten the wait.
    pub fn close_after_drain(&mut self, now: Instant, max_wait: Duration) {
        if self.closed.is_some() {
            return;
        }
        let deadline = now + max_wait;
        self.drain_deadline = Some(self.drain_deadline.map_or(deadline, |d| d.min(deadline)));
        self.check_drain(now);
    }

    /// Whether a graceful close is waiting for the send buffer to drain.
    pub fn is_draining(&self) -> bool {
        self.closed.is_none() && self.drain_deadline.is_some()
    }

    /// When the peer has played the last packet we queued (TSBPD) and its
    /// application has had [`DRAIN_MARGIN`] to read it.
    fn drain_ready_at(&self) -> Instant {
        self.last_queued
            .map_or(self.cfg.start, |t| t + self.cfg.latency + DRAIN_MARGIN)
    }

    fn check_drain(&mut self, now: Instant) {
        if let Some(deadline) = self.drain_deadline {
            if now >= deadline || (self.send.is_drained() && now >= self.drain_ready_at()) {
                self.close(now);
            }
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if now.saturating_duration_since(self.last_recv) >= IDLE_TIMEOUT {
            self.closed = Some(Closed::IdleTimeout);
            return;
        }
        if self
            .ack_wait_since
            .is_some_and(|t| now.saturating_duration_since(t) >= ACK_STALL_CLOSE)
        {
            self.queue_control(now, Control::Shutdown);
            self.closed = Some(Closed::Unresponsive);
            return;
        }
        self.check_drain(now);
        if self.closed.is_some() {
            return;
        }
        if now >= self.next_ack_at {
            self.next_ack_at = now + ACK_PERIOD;
            let ack_seq = self.recv.ack_seq();
            if self.last_acked != Some(ack_seq) && self.recv.stats().received > 0 {
                self.last_acked = Some(ack_seq);
                let ack_no = self.next_ack_no;
                self.next_ack_no = self.next_ack_no.wrapping_add(1).max(1);
                self.acks.record(ack_no, now);
                let stats = AckStats {
                    rtt: self.rtt.rtt_us(),
                    rtt_var: self.rtt.var_us(),
                    buffer_available: self.recv.available().max(MIN_FLOW_WINDOW),
                };
                self.queue_control(
                    now,
                    Control::Ack(Ack {
                        ack_no,
                        last_ack: ack_seq,
                        kind: AckKind::Small(stats),
                    }),
                );
            }
        }
        if now >= self.last_nak_at + self.nak_period() {
            self.last_nak_at = now;
            if !self.recv.loss().is_empty() {
                let nak = self.recv.loss().to_nak();
                self.queue_control(now, Control::Nak(nak));
            }
        }
        if let Some((first, last)) = self.send.drop_expired(now) {
            // Tell the receiver to stop asking for them (§3.2.9; libsrt
            // sends message number 0 for a plain sequence range).
            self.queue_control(
                now,
                Control::DropReq {
                    msg_no: 0,
                    first,
                    last,
                },
            );
        }
        if now.saturating_duration_since(self.last_sent) >= KEEPALIVE_PERIOD
            && self.control.is_empty()
        {
            self.queue_control(now, Control::KeepAlive);
        }
    }

    /// The next packet to send: control packets first, then data
    /// (retransmissions before new packets). After a local close only the
    /// SHUTDOWN goes out.
    pub fn poll_packet(&mut self, now: Instant) -> Option<Packet> {
        if let Some(c) = self.control.pop_front() {
            self.last_sent = now;
            return Some(Packet::Control(c));
        }
        if self.closed.is_some() {
            return None;
        }
        let p = if self.is_paused(now) {
            // One probe per pause period: a retransmission or one new
            // packet (within the flow window).
            if now < self.next_probe_at {
                return None;
            }
            let window = (self.send.in_flight() + 1).min(self.send_window() as usize);
            let p = self.send.poll_packet_within(window)?;
            self.next_probe_at = now + ACK_STALL_PAUSE;
            p
        } else {
            let mut window = self.send_window();
            if !self.ack_seen {
                window = window.min(INITIAL_UNACKED_WINDOW);
            }
            self.send.poll_packet_within(window as usize)?
        };
        self.ack_wait_since.get_or_insert(now);
        self.last_sent = now;
        Some(Packet::Data(p))
    }

    /// Whether sending is paused because sent data went unacknowledged for
    /// [`ACK_STALL_PAUSE`] (see the module docs, proof of life).
    pub fn is_paused(&self, now: Instant) -> bool {
        self.ack_wait_since
            .is_some_and(|t| now.saturating_duration_since(t) >= ACK_STALL_PAUSE)
    }

    /// The next received payload due for delivery at `now` (TSBPD). Once
    /// the peer has shut down, everything still buffered is due at once:
    /// the stream's tail is delivered rather than lost.
    pub fn poll_delivered(&mut self, now: Instant) -> Option<Delivered> {
        if self.closed == Some(Closed::ByPeer) {
            return self.recv.poll_flush();
        }
        self.recv.poll_deliver(now)
    }

    /// The earliest instant [`Connection::handle_timeout`] or
    /// [`Connection::poll_delivered`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let mut t = self
            .next_ack_at
            .min(self.last_nak_at + self.nak_period())
            .min(self.last_sent + KEEPALIVE_PERIOD)
            .min(self.last_recv + IDLE_TIMEOUT);
        if let Some(d) = self.recv.next_deadline() {
            t = t.min(d);
        }
        if let Some(e) = self.send.next_expiry() {
            t = t.min(e + Duration::from_micros(1));
        }
        if let Some(since) = self.ack_wait_since {
            t = t.min(since + ACK_STALL_CLOSE);
            if !self.send.is_drained() {
                // The pause starts, then one probe per period.
                t = t.min((since + ACK_STALL_PAUSE).max(self.next_probe_at));
            }
        }
        if let Some(d) = self.drain_deadline {
            t = t.min(d);
            if self.send.is_drained() {
                t = t.min(self.drain_ready_at());
            }
        }
        Some(t)
    }
}
