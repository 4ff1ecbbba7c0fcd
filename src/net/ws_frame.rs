//! WebSocket frames (RFC 6455 §5.2) as both ends of sockit write them: the chat server's
//! unmasked frames, and the masked ones of the load generator's clients.

use bytes::BufMut;

/// Opcodes (RFC 6455 §5.2).
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xa;

/// Appends one final frame holding `payload`: unmasked (a server's), or masked with `mask`
/// (a client's, §5.3).
pub(crate) fn push_frame(out: &mut impl BufMut, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let masked = if mask.is_some() { 0x80 } else { 0 };
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(masked | n as u8),
        n @ 126..=0xffff => {
            out.put_u8(masked | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(masked | 127);
            out.put_u64(n as u64);
        }
    }
    match mask {
        None => out.put_slice(payload),
        Some(mask) => {
            out.put_slice(&mask);
            for (b, m) in payload.iter().zip(mask.iter().cycle()) {
                out.put_u8(b ^ m);
            }
        }
    }
}
