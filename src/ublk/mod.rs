//! Glue to the kernel's ublk driver, split the way the driver is:
//!
//! * [`control`]: the control plane (`/dev/ublk-control`): add, recover,
//!   stop, delete, describe; runs in the server's main thread.
//! * [`features`]: what the kernel offers and a device was granted, by name.
//! * [`queue`]: the data plane: one thread per hardware queue turning ublk
//!   descriptors into engine requests.
//! * [`user_copy`]: moving request data with `UBLK_F_USER_COPY` (or a bounce
//!   buffer), the only syscalls on the I/O path.

pub mod control;
pub mod features;
pub mod queue;
pub mod user_copy;
