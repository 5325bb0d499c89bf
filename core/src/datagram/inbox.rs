//! Commands between services: a stream session (an RTSP control
//! connection, an HTTP request handler) hands work to a
//! [`DatagramService`](super::DatagramService) ("add a UDP viewer for this
//! session with these client ports", "start sending", "tear down", "own
//! this WebRTC session") and gets answers back.
//!
//! - An [`Inbox<C>`] belongs to the service; it is generic over the
//!   command type, so each protocol defines its own commands. The service
//!   returns [`Inbox::signal`] from
//!   [`command_signal`](super::DatagramService::command_signal) (the
//!   drivers wait on it like on a media signal) and drains
//!   [`Inbox::try_recv`] in
//!   [`handle_commands`](super::DatagramService::handle_commands).
//! - [`InboxSender`]s are handed out by the service (or its factory) to the
//!   sessions. Each sender has its own bound besides the inbox's: one
//!   connection flooding commands fills its own share, not the inbox
//!   ([`InboxSender::fork`] gives a session a sender with a fresh share;
//!   an application that wants a per-IP bound forks one sender per peer IP
//!   and hands clones of it to that IP's sessions).
//! - An answer travels in a one-shot [`reply`] channel: a slot plus the
//!   [`Signal`] the waiting session already waits on (for a
//!   [`StreamSession`](crate::session::StreamSession), the signal it
//!   returns from `media_signal` while it waits). The session polls
//!   [`ReplyReceiver::try_take`] when woken; nothing blocks.
//!
//! Nothing here is on the packet path: the inbox and the reply slot are
//! locked only when a command or answer is handed over, never per
//! datagram or frame. A send never blocks and never waits for the service:
//! a full inbox refuses the command (and hands it back).
//!
//! Invariants: at most `capacity` commands are queued, and at most
//! `per_sender` of them come from one sender share; a command counts
//! against its sender's share until the service takes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::Signal;

/// Why [`InboxSender::send`] refused a command (the command is handed back
/// with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The inbox holds `capacity` commands already.
    #[error("the service's command inbox is full")]
    Full,
    /// This sender's share of the inbox is used up.
    #[error("too many commands from this sender are waiting")]
    SenderFull,
    /// The service is gone (its inbox was dropped).
    #[error("the service is gone")]
    Closed,
}

/// The answer never came: the service dropped the [`ReplySender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the service dropped the reply")]
pub struct ReplyCanceled;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Debug)]
struct Shared<C> {
    queue: Mutex<VecDeque<(C, Arc<AtomicUsize>)>>,
    signal: Signal,
    capacity: usize,
    closed: AtomicBool,
}

/// The receiving end of a service's commands (see the module docs).
#[derive(Debug)]
pub struct Inbox<C> {
    shared: Arc<Shared<C>>,
    per_sender: usize,
}

impl<C> Inbox<C> {
    /// An inbox for at most `capacity` waiting commands, at most
    /// `per_sender` of them from one sender share (both at least 1).
    pub fn new(capacity: usize, per_sender: usize) -> Self {
        let capacity = capacity.max(1);
        Inbox {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                signal: Signal::new(),
                capacity,
                closed: AtomicBool::new(false),
            }),
            per_sender: per_sender.clamp(1, capacity),
        }
    }

    /// A sender with a fresh share of `per_sender` commands.
    pub fn sender(&self) -> InboxSender<C> {
        InboxSender {
            shared: self.shared.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            per_sender: self.per_sender,
        }
    }

    /// Notified on every accepted command; return it from
    /// [`command_signal`](super::DatagramService::command_signal).
    pub fn signal(&self) -> Signal {
        self.shared.signal.clone()
    }

    /// The oldest waiting command, if any. Drain until `None`.
    pub fn try_recv(&mut self) -> Option<C> {
        let (cmd, share) = lock(&self.shared.queue).pop_front()?;
        share.fetch_sub(1, Ordering::AcqRel);
        Some(cmd)
    }

    /// Commands waiting.
    pub fn len(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Whether no command waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C> Drop for Inbox<C> {
    fn drop(&mut self) {
        // Commands still queued (and the reply senders inside them) are
        // dropped now, outside the lock, so the sessions waiting on them
        // learn it.
        let drained: VecDeque<_> = {
            let mut q = lock(&self.shared.queue);
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *q)
        };
        drop(drained);
    }
}

/// Hands commands to a service's [`Inbox`]. Clones share one share of the
/// inbox; [`fork`](Self::fork) makes a sender with a share of its own.
#[derive(Debug)]
pub struct InboxSender<C> {
    shared: Arc<Shared<C>>,
    in_flight: Arc<AtomicUsize>,
    per_sender: usize,
}

impl<C> Clone for InboxSender<C> {
    fn clone(&self) -> Self {
        InboxSender {
            shared: self.shared.clone(),
            in_flight: self.in_flight.clone(),
            per_sender: self.per_sender,
        }
    }
}

impl<C> InboxSender<C> {
    /// A sender to the same inbox with a fresh share (give one to each
    /// session, or to each peer IP).
    pub fn fork(&self) -> Self {
        InboxSender {
            shared: self.shared.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            per_sender: self.per_sender,
        }
    }

    /// Queues `command` and wakes the service. Never blocks: a full inbox,
    /// a used-up share or a gone service refuses it and hands it back.
    pub fn send(&self, command: C) -> Result<(), (InboxError, C)> {
        {
            let mut q = lock(&self.shared.queue);
            // Checked under the lock the inbox's drop takes: a command is
            // never queued after the inbox was drained for good.
            if self.shared.closed.load(Ordering::Acquire) {
                return Err((InboxError::Closed, command));
            }
            if q.len() >= self.shared.capacity {
                return Err((InboxError::Full, command));
            }
            if self.in_flight.load(Ordering::Acquire) >= self.per_sender {
                return Err((InboxError::SenderFull, command));
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            q.push_back((command, self.in_flight.clone()));
        }
        self.shared.signal.notify();
        Ok(())
    }

    /// Commands of this sender's share the service has not taken yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the service is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
enum Slot<T> {
    Waiting,
    Ready(T),
    Canceled,
    Taken,
}

#[derive(Debug)]
struct ReplyShared<T> {
    slot: Mutex<Slot<T>>,
    wake: Signal,
    receiver_gone: AtomicBool,
}

/// A one-shot answer channel: the [`ReplySender`] goes into a command, the
/// [`ReplyReceiver`] stays with the session. `wake` is notified when the
/// answer is set or the sender dropped without answering: pass the signal
/// the session's driver already waits on.
pub fn reply<T>(wake: Signal) -> (ReplySender<T>, ReplyReceiver<T>) {
    let shared = Arc::new(ReplyShared {
        slot: Mutex::new(Slot::Waiting),
        wake,
        receiver_gone: AtomicBool::new(false),
    });
    (
        ReplySender {
            shared: Some(shared.clone()),
        },
        ReplyReceiver { shared },
    )
}

/// The service's end of a [`reply`]: answer once with
/// [`send`](Self::send); dropping it unanswered cancels.
#[derive(Debug)]
pub struct ReplySender<T> {
    shared: Option<Arc<ReplyShared<T>>>,
}

impl<T> ReplySender<T> {
    /// Sets the answer and wakes the session. Hands `value` back if the
    /// session is gone.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let Some(shared) = self.shared.take() else {
            return Err(value);
        };
        if shared.receiver_gone.load(Ordering::Acquire) {
            return Err(value);
        }
        *lock(&shared.slot) = Slot::Ready(value);
        shared.wake.notify();
        Ok(())
    }

    /// Whether the session dropped its receiver (no need to answer).
    pub fn is_canceled(&self) -> bool {
        match &self.shared {
            Some(s) => s.receiver_gone.load(Ordering::Acquire),
            None => true,
        }
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            *lock(&shared.slot) = Slot::Canceled;
            shared.wake.notify();
        }
    }
}

/// The session's end of a [`reply`].
#[derive(Debug)]
pub struct ReplyReceiver<T> {
    shared: Arc<ReplyShared<T>>,
}

impl<T> ReplyReceiver<T> {
    /// `None` while the answer is not there; then the answer once, or
    /// [`ReplyCanceled`] if the service dropped the sender. After the
    /// answer was taken, `None` again.
    pub fn try_take(&mut self) -> Option<Result<T, ReplyCanceled>> {
        let mut slot = lock(&self.shared.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Waiting => {
                *slot = Slot::Waiting;
                None
            }
            Slot::Ready(v) => Some(Ok(v)),
            Slot::Canceled => Some(Err(ReplyCanceled)),
            Slot::Taken => None,
        }
    }

    /// The signal notified when the answer arrives.
    pub fn signal(&self) -> &Signal {
        &self.shared.wake
    }
}

impl<T> Drop for ReplyReceiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn bounds_per_sender_and_overall_and_hands_the_command_back() {
        let mut inbox: Inbox<u32> = Inbox::new(3, 2);
        let a = inbox.sender();
        let b = a.fork();
        let signal = inbox.signal();
        let e0 = signal.epoch();
        a.send(1).unwrap();
        assert_ne!(signal.epoch(), e0, "a send wakes the service");
        a.clone().send(2).unwrap();
        assert_eq!(a.send(3), Err((InboxError::SenderFull, 3)), "a's share");
        b.send(4).unwrap();
        assert_eq!(b.fork().send(5), Err((InboxError::Full, 5)), "inbox full");
        assert_eq!(inbox.try_recv(), Some(1));
        assert_eq!(a.in_flight(), 1, "taken commands free the share");
        a.send(6).unwrap();
        assert_eq!(inbox.len(), 3);
        let got: Vec<u32> = std::iter::from_fn(|| inbox.try_recv()).collect();
        assert_eq!(got, [2, 4, 6], "in order");
        assert_eq!((a.in_flight(), b.in_flight()), (0, 0));
        drop(inbox);
        assert!(a.is_closed());
        assert_eq!(a.send(7), Err((InboxError::Closed, 7)));
    }

    #[test]
    fn a_reply_wakes_the_waiting_signal_once_and_a_drop_cancels() {
        let wake = Signal::new();
        let (tx, mut rx) = reply::<&str>(wake.clone());
        let e0 = wake.epoch();
        assert_eq!(rx.try_take(), None);
        tx.send("port 6000").unwrap();
        assert_ne!(wake.epoch(), e0);
        assert_eq!(rx.try_take(), Some(Ok("port 6000")));
        assert_eq!(rx.try_take(), None, "taken once");

        let (tx, mut rx) = reply::<u8>(wake.clone());
        let e1 = wake.epoch();
        drop(tx);
        assert_ne!(wake.epoch(), e1, "a cancel wakes too");
        assert_eq!(rx.try_take(), Some(Err(ReplyCanceled)));

        let (tx, rx) = reply::<u8>(wake);
        drop(rx);
        assert!(tx.is_canceled());
        assert_eq!(tx.send(1), Err(1));
    }

    #[test]
    fn dropping_the_inbox_cancels_the_replies_of_queued_commands() {
        let inbox: Inbox<ReplySender<u8>> = Inbox::new(4, 4);
        let (tx, mut rx) = reply(Signal::new());
        inbox.sender().send(tx).unwrap();
        assert_eq!(rx.try_take(), None);
        drop(inbox);
        assert_eq!(rx.try_take(), Some(Err(ReplyCanceled)));
    }
}
