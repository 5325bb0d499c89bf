//! A WebRTC peer for tests: a str0m `Rtc` on a real loopback UDP socket,
//! with WHIP/WHEP signalling over [`crate::http_client`].

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::http_client::{request, Response};

/// A str0m peer on its own UDP socket (`127.0.0.1:0`).
pub struct Peer {
    /// The WebRTC stack.
    pub rtc: Rtc,
    /// Its socket.
    pub sock: UdpSocket,
    /// The socket's address (the peer's host candidate).
    pub local: SocketAddr,
    /// The audio m-line.
    pub audio: Mid,
    /// The video m-line.
    pub video: Mid,
    pending: Option<SdpPendingOffer>,
}

impl Peer {
    /// A peer with one audio and one video m-line in `direction`
    /// (`RecvOnly` for WHEP, `SendOnly` for WHIP); returns it and its offer.
    pub fn new(direction: Direction) -> (Peer, String) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let local = sock.local_addr().expect("local address");
        let mut rtc = Rtc::new(Instant::now());
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        let mut change = rtc.sdp_api();
        let audio = change.add_media(MediaKind::Audio, direction, None, None, None);
        let video = change.add_media(MediaKind::Video, direction, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        let sdp = offer.to_sdp_string();
        (
            Peer {
                rtc,
                sock,
                local,
                audio,
                video,
                pending: Some(pending),
            },
            sdp,
        )
    }

    /// POSTs the offer to `http` + `path` (`/live/cam/whep`); on 201 takes
    /// the answer. Returns the response either way.
    pub fn signal(&mut self, http: SocketAddr, path: &str, offer: &str) -> Response {
        let resp = request(
            http,
            &http.to_string(),
            "POST",
            path,
            &[],
            Some(("application/sdp", offer.as_bytes())),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        if resp.status == 201 {
            let answer = SdpAnswer::from_sdp_string(&resp.text()).expect("answer SDP");
            if let Some(p) = self.pending.take() {
                self.rtc
                    .sdp_api()
                    .accept_answer(p, answer)
                    .expect("accept the answer");
            }
        }
        resp
    }

    /// Drives the peer until `deadline` or until `on_event` returns `true`
    /// for an event (then `true`). Sends what str0m transmits, feeds what the
    /// socket receives, fires str0m's timeouts.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut on_event: impl FnMut(&mut Rtc, Event) -> bool,
    ) -> bool {
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                    continue;
                }
                Ok(Output::Timeout(t)) => t,
                Ok(Output::Event(e)) => {
                    if on_event(&mut self.rtc, e) {
                        return true;
                    }
                    continue;
                }
                Err(e) => panic!("str0m client: {e}"),
            };
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = timeout
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(10));
            let _ = self.sock.set_read_timeout(Some(wait));
            let input = match self.sock.recv_from(&mut buf) {
                Ok((n, source)) => match buf.get(..n).and_then(|b| b.try_into().ok()) {
                    Some(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    ),
                    None => continue,
                },
                Err(_) => Input::Timeout(Instant::now()),
            };
            if let Err(e) = self.rtc.handle_input(input) {
                panic!("str0m client input: {e}");
            }
        }
    }
}

/// The NAL unit types of an Annex B access unit, in order.
pub fn nal_types(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        let three = annex_b.get(i..i + 3) == Some(&[0, 0, 1][..]);
        if three {
            if let Some(h) = annex_b.get(i + 3) {
                out.push(h & 0x1f);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}
