//! The data planes: one thread per hardware queue, each with its own
//! io_uring (libublk's `UblkQueue` is thread-local and not `Send`), all
//! sharing one engine through an `Arc`. They differ in how request data
//! moves:
//!
//! * [`copy`]: the mapped paths — `UBLK_F_USER_COPY` (the default before
//!   6.16, on devdax, over image files and writing back) or a bounce
//!   buffer — with [`transfer`] moving the bytes between the request and
//!   the mapping.
//! * [`direct`]: the direct path (Linux 6.16+): request pages as io_uring
//!   fixed buffers, read and written `O_DIRECT` on the backing.
//! * [`batch`]: batch I/O (Linux 7.0+): requests fetched and committed in
//!   groups, data through per-tag buffers.
//!
//! And what they share: [`request`] (a descriptor as an engine request, a
//! result as a completion), [`group_commit`] (acknowledging writes in
//! groups, one sync for all that finished before it) and [`ring`] (how each
//! queue thread's io_uring is set up).

pub mod batch;
pub mod copy;
pub mod direct;
pub mod group_commit;
pub mod request;
pub mod ring;
pub mod transfer;
