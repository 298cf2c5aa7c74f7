//! What every data plane does with a request the same way: turn the
//! kernel's I/O descriptor into an engine [`Request`], and the engine's
//! result into the completion value the kernel takes. The user-copy, direct
//! and batch planes each move data their own way; this is what they share.

use libublk::io::UblkQueue;
use libublk::sys;

use crate::engine::{IoError, Op, Request};
use crate::units::SECTOR_SIZE;

/// Translate a ublk I/O descriptor into an engine request for a data area of
/// `data_size` bytes (the size only names the limit in an error; the engine
/// checks the range).
pub fn decode(
    op_flags: u32,
    start_sector: u64,
    nr_sectors: u32,
    data_size: u64,
) -> Result<Request, IoError> {
    let op = match op_flags & 0xff {
        sys::UBLK_IO_OP_READ => Op::Read,
        sys::UBLK_IO_OP_WRITE => Op::Write {
            fua: op_flags & sys::UBLK_IO_F_FUA != 0,
        },
        sys::UBLK_IO_OP_FLUSH => Op::Flush,
        sys::UBLK_IO_OP_DISCARD => Op::Discard,
        sys::UBLK_IO_OP_WRITE_ZEROES => Op::WriteZeroes,
        other => return Err(IoError::Unsupported(other)),
    };
    if op == Op::Flush {
        // The block layer gives a flush no position: start_sector is -1.
        return Ok(Request {
            op,
            offset: 0,
            len: 0,
        });
    }
    let overflow = || IoError::SectorOutOfRange {
        start_sector,
        nr_sectors,
        size: data_size,
    };
    Ok(Request {
        op,
        offset: start_sector.checked_mul(SECTOR_SIZE).ok_or_else(overflow)?,
        len: u64::from(nr_sectors) * SECTOR_SIZE,
    })
}

/// The request the kernel handed over in `tag`'s descriptor, for a data
/// area of `data_size` bytes.
pub fn request_of(queue: &UblkQueue, tag: u16, data_size: u64) -> Result<Request, IoError> {
    let iod = queue.get_iod(tag);
    decode(iod.op_flags, iod.start_sector, iod.nr_sectors, data_size)
}

/// The completion value for a result: bytes done, or a negative errno.
pub fn completion(result: Result<u64, IoError>) -> i32 {
    match result {
        // The kernel caps a request at max_io_buf_bytes, far below 2 GiB; a
        // count the completion cannot carry is an error, not a short count.
        Ok(bytes) => i32::try_from(bytes).unwrap_or_else(|_| {
            log::error!("request completed {bytes} bytes, more than a completion can report");
            -libc::EIO
        }),
        Err(err) => {
            log::warn!("request failed: {}", crate::error_chain(&err));
            -err.errno()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data area the requests are decoded for.
    const SIZE: u64 = 1 << 30;

    #[test]
    fn decodes_every_supported_op() {
        assert_eq!(
            decode(sys::UBLK_IO_OP_READ, 8, 16, SIZE).expect("read"),
            Request {
                op: Op::Read,
                offset: 4096,
                len: 8192
            }
        );
        assert_eq!(
            decode(sys::UBLK_IO_OP_WRITE, 0, 1, SIZE).expect("write").op,
            Op::Write { fua: false }
        );
        assert_eq!(
            decode(sys::UBLK_IO_OP_WRITE | sys::UBLK_IO_F_FUA, 0, 1, SIZE)
                .expect("fua")
                .op,
            Op::Write { fua: true }
        );
        assert_eq!(
            decode(sys::UBLK_IO_OP_FLUSH, 0, 0, SIZE).expect("flush").op,
            Op::Flush
        );
        assert_eq!(
            decode(sys::UBLK_IO_OP_DISCARD, 0, 8, SIZE)
                .expect("discard")
                .op,
            Op::Discard
        );
        assert_eq!(
            decode(
                sys::UBLK_IO_OP_WRITE_ZEROES | sys::UBLK_IO_F_NOUNMAP,
                0,
                8,
                SIZE
            )
            .expect("zeroes")
            .op,
            Op::WriteZeroes
        );
    }

    #[test]
    fn unsupported_ops_and_overflow_fail_cleanly() {
        let err = decode(sys::UBLK_IO_OP_ZONE_APPEND, 0, 8, SIZE).expect_err("zoned");
        assert_eq!(err.errno(), libc::EOPNOTSUPP);
        assert_eq!(completion(Err(err)), -libc::EOPNOTSUPP);
        let err = decode(sys::UBLK_IO_OP_READ, u64::MAX / 2, 8, SIZE).expect_err("overflow");
        // Reported in the sectors sent, against the real size.
        assert!(
            err.to_string()
                .ends_with(&format!("outside the {SIZE}-byte data area")),
            "{err}"
        );
        assert_eq!(completion(Err(err)), -libc::EIO);
        assert_eq!(completion(Ok(4096)), 4096);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any descriptor decodes without panicking to the exact byte
            /// range it names (never a wrapped one), or to an error. Bounds
            /// against the data area are the engine's to check: see
            /// `engine::tests::properties`.
            #[test]
            fn any_descriptor_decodes_inside_or_fails(
                op in prop_oneof![
                    Just(sys::UBLK_IO_OP_READ),
                    Just(sys::UBLK_IO_OP_WRITE),
                    Just(sys::UBLK_IO_OP_WRITE | sys::UBLK_IO_F_FUA),
                    Just(sys::UBLK_IO_OP_DISCARD),
                    Just(sys::UBLK_IO_OP_WRITE_ZEROES),
                    any::<u32>(),
                ],
                start in prop_oneof![0u64..4096, any::<u64>(), (u64::MAX - 4096)..=u64::MAX],
                sectors in any::<u32>(),
            ) {
                if let Ok(req) = decode(op, start, sectors, SIZE)
                    && req.op != Op::Flush
                {
                    prop_assert_eq!(u128::from(req.offset), u128::from(start) * 512);
                    prop_assert_eq!(u128::from(req.len), u128::from(sectors) * 512);
                }
            }
        }
    }
}
