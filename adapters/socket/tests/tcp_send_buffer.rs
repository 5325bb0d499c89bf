//! `cap_send_buffer` on a real accepted TCP connection: the kernel send
//! buffer ends up at the cap (Linux books twice the asked value), far
//! below the autotuned default's ceiling, and 0 leaves the socket alone.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};

use socket2::SockRef;

#[test]
fn the_send_buffer_of_an_accepted_connection_is_capped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let before = SockRef::from(&accepted).send_buffer_size().unwrap();

    arcly_socket::cap_send_buffer(SockRef::from(&accepted), 0);
    assert_eq!(SockRef::from(&accepted).send_buffer_size().unwrap(), before);

    arcly_socket::cap_send_buffer(SockRef::from(&accepted), 64 * 1024);
    let after = SockRef::from(&accepted).send_buffer_size().unwrap();
    assert!(
        (64 * 1024..=2 * 64 * 1024).contains(&after),
        "SO_SNDBUF {after} after capping at 64 KiB (was {before})"
    );
}
