//! RTMP: handshake, chunk stream, AMF, FLV mapping, server and client machines.
